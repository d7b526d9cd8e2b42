"""The outage tracker: a run pauses for a service that answers nobody, and gives up in time."""

from __future__ import annotations

import itertools
import random

import anyio
import pytest
from helpers import FakeClock

from watcher._errors import OutageError
from watcher._outage import Outage


def make(clock: FakeClock, **kwargs: float | None) -> Outage:
    return Outage(
        "the API",
        clock=clock,
        wall_clock=lambda: 1_700_000_000.0,
        sleep=clock.sleep,
        rng=random.Random(1),
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_few_failures_are_not_an_outage() -> None:
    """Fewer than `threshold` failures in a row are each request's own, and charged."""
    clock = FakeClock()
    outage = make(clock, threshold=3)
    assert outage.failed() is False
    assert outage.failed() is False
    outage.answered()
    assert outage.failed() is False
    assert not outage.down


def test_threshold_failures_in_a_row_are_an_outage() -> None:
    """The third failure in a row declares the outage; it and later ones are not charged."""
    clock = FakeClock()
    outage = make(clock, threshold=3)
    outage.failed()
    outage.failed()
    assert outage.failed() is True
    assert outage.down
    assert outage.failed() is True
    described = outage.describe()
    assert described is not None
    assert described.startswith("the API unreachable since 22:13:20 UTC, next try in")


@pytest.mark.anyio
async def test_wait_lets_one_probe_through_at_a_time() -> None:
    """While down, the first waiter past the probe time goes; the others wait for its answer."""
    clock = FakeClock()
    outage = make(clock, threshold=1, base=2.0, cap=8.0)
    outage.failed()
    started = clock.now
    order: list[str] = []

    async def caller(name: str) -> None:
        await outage.wait()
        order.append(name)
        if name == "first":
            outage.answered()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(caller, "first")
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(caller, "second")
    assert order == ["first", "second"]
    assert 1.0 <= clock.now - started <= 2.0  # the first probe came after base/2..base


@pytest.mark.anyio
async def test_probes_back_off_and_the_outage_times_out() -> None:
    """Failed probes double the wait up to the cap; past `timeout`, wait() raises OutageError."""
    clock = FakeClock()
    outage = make(clock, threshold=1, base=1.0, cap=4.0, timeout=20.0)
    outage.failed()
    probes: list[float] = []

    async def probe_until_given_up() -> None:
        for _ in range(100):
            await outage.wait()
            probes.append(clock.now)
            outage.failed()

    with anyio.fail_after(5), pytest.raises(OutageError) as caught:
        await probe_until_given_up()
    gaps = [b - a for a, b in itertools.pairwise(probes)]
    assert all(gap <= 4.0 for gap in gaps)
    assert gaps[-1] >= 2.0  # the cap was reached
    assert clock.now - 1000.0 >= 20.0
    assert "unreachable since" in str(caught.value)
    assert caught.value.service == "the API"


@pytest.mark.anyio
async def test_a_cancelled_probe_frees_its_turn() -> None:
    """A probe whose task never reports does not block everyone forever."""
    clock = FakeClock()
    outage = make(clock, threshold=1, base=1.0, cap=4.0, timeout=None)
    outage.failed()
    with anyio.fail_after(5):
        await outage.wait()  # this probe never reports
        took = clock.now
        await outage.wait()
    assert clock.now - took >= 4.0
