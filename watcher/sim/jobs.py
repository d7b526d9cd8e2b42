"""The simulated jobs and the synthesis queue.

Timing is computed when a job is created, never driven by background tasks: the queue keeps a heap
of the times its `slots` become free, and a new job starts at `max(now, earliest free slot)` and
ends `synthesis_seconds(text_length) * time_scale` later. A job's state at time `t` follows:
WAITING before its start, PROCESSING until its end, then SUCCEED or FAILED.

Whether a job fails depends on its id alone (a stable hash against `fail_percent`), so the example
ids a demo preloads behave the same whatever the seed. The failure codes and messages are invented:
the real service documents the codes, not what a FAILED job's `code`/`message` hold.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

Clock = Callable[[], float]

# (code, message) of FAILED jobs; invented but shaped like the documented MSS codes.
FAILURES: tuple[tuple[str, str], ...] = (
    ("MSS.000000001", "TTS synthesis failed: the text contains no characters the voice can read"),
    ("MSS.000000001", "TTS synthesis failed: the voice asset is unavailable or has been deleted"),
    ("MSS.000000002", "Internal error: the synthesis engine did not answer in time"),
)
ACTION_ONE_IN = 4  # one job in this many (by id hash) also gets an action file
MAX_NEW_ID_ATTEMPTS = 100


def synthesis_seconds(text_length: int) -> float:
    """Unscaled seconds a job of `text_length` characters synthesises for."""
    return 2.0 + 0.05 * text_length


def id_hash(job_id: str, purpose: str) -> int:
    """A stable 64-bit hash of `job_id`, different for each `purpose`; independent of any seed."""
    digest = hashlib.sha256(f"{purpose}:{job_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


class JobState(StrEnum):
    """The job states: the four documented ones, and CANCELED, which one page mentions and the
    `unknown-state` fault reports (`SimJob.state_at` never gives it)."""

    WAITING = "WAITING"
    PROCESSING = "PROCESSING"
    SUCCEED = "SUCCEED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a FAILED job failed, as ShowAsyncTtsJob reports it in `code` and `message`."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class SimJob:
    """One job. `start`/`end` are on the monotonic clock; `create_time` is wall-clock epoch seconds.

    `audio_format` is what was requested ("WAV" or "MP3"); `priority` is recorded but ignored by
    the queue (the real service's use of it is not documented).
    """

    job_id: str
    text: str
    voice_asset_id: str
    audio_format: str
    need_timestamp: bool
    gen_srt: bool
    has_action: bool
    priority: int
    create_time: float
    start: float
    end: float
    failure: Failure | None

    @property
    def text_length(self) -> int:
        """Characters of text to synthesise."""
        return len(self.text)

    def state_at(self, now: float) -> JobState:
        """The state at monotonic time `now`."""
        if now < self.start:
            return JobState.WAITING
        if now < self.end:
            return JobState.PROCESSING
        return JobState.FAILED if self.failure is not None else JobState.SUCCEED


def _create_key(job: SimJob) -> int:
    return int(job.create_time)


class JobQueue:
    """All jobs, by id and in creation order, and the slots that synthesise them.

    Lookups by id are O(1); `page` is O(log n + limit). Not thread-safe: one event loop owns it.
    """

    __slots__ = (
        "_by_id",
        "_clock",
        "_fail_percent",
        "_free_at",
        "_last_create",
        "_order",
        "_rng",
        "_time_scale",
        "_wall",
    )

    def __init__(
        self,
        *,
        seed: int,
        time_scale: float,
        slots: int,
        fail_percent: int,
        clock: Clock,
        wall: Clock,
    ) -> None:
        self._rng = random.Random(seed)
        self._time_scale = time_scale
        self._fail_percent = fail_percent
        self._clock = clock
        self._wall = wall
        self._free_at = [clock()] * slots
        self._by_id: dict[str, SimJob] = {}
        self._order: list[SimJob] = []
        self._last_create = float("-inf")

    def __len__(self) -> int:
        return len(self._order)

    def __repr__(self) -> str:
        return f"JobQueue(jobs={len(self._order)}, slots={len(self._free_at)})"

    def now(self) -> float:
        """The monotonic clock the job states are computed against."""
        return self._clock()

    def get(self, job_id: str) -> SimJob | None:
        """The job with this id, or None."""
        return self._by_id.get(job_id)

    def failure_for(self, job_id: str) -> Failure | None:
        """How the job with this id fails, or None if it succeeds; depends on the id alone."""
        if id_hash(job_id, "fail") % 100 >= self._fail_percent:
            return None
        code, message = FAILURES[id_hash(job_id, "failure") % len(FAILURES)]
        return Failure(code, message)

    def new_id(self) -> str:
        """A fresh job id: 32 lower-case hex characters from the seeded generator."""
        for _ in range(MAX_NEW_ID_ATTEMPTS):
            job_id = f"{self._rng.getrandbits(128):032x}"
            if job_id not in self._by_id:
                return job_id
        raise RuntimeError("could not draw an unused job id")  # pragma: no cover - 2**-128 odds

    def add(
        self,
        text: str,
        voice_asset_id: str,
        *,
        job_id: str | None = None,
        audio_format: str = "WAV",
        need_timestamp: bool = False,
        gen_srt: bool = False,
        priority: int = 5,
        start: float | None = None,
    ) -> SimJob:
        """Queue a new job (with a fresh id unless `job_id` is given) and return it.

        `start`: when it starts, from `reserve` (its slot already taken); None: the earliest
        free slot, in creation order. Raises ValueError if `job_id` is already taken.
        """
        if job_id is None:
            job_id = self.new_id()
        elif job_id in self._by_id:
            raise ValueError(f"job {job_id} already exists")
        now = self._clock()
        if start is None:
            start = max(now, heapq.heappop(self._free_at))
            end = start + synthesis_seconds(len(text)) * self._time_scale
            heapq.heappush(self._free_at, end)
        else:
            end = start + synthesis_seconds(len(text)) * self._time_scale
        # Creation order and create_time agree even if the wall clock steps back.
        self._last_create = max(self._wall(), self._last_create)
        job = SimJob(
            job_id=job_id,
            text=text,
            voice_asset_id=voice_asset_id,
            audio_format=audio_format,
            need_timestamp=need_timestamp,
            gen_srt=gen_srt,
            has_action=id_hash(job_id, "action") % ACTION_ONE_IN == 0,
            priority=priority,
            create_time=self._last_create,
            start=start,
            end=end,
            failure=self.failure_for(job_id),
        )
        self._by_id[job_id] = job
        self._order.append(job)
        return job

    def reserve(self, text_lengths: Sequence[int], *, order_seed: int) -> list[float]:
        """Start times for a batch of jobs created now (texts of these lengths), served in a
        random order drawn from `order_seed` instead of creation order; takes their slots, so
        pass each start to `add`."""
        order = list(range(len(text_lengths)))
        random.Random(order_seed).shuffle(order)
        now = self._clock()
        starts = [0.0] * len(text_lengths)
        for i in order:
            start = max(now, heapq.heappop(self._free_at))
            heapq.heappush(
                self._free_at, start + synthesis_seconds(text_lengths[i]) * self._time_scale
            )
            starts[i] = start
        return starts

    def page(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        offset: int = 0,
        limit: int = 10,
    ) -> tuple[int, Sequence[SimJob]]:
        """Jobs created in whole seconds `since <= t <= until`: their count, and a page of them.

        The page is newest first, skipping `offset` jobs and holding at most `limit`.
        """
        lo = 0 if since is None else bisect.bisect_left(self._order, since, key=_create_key)
        hi = (
            len(self._order)
            if until is None
            else bisect.bisect_right(self._order, until, key=_create_key)
        )
        count = max(0, hi - lo)
        top = hi - offset  # newest first: the page ends just below index `top`
        bottom = max(lo, top - limit)
        if top <= bottom:
            return count, []
        return count, self._order[bottom:top][::-1]
