"""Deterministic result files for a job: audio, subtitles (SRT), timestamps and actions (JSON).

Every file depends only on the job id and its text, so two simulators (or two runs) serve the same
bytes for the same job.

- Audio is always a WAV file (RIFF, PCM 16-bit mono 16 kHz), `max(1 s, 0.08 s per character)`
  long: two tones under a slow envelope, plus noise, chosen by the id. A job that asked for
  `audio_format: MP3` is ALSO served a WAV file (named `.wav`, `Content-Type: audio/wav`): an MP3
  encoder (`lameenc`, a native LGPL build of LAME) would be a dependency for a test fixture whose
  consumer treats the bytes as opaque, and would cost seconds of CPU per 20 MB file.
- SRT cues cover the audio from 0 to its end, in order, text split into chunks of up to 24
  characters at spaces (hard-split when a run has no spaces, as CJK text does).
- The timestamp ("info") file and the action file are JSON documents whose layout is invented;
  the real service does not document them.

Audio is never materialised: a `Payload` is a short head plus a one-second block repeated to the
file's length, so a 20 MB download costs one 32 KB block and streams in chunks.
"""

from __future__ import annotations

import math
import random
import struct
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from functools import cache

import orjson

from watcher.sim.jobs import SimJob, id_hash

SAMPLE_RATE = 16_000
SECONDS_PER_CHAR = 0.08
MIN_SECONDS = 1.0
SRT_CUE_CHARS = 24
WORD_CHARS = 8
TONE_VARIANTS = 16
ACTIONS = ("nod", "smile", "blink", "wave", "tilt_head", "shrug")
ACTION_EVERY_MS = 3_000


class FileKind(Enum):
    """The four result files, with the URL field that links each, its suffix and media type."""

    AUDIO = ("audio_file_url", ".wav", "audio/wav")
    INFO = ("audio_info_file_url", ".timestamps.json", "application/json")
    SRT = ("audio_srt_file_url", ".srt", "application/x-subrip")
    ACTION = ("audio_action_file_url", ".action.json", "application/json")

    def __init__(self, field: str, suffix: str, content_type: str) -> None:
        self.field = field
        self.suffix = suffix
        self.content_type = content_type

    def file_name(self, job_id: str) -> str:
        """The object name of this file for `job_id`."""
        return job_id + self.suffix


def files_of(job: SimJob) -> tuple[FileKind, ...]:
    """The files a succeeded job has: audio always, the others when asked for (action: by id)."""
    kinds = [FileKind.AUDIO]
    if job.need_timestamp:
        kinds.append(FileKind.INFO)
    if job.gen_srt:
        kinds.append(FileKind.SRT)
    if job.has_action:
        kinds.append(FileKind.ACTION)
    return tuple(kinds)


def kind_from_name(job_id: str, name: str) -> FileKind | None:
    """Which file of `job_id` the object name `name` is, or None."""
    for kind in FileKind:
        if name == kind.file_name(job_id):
            return kind
    return None


@dataclass(frozen=True, slots=True)
class Payload:
    """File bytes as `head` followed by `block` repeated up to `length` bytes in all."""

    content_type: str
    head: bytes
    block: bytes
    length: int

    def chunks(self, size: int, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """Bytes `start` to `stop` (exclusive; default the end) in pieces of at most `size`."""
        stop = self.length if stop is None else min(stop, self.length)
        head, block = self.head, self.block
        tile = block * (1 + -(-size // len(block))) if block else b""
        view = memoryview(tile)
        pos = start
        while pos < stop:
            n = min(size, stop - pos)
            if pos < len(head):
                piece = head[pos : min(len(head), pos + n)]
            else:
                off = (pos - len(head)) % len(block)
                piece = bytes(view[off : off + n])
            yield piece
            pos += len(piece)

    def read(self) -> bytes:
        """The whole file."""
        return b"".join(self.chunks(1 << 20))


def audio_seconds(text_length: int) -> float:
    """Seconds of audio for `text_length` characters."""
    return max(MIN_SECONDS, SECONDS_PER_CHAR * text_length)


def _audio_samples(text_length: int) -> int:
    return round(audio_seconds(text_length) * SAMPLE_RATE)


@cache
def _tone_block(variant: int) -> bytes:
    """One second of 16-bit samples that tiles seamlessly: all frequencies are whole hertz."""
    rng = random.Random(variant)
    f1 = 140 + 23 * variant
    f2 = f1 * 3 // 2 + 7
    f_env = 3 + variant % 4
    two_pi = 2 * math.pi / SAMPLE_RATE
    samples = [
        int(
            (0.55 + 0.45 * math.sin(two_pi * f_env * i))
            * (7000 * math.sin(two_pi * f1 * i) + 3500 * math.sin(two_pi * f2 * i))
            + rng.randint(-600, 600)
        )
        for i in range(SAMPLE_RATE)
    ]
    return struct.pack(f"<{SAMPLE_RATE}h", *samples)


def _wav_header(data_bytes: int) -> bytes:
    return b"".join(
        (
            b"RIFF",
            struct.pack("<I", 36 + data_bytes),
            b"WAVE",
            b"fmt ",
            struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16),
            b"data",
            struct.pack("<I", data_bytes),
        )
    )


def wav(job_id: str, text_length: int) -> Payload:
    """The job's audio: a mono 16 kHz 16-bit PCM WAV file, its tone chosen by the id."""
    h = id_hash(job_id, "audio")
    block = _tone_block(h % TONE_VARIANTS)
    shift = 2 * ((h >> 8) % SAMPLE_RATE)  # rotate the periodic block: same tiling, other phase
    block = block[shift:] + block[:shift]
    data_bytes = 2 * _audio_samples(text_length)
    head = _wav_header(data_bytes)
    return Payload(FileKind.AUDIO.content_type, head, block, len(head) + data_bytes)


def segments(text: str, max_chars: int) -> list[tuple[int, int, str]]:
    """`text` cut into (start, end, piece) runs of at most `max_chars`, at spaces when possible.

    Offsets index `text`; pieces are stripped and never empty.
    """
    out: list[tuple[int, int, str]] = []
    start = 0
    n = len(text)
    while start < n:
        while start < n and text[start].isspace():
            start += 1
        if start >= n:
            break
        end = min(n, start + max_chars)
        if end < n and not text[end].isspace():
            cut = text.rfind(" ", start + 1, end)
            if cut > start:
                end = cut
        piece = text[start:end].strip()
        if piece:
            out.append((start, end, piece))
        start = end
    return out


def _timed(text: str, max_chars: int, duration_ms: int) -> list[tuple[int, int, str]]:
    """Segments with (start_ms, end_ms) proportional to their character offsets."""
    total = max(1, len(text))
    cuts = segments(text, max_chars)
    timed = []
    for i, (start, end, piece) in enumerate(cuts):
        begin_ms = duration_ms * start // total
        end_ms = duration_ms if i == len(cuts) - 1 else duration_ms * end // total
        timed.append((begin_ms, max(begin_ms, end_ms), piece))
    if timed:  # the first cue starts the audio
        timed[0] = (0, timed[0][1], timed[0][2])
    return timed


def srt_time(ms: int) -> str:
    """`ms` as an SRT timestamp, `HH:MM:SS,mmm`."""
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d},{millis:03d}"


def _duration_ms(text: str) -> int:
    return round(audio_seconds(len(text)) * 1000)


def srt(text: str) -> bytes:
    """Subtitles for `text`, covering its audio from 0 to the end."""
    cues = _timed(text, SRT_CUE_CHARS, _duration_ms(text))
    lines = []
    for number, (begin, end, piece) in enumerate(cues, 1):
        lines.append(f"{number}\n{srt_time(begin)} --> {srt_time(end)}\n{piece}\n")
    return "\n".join(lines).encode()


def info_json(job_id: str, text: str) -> bytes:
    """The timestamp file: per-word timings (invented layout)."""
    duration = _duration_ms(text)
    words = [
        {"text": piece, "begin_ms": begin, "end_ms": end}
        for begin, end, piece in _timed(text, WORD_CHARS, duration)
    ]
    doc = {
        "job_id": job_id,
        "sample_rate": SAMPLE_RATE,
        "duration_ms": duration,
        "words": words,
    }
    return orjson.dumps(doc)


def action_json(job_id: str, text: str) -> bytes:
    """The action file: a gesture every few seconds, chosen by the id (invented layout)."""
    duration = _duration_ms(text)
    h = id_hash(job_id, "actions")
    actions = []
    for i, begin in enumerate(range(0, duration, ACTION_EVERY_MS)):
        name = ACTIONS[(h >> (i % 48)) % len(ACTIONS)]
        actions.append({"action": name, "begin_ms": begin, "end_ms": min(duration, begin + 1200)})
    return orjson.dumps({"job_id": job_id, "duration_ms": duration, "actions": actions})


def render(job: SimJob, kind: FileKind) -> Payload:
    """One result file of `job` (whether the job has it is the caller's question)."""
    if kind is FileKind.AUDIO:
        return wav(job.job_id, job.text_length)
    if kind is FileKind.SRT:
        body = srt(job.text)
    elif kind is FileKind.INFO:
        body = info_json(job.job_id, job.text)
    else:
        body = action_json(job.job_id, job.text)
    return Payload(kind.content_type, body, b"", len(body))


class MediaCache:
    """A small LRU of rendered files, so repeated downloads of a job cost nothing to render."""

    __slots__ = ("_entries", "_size")

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[str, FileKind], Payload] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, job: SimJob, kind: FileKind) -> Payload:
        """The file, rendered now or taken from the cache."""
        key = (job.job_id, kind)
        payload = self._entries.get(key)
        if payload is not None:
            self._entries.move_to_end(key)
            return payload
        payload = render(job, kind)
        self._entries[key] = payload
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return payload
