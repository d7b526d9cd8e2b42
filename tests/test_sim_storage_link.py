"""The simulator's storage as a far-away link: a first-byte latency and a per-connection cap.

Only lower bounds on elapsed time are checked (a slow machine can only make them truer).
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

from watcher._inputs import Job

JOB = Job("far-away", {"text_length": 78})  # a 199,724-byte WAV


async def _fetch(sim: Any) -> tuple[bytes, float]:
    """The audio file of JOB, and the seconds it took."""
    job = sim.sim.jobs.get(JOB.job_id)
    url = next(u for field, u in sim.sim.links(job, sim.url).items() if "audio" in field)
    async with aiohttp.ClientSession() as session:
        began = time.monotonic()
        async with session.get(url) as response:
            assert response.status == 200
            body = await response.read()
        return body, time.monotonic() - began


@pytest.mark.anyio
async def test_first_byte_latency_and_bandwidth_cap_slow_each_download(sim_factory: Any) -> None:
    """0.3 s of latency delays the answer at least that long; a 500 KB/s cap makes 200 KB take
    at least 0.3 s; the bytes are those of an unhindered download."""
    plain = sim_factory([JOB], time_scale=0)
    slow = sim_factory([JOB], time_scale=0, storage_latency=0.3)
    narrow = sim_factory([JOB], time_scale=0, storage_bandwidth=500_000)
    expected, _ = await _fetch(plain)
    assert len(expected) > 150_000
    body, took = await _fetch(slow)
    assert body == expected and took >= 0.3
    body, took = await _fetch(narrow)
    assert body == expected and took >= (len(expected) - 50_000) / 500_000


def test_storage_link_settings_are_checked() -> None:
    """A negative latency or a zero bandwidth is refused with a message naming it."""
    from watcher._auth import AkSk
    from watcher.sim import SimConfig

    with pytest.raises(ValueError, match="storage_latency"):
        SimConfig(project_id="p", credentials=AkSk("AK", "SK"), storage_latency=-1)
    with pytest.raises(ValueError, match="storage_bandwidth"):
        SimConfig(project_id="p", credentials=AkSk("AK", "SK"), storage_bandwidth=0)
