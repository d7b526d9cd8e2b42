"""The simulator's state: its config, jobs, result files, link signer, gateway, faults, counters.

One `Simulator` backs one server. It is created from a `SimConfig` (clocks injectable for tests)
and can `preload` job records read by `watcher._inputs`, so a demo's example job ids resolve.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterable

from watcher._inputs import Job
from watcher.sim.config import SimConfig
from watcher.sim.faults import Faults
from watcher.sim.gateway import Gateway
from watcher.sim.jobs import Clock, JobQueue, JobState, SimJob, id_hash
from watcher.sim.media import FileKind, MediaCache, Payload, files_of, kind_from_name, render
from watcher.sim.stats import SimStats
from watcher.sim.storage import Storage

MAX_TEXT_CHARS = 100_000
PRELOAD_VOICE = "sim-preloaded-voice"
AUDIO_FORMATS = ("WAV", "MP3")
_FILLER_WORDS = (
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "seven",
    "bright",
    "voices",
    "read",
    "this",
    "sample",
    "text",
    "aloud",
    "for",
    "the",
    "metastudio",
    "simulator",
    "and",
    "every",
    "line",
    "arrives",
    "on",
    "time",
)


def filler_text(job_id: str, length: int) -> str:
    """`length` characters of words chosen by `job_id`: the text of a preloaded job without one."""
    rng = random.Random(id_hash(job_id, "text"))
    words: list[str] = []
    size = 0
    while size < length:
        word = rng.choice(_FILLER_WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)[:length].rstrip() or "a"


def _preload_text(job: Job) -> str:
    """Meta `text` if a non-empty string, else filler of meta `text_length` or a hashed length."""
    text = job.meta.get("text")
    if isinstance(text, str) and text.strip():
        return text[:MAX_TEXT_CHARS]
    length = job.meta.get("text_length")
    if not (isinstance(length, int) and not isinstance(length, bool) and length > 0):
        length = 40 + id_hash(job.job_id, "length") % 360
    return filler_text(job.job_id, min(length, MAX_TEXT_CHARS))


class Simulator:
    """Everything one simulated MetaStudio holds; the HTTP layer (`app.py`) reads and adds jobs.

    `clock` is monotonic seconds (job timing, throttling); `wall` is epoch seconds (create_time,
    link expiry, `X-Sdk-Date` skew). `storage_key` signs result links (random by default).
    """

    __slots__ = ("config", "faults", "gateway", "jobs", "media", "stats", "storage")

    def __init__(
        self,
        config: SimConfig,
        *,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        storage_key: bytes | None = None,
    ) -> None:
        self.config = config
        self.stats = SimStats()
        self.faults = Faults(config.faults, config.seed)
        self.jobs = JobQueue(
            seed=config.seed,
            time_scale=config.time_scale,
            slots=config.slots,
            fail_percent=config.fail_percent,
            clock=clock,
            wall=wall,
        )
        self.media = MediaCache()
        self.storage = Storage(
            key=storage_key if storage_key is not None else os.urandom(32),
            ttl=config.url_ttl,
            wall=wall,
            resolve=self.resolve,
            stats=self.stats,
            faults=self.faults,
            latency=config.storage_latency,
            bandwidth=config.storage_bandwidth,
        )
        self.gateway = Gateway(config, clock=clock, wall=wall, stats=self.stats, faults=self.faults)

    def __repr__(self) -> str:
        return f"Simulator(project_id={self.config.project_id!r}, jobs={len(self.jobs)})"

    def preload(self, jobs: Iterable[Job]) -> int:
        """Add these jobs (ids kept; ids already present are skipped); how many were added.

        Each gets its text from meta `text` (a string), else filler text of meta `text_length`
        characters, else of a length hashed from the id; `audio_format` from meta when it is WAV or
        MP3. Preloaded jobs have subtitle and timestamp files; they queue like created jobs.
        """
        fresh: dict[str, Job] = {}
        for job in jobs:
            if self.jobs.get(job.job_id) is None:
                fresh.setdefault(job.job_id, job)
        texts = {job_id: _preload_text(job) for job_id, job in fresh.items()}
        starts: dict[str, float] = {}
        if self.config.random_order:
            lengths = [len(text) for text in texts.values()]
            reserved = self.jobs.reserve(lengths, order_seed=self.config.seed)
            starts = dict(zip(texts, reserved, strict=True))
        added = 0
        for job in fresh.values():
            audio_format = job.meta.get("audio_format")
            voice = job.meta.get("voice_asset_id")
            self.jobs.add(
                texts[job.job_id],
                voice if isinstance(voice, str) and voice else PRELOAD_VOICE,
                job_id=job.job_id,
                audio_format=audio_format if audio_format in AUDIO_FORMATS else "WAV",
                need_timestamp=True,
                gen_srt=True,
                start=starts.get(job.job_id),
            )
            added += 1
        return added

    def state(self, job: SimJob) -> JobState:
        """The job's state now, as the API reports it: CANCELED instead of SUCCEED or FAILED for
        a job the `unknown-state` fault picked."""
        state = job.state_at(self.jobs.now())
        if state in (JobState.SUCCEED, JobState.FAILED) and self.faults.canceled(job.job_id):
            self.faults.report_canceled(job.job_id)
            return JobState.CANCELED
        return state

    def expected_state(self, job_id: str) -> JobState:
        """The state `job_id` ends in (SUCCEED, FAILED or CANCELED): it depends on the id and
        the config alone, so it holds for ids not created yet. Safe from any thread."""
        if self.faults.canceled(job_id):
            return JobState.CANCELED
        return JobState.FAILED if self.jobs.failure_for(job_id) is not None else JobState.SUCCEED

    def links(self, job: SimJob, base: str) -> dict[str, str]:
        """URL field -> fresh signed link under `base`, for each file a succeeded job has."""
        return {
            kind.field: self.storage.url(base, job.job_id, kind.file_name(job.job_id))
            for kind in files_of(job)
        }

    def resolve(self, job_id: str, name: str) -> Payload | None:
        """The file `name` of `job_id`, or None if that job has no such file (yet)."""
        job = self.jobs.get(job_id)
        if job is None:
            return None
        kind = kind_from_name(job_id, name)
        if kind is None or kind not in files_of(job) or self.state(job) is not JobState.SUCCEED:
            return None
        return self.media.get(job, kind)

    def payload(self, job: SimJob, kind: FileKind) -> Payload:
        """A result file of `job`, whatever its state, rendered afresh: for tests and benchmarks,
        safe to call from another thread (it leaves the server's cache alone)."""
        return render(job, kind)
