"""`watcher submit`: lines of text to created jobs, against the simulator and a fake API."""

from __future__ import annotations

import argparse
import io
import random
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import anyio.lowlevel
import orjson
import pytest
from aiohttp.client_reqrep import ConnectionKey
from helpers import TEST_AK as AK
from helpers import FakeClock, SimFactory

from watcher._commands.submit import add_arguments, run
from watcher._errors import ApiError, ConfigError, InputError, ThrottledError, TransportError
from watcher._inputs import parse_line
from watcher._ratelimit import RateLimiter
from watcher._retry import RetryPolicy
from watcher._submit import (
    MAX_LINE_BYTES,
    BadLine,
    Request,
    SubmitPolicy,
    SubmitTally,
    describe,
    never_sent,
    parse_request,
    submit_all,
)
from watcher.cli import main

VOICE = "voice-anna"


def _submit(url: str, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return run(parser.parse_args([*argv, "--endpoint", url, "--rate", "1000"]))


def _texts(path: Path, *lines: Any) -> Path:
    path.write_bytes(
        b"".join(
            (line if isinstance(line, bytes) else orjson.dumps(line)) + b"\n" for line in lines
        )
    )
    return path


def test_each_line_becomes_a_job_that_watcher_run_can_read(
    sim_factory: SimFactory,
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Three lines: three jobs created with their fields, printed in order as run input."""
    sim = sim_factory()
    texts = _texts(
        tmp_path / "texts.jsonl",
        {"text": "Hello there.", "chapter": 1},
        {"text": "Second line.", "chapter": 2, "voice_asset_id": "voice-bob", "gen_srt": False},
        {"text": "Third.", "speaker": "x", "audio_format": "MP3", "priority": 9},
    )
    assert _submit(sim.url, str(texts), "--voice-asset-id", VOICE, "--gen-srt") == 0
    captured = capsys.readouterr()
    jobs = [parse_line(line, "<stdin>", n) for n, line in enumerate(captured.out.splitlines(), 1)]
    assert [job.meta for job in jobs if job] == [{"chapter": 1}, {"chapter": 2}, {"speaker": "x"}]
    created = [c for job in jobs if job and (c := sim.sim.jobs.get(job.job_id)) is not None]
    assert len(created) == 3
    assert [(c.text, c.voice_asset_id, c.gen_srt, c.audio_format, c.priority) for c in created] == [
        ("Hello there.", VOICE, True, "WAV", 5),
        ("Second line.", "voice-bob", False, "WAV", 5),
        ("Third.", VOICE, True, "MP3", 9),
    ]
    assert "lines: 3, jobs created: 3, not submitted: 0" in captured.err


def test_bad_lines_are_named_and_skipped(
    sim_factory: SimFactory,
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Lines that cannot be a job are reported by file and line; the others are created."""
    sim = sim_factory()
    texts = _texts(
        tmp_path / "t.jsonl",
        b"# a comment",
        b"{not json",
        {"chapter": 2},
        {"text": 42},
        {"text": "  "},
        b"",
        {"text": "fine", "n": 7},
        {"text": "again", "job_id": "abc"},
        b"[1]",
        b"\xff\xfe",
    )
    assert _submit(sim.url, str(texts), "--voice-asset-id", VOICE) == 1
    captured = capsys.readouterr()
    assert [orjson.loads(line)["n"] for line in captured.out.splitlines()] == [7]
    for line, says in [
        (2, "not valid JSON"),
        (3, "no 'text'"),
        (4, "'text' must be a string, not int"),
        (5, "'text' is empty"),
        (8, "has a 'job_id'"),
        (9, "not a JSON object"),
        (10, "not UTF-8"),
    ]:
        assert f"{texts}:{line}: {says}" in captured.err
    assert "lines: 8, jobs created: 1, not submitted: 7 (7 bad" in captured.err
    assert sim.sim.stats.count("CreateAsyncTtsJob") == 1


def test_a_line_without_a_voice_is_bad_unless_a_flag_gives_one(tmp_path: Path) -> None:
    """voice_asset_id is required: from the line, else from --voice-asset-id."""
    with pytest.raises(InputError, match="no 'voice_asset_id'"):
        parse_request(b'{"text": "hi"}', "t", 1, {})
    request = parse_request(
        b'{"text": "hi", "speed": 120, "x": 1}', "t", 1, {"voice_asset_id": "v"}
    )
    assert request == Request({"voice_asset_id": "v", "text": "hi", "speed": 120}, {"x": 1}, "t", 1)
    assert parse_request(b"   \n", "t", 2, {}) is None
    with pytest.raises(InputError, match="longer than"):
        parse_request(None, "t", 3, {})


def test_an_api_error_is_reported_and_the_run_goes_on(
    sim_factory: SimFactory,
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A line the API refuses is named with its code and request id; later lines still go."""
    sim = sim_factory()
    texts = _texts(
        tmp_path / "t.jsonl",
        {"text": "one", "n": 1},
        {"text": "two", "n": 2, "speed": 999},
        {"text": "three", "n": 3},
    )
    assert _submit(sim.url, str(texts), "--voice-asset-id", VOICE) == 1
    captured = capsys.readouterr()
    assert [orjson.loads(line)["n"] for line in captured.out.splitlines()] == [1, 3]
    assert f"{texts}:2: not submitted: HTTP 400 MSS.000000003: " in captured.err
    assert "speed must be an integer" in captured.err
    assert "(request id " in captured.err and "(request id None)" not in captured.err
    assert "1 refused by the API" in captured.err


def test_refused_credentials_stop_at_once_with_exit_2(
    sim_factory: SimFactory,
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A wrong secret key: exit 2 after a request or few, nothing printed, no secret shown."""
    sim = sim_factory()
    wrong = "wrong-secret-key-0000000000000000000000"
    env.setenv("HUAWEICLOUD_SDK_SK", wrong)
    texts = _texts(tmp_path / "t.jsonl", *({"text": f"line {i}"} for i in range(40)))
    args = [str(texts), "--voice-asset-id", VOICE, "--endpoint", sim.url, "--rate", "50"]
    assert main(["submit", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "authentication failed" in captured.err and "APIGW.0301" in captured.err
    assert wrong not in captured.err and AK not in captured.err
    assert sim.sim.stats.count("CreateAsyncTtsJob", 401) < 10


def test_reads_stdin(
    sim_factory: SimFactory,
    env: pytest.MonkeyPatch,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """'-' reads lines from stdin; --keep-text prints the text beside the job id."""
    sim = sim_factory()
    lines = b'{"text": "from stdin", "k": 1}\n{"text": "no newline at the end", "k": 2}'
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(lines)))
    assert _submit(sim.url, "-", "--voice-asset-id", VOICE, "--keep-text") == 0
    out = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(o["k"], o["text"]) for o in out] == [(1, "from stdin"), (2, "no newline at the end")]


def test_an_overlong_line_is_skipped_and_the_next_is_read(
    sim_factory: SimFactory,
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A line over the limit is reported and dropped; the line after it is submitted."""
    sim = sim_factory()
    texts = tmp_path / "t.jsonl"
    texts.write_bytes(b'{"text": "' + b"a" * (MAX_LINE_BYTES + 10) + b'"}\n{"text": "ok"}\n')
    assert _submit(sim.url, str(texts), "--voice-asset-id", VOICE) == 1
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 1
    assert f"{texts}:1: line is longer than" in captured.err


def test_configuration_errors_come_before_any_request(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A missing input or no credentials is a ConfigError naming the problem."""
    with pytest.raises(ConfigError, match="no such file"):
        _submit("http://127.0.0.1:9", str(tmp_path / "missing.jsonl"))
    env.delenv("HUAWEICLOUD_SDK_AK")
    env.delenv("HUAWEICLOUD_SDK_SK")
    with pytest.raises(ConfigError, match="no credentials"):
        _submit("http://127.0.0.1:9", str(_texts(tmp_path / "t.jsonl", {"text": "x"})))


class FakeApi:
    """Creates jobs `job-<n>`, answering in the order the test releases them."""

    def __init__(self, fail: Mapping[str, list[Exception]] | None = None) -> None:
        self.calls: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.gates: dict[str, anyio.Event] = {}
        self.hold = False
        self.expect = 0
        self.arrived = anyio.Event()
        self.fail = {k: list(v) for k, v in (fail or {}).items()}

    async def create_job(self, fields: Mapping[str, Any]) -> str:
        text = str(fields["text"])
        self.calls.append(text)
        if self.fail.get(text):
            raise self.fail[text].pop(0)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.hold:
            gate = self.gates.setdefault(text, anyio.Event())
            if len(self.gates) == self.expect:
                self.arrived.set()
            await gate.wait()
        self.in_flight -= 1
        return f"job-{text}"


async def _requests(n: int) -> AsyncIterator[Request | InputError]:
    for i in range(n):
        yield Request({"text": str(i), "voice_asset_id": VOICE}, {"i": i}, "t", i + 1)


async def _run_fake(
    api: FakeApi, n: int, clock: FakeClock | None = None, policy: SubmitPolicy | None = None
) -> tuple[list[Mapping[str, Any]], list[str], SubmitTally]:
    clock = clock or FakeClock(0.0)
    policy = policy or SubmitPolicy()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    out: list[Mapping[str, Any]] = []
    err: list[str] = []
    with anyio.fail_after(10):
        tally = await submit_all(
            api, _requests(n), limiter, emit=out.append, warn=err.append, policy=policy
        )
    assert limiter.granted == len(api.calls)  # every request went through the limiter
    return out, err, tally


@pytest.mark.anyio
async def test_requests_overlap_but_output_keeps_input_order() -> None:
    """Answers arriving in reverse order are still printed in input order."""
    api = FakeApi()
    n = api.expect = 8
    api.hold = True
    out: list[Mapping[str, Any]] = []

    async def release_backwards() -> None:
        await api.arrived.wait()
        for i in reversed(range(1, n)):
            api.gates[str(i)].set()
            await anyio.lowlevel.checkpoint()
            assert out == []  # nothing is printed before job 0 is settled
        api.gates["0"].set()

    clock = FakeClock(0.0)
    limiter = RateLimiter(1000, clock=clock, sleep=clock.sleep)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(release_backwards)
            tally = await submit_all(api, _requests(n), limiter, emit=out.append, warn=print)
    assert [o["i"] for o in out] == list(range(n))
    assert [o["job_id"] for o in out] == [f"job-{i}" for i in range(n)]
    assert api.most_in_flight == n and tally.created == n and tally.all_submitted


@pytest.mark.anyio
async def test_in_flight_requests_are_bounded() -> None:
    """No more than max_in_flight requests are under way at once."""
    api = FakeApi()
    api.hold = True

    async def release_all() -> None:
        released = 0
        while released < 20:
            for gate in list(api.gates.values()):
                if not gate.is_set():
                    gate.set()
                    released += 1
            await anyio.lowlevel.checkpoint()

    clock = FakeClock(0.0)
    limiter = RateLimiter(1000, clock=clock, sleep=clock.sleep)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(release_all)
            policy = SubmitPolicy(max_in_flight=3)
            tally = await submit_all(
                api, _requests(20), limiter, emit=lambda _: None, warn=print, policy=policy
            )
    assert tally.created == 20 and api.most_in_flight <= 3


@pytest.mark.anyio
async def test_a_429_is_retried_after_its_pause() -> None:
    """A throttled request waits Retry-After (else the policy's pause), then goes again."""
    throttled = ThrottledError(429, "APIGW.0308", "over ratelimit", "r1", retry_after=7.0)
    api = FakeApi({"1": [throttled]})
    clock = FakeClock(0.0)
    out, err, tally = await _run_fake(api, 3, clock)
    assert [o["i"] for o in out] == [0, 1, 2] and err == [] and tally.all_submitted
    assert api.calls.count("1") == 2
    assert clock.now >= 7.0


@pytest.mark.anyio
async def test_a_429_that_persists_fails_the_line() -> None:
    """After the retries run out the line is reported with the 429's code."""
    throttled = ThrottledError(429, "APIGW.0308", "over ratelimit", "r1")
    api = FakeApi({"0": [throttled] * 3})
    out, err, tally = await _run_fake(api, 2, policy=SubmitPolicy(retry=RetryPolicy(attempts=3)))
    assert [o["i"] for o in out] == [1] and tally.failed == 1
    assert err == ["t:1: not submitted: HTTP 429 APIGW.0308: over ratelimit (request id r1)"]
    assert api.calls.count("0") == 3


class TimedApi:
    """Answers job "0" with the given errors first, recording when (on `clock`) each call came."""

    def __init__(self, clock: FakeClock, errors: list[Exception]) -> None:
        self.clock = clock
        self.errors = errors
        self.times: list[float] = []

    async def create_job(self, fields: Mapping[str, Any]) -> str:
        self.times.append(self.clock.now)
        if self.errors:
            raise self.errors.pop(0)
        return "job-0"


async def _timed(errors: list[Exception], policy: SubmitPolicy, seed: int = 1) -> TimedApi:
    """One line submitted against a TimedApi on a fake clock starting at 0."""
    clock = FakeClock(0.0)
    api = TimedApi(clock, errors)
    limiter = RateLimiter(1000, clock=clock, sleep=clock.sleep)
    with anyio.fail_after(10):
        await submit_all(
            api,
            _requests(1),
            limiter,
            emit=lambda _: None,
            warn=lambda _: None,
            policy=policy,
            rng=random.Random(seed),
        )
    return api


def _throttled(retry_after: float | None) -> ThrottledError:
    return ThrottledError(429, "APIGW.0308", "over ratelimit", "r1", retry_after=retry_after)


@pytest.mark.anyio
@pytest.mark.parametrize(("retry_after", "pause"), [(None, 2.0), (0.0, 2.0), (7.0, 7.0)])
async def test_a_429_pauses_for_its_retry_after_else_the_policys_pause(
    retry_after: float | None, pause: float
) -> None:
    """The try after a 429 comes exactly Retry-After (none or 0: throttle_pause) seconds later:
    the backoff's jitter never lengthens those."""
    api = await _timed([_throttled(retry_after)], SubmitPolicy(throttle_pause=2.0))
    assert api.times == [0.0, pytest.approx(pause)]


@pytest.mark.anyio
@pytest.mark.parametrize("seed", range(5))
async def test_a_short_retry_after_is_never_cut(seed: int) -> None:
    """A Retry-After under throttle_pause is waited at least in full, and at most the
    policy's jitter ceiling (`retry.cap`)."""
    policy = SubmitPolicy(retry=RetryPolicy(attempts=6, base=0.5, cap=2.0))
    api = await _timed([_throttled(0.25)], policy, seed)
    assert len(api.times) == 2
    assert 0.25 <= api.times[1] <= 2.0


@pytest.mark.anyio
@pytest.mark.parametrize("attempts", [1, 2, 4])
async def test_429s_are_tried_as_often_as_the_retry_policy_says(attempts: int) -> None:
    """A line throttled every time is tried `retry.attempts` times in all, then given up."""
    policy = SubmitPolicy(retry=RetryPolicy(attempts=attempts, base=0.5, cap=2.0))
    api = await _timed([_throttled(None) for _ in range(10)], policy)
    assert len(api.times) == attempts
    assert api.times == pytest.approx([2.0 * i for i in range(attempts)])


@pytest.mark.anyio
async def test_a_lost_answer_is_not_retried() -> None:
    """No answer to a POST: reported as maybe created, never sent twice."""
    api = FakeApi({"0": [TransportError("POST: ServerDisconnectedError")]})
    out, err, tally = await _run_fake(api, 2)
    assert api.calls.count("0") == 1 and [o["i"] for o in out] == [1]
    assert "may or may not have been created" in err[0] and not tally.all_submitted


def _closed_port() -> str:
    """A loopback URL nothing listens on: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_a_refused_connection_stops_at_once_and_rest_keeps_every_line(
    sim_factory: SimFactory,
    env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A dead endpoint: exit 2 after one try, no "may or may not", and --rest holds every line,
    so `watcher submit rest.jsonl` then creates them all."""
    lines = [{"text": f"line {i}", "n": i} for i in range(30)]
    texts = _texts(tmp_path / "t.jsonl", b"{bad", *lines)
    rest = tmp_path / "rest.jsonl"
    argv = ["submit", str(texts), "--voice-asset-id", VOICE, "--rest", str(rest)]
    assert main([*argv, "--endpoint", _closed_port(), "--rate", "50"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "may or may not" not in captured.err
    assert 1 <= captured.err.count("could not connect, nothing was sent") < 10  # not 30 tries
    assert "cannot reach the API" in captured.err
    assert rest.read_bytes() == texts.read_bytes()

    sim = sim_factory()
    rest.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    again = tmp_path / "rest2.jsonl"
    retry = ["submit", str(rest), "--voice-asset-id", VOICE, "--rest", str(again)]
    assert main([*retry, "--endpoint", sim.url, "--rate", "1000"]) == 0
    assert [orjson.loads(x)["n"] for x in capsys.readouterr().out.splitlines()] == list(range(30))
    assert again.read_bytes() == b""


@pytest.mark.anyio
async def test_rest_gets_bad_refused_and_untried_lines_in_order() -> None:
    """Every line that did not become a job reaches `rest` as it was read, in input order."""
    refused = ApiError(400, "MSS.000000003", "bad speed", "r1")
    api = FakeApi({"1": [refused]})
    bad = BadLine(InputError("t", 3, "not valid JSON"), b"{bad")

    async def items() -> AsyncIterator[Request | InputError]:
        for i in range(3):
            yield Request({"text": str(i), "voice_asset_id": VOICE}, {}, "t", i + 1, b"L%d" % i)
            if i == 1:
                yield bad

    rest: list[bytes] = []
    clock = FakeClock(0.0)
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    with anyio.fail_after(10):
        tally = await submit_all(
            api, items(), limiter, emit=lambda _: None, warn=lambda _: None, rest=rest.append
        )
    assert rest == [b"L1\n", b"{bad\n"] and tally.created == 2


@pytest.mark.anyio
async def test_maybe_created_only_when_the_request_left() -> None:
    """A connection that could not be made is "nothing was sent"; a lost answer is "may or may
    not have been created"."""
    try:
        raise TransportError("POST: ClientConnectorError") from aiohttp.ClientConnectorError(
            ConnectionKey("127.0.0.1", 9, False, True, None, None, None),
            OSError(111, "Connection refused"),
        )
    except TransportError as exc:
        refused = exc
    assert never_sent(refused) and "nothing was sent" in describe(refused)
    lost = TransportError("POST: ServerDisconnectedError")
    assert not never_sent(lost) and "may or may not" in describe(lost)
