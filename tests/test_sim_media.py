"""The simulator's result files: real WAV, valid SRT, JSON side files; all deterministic."""

from __future__ import annotations

import io
import itertools
import re
import wave

import orjson
import pytest

from watcher.sim.jobs import SimJob
from watcher.sim.media import (
    SAMPLE_RATE,
    FileKind,
    MediaCache,
    action_json,
    audio_seconds,
    files_of,
    info_json,
    kind_from_name,
    segments,
    srt,
    wav,
)

CUE = re.compile(
    r"(\d+)\n(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})\n(.+)\n", re.MULTILINE
)


def _ms(h: str, m: str, s: str, ms: str) -> int:
    return ((int(h) * 60 + int(m)) * 60 + int(s)) * 1000 + int(ms)


def parse_srt(data: bytes) -> list[tuple[int, int, int, str]]:
    """(number, start_ms, end_ms, text) per cue; fails the test if anything else is present."""
    text = data.decode()
    blocks = text.split("\n\n")
    cues = []
    for block in blocks:
        match = CUE.fullmatch(block if block.endswith("\n") else block + "\n")
        assert match is not None, f"not an SRT cue: {block!r}"
        g = match.groups()
        cues.append((int(g[0]), _ms(*g[1:5]), _ms(*g[5:9]), g[9]))
    return cues


def make_job(text: str, job_id: str = "job-1", **flags: bool) -> SimJob:
    return SimJob(
        job_id=job_id,
        text=text,
        voice_asset_id="v",
        audio_format="WAV",
        need_timestamp=flags.get("need_timestamp", False),
        gen_srt=flags.get("gen_srt", False),
        has_action=flags.get("has_action", False),
        priority=5,
        create_time=0.0,
        start=0.0,
        end=0.0,
        failure=None,
    )


@pytest.mark.parametrize("length", [1, 12, 100, 400])
def test_wav_parses_and_lasts_as_long_as_the_text(length: int) -> None:
    """The WAV reads with the stdlib: mono 16-bit 16 kHz, 0.08 s per character, at least 1 s."""
    data = wav("job-1", length).read()
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, SAMPLE_RATE)
        frames = w.getnframes()
        assert len(w.readframes(frames)) == 2 * frames
    assert frames / SAMPLE_RATE == pytest.approx(max(1.0, 0.08 * length))
    assert len(data) == 44 + 2 * frames


def test_wav_is_deterministic_and_differs_by_id() -> None:
    """The same id gives the same bytes; another id other bytes."""
    assert wav("job-1", 50).read() == wav("job-1", 50).read()
    assert wav("job-1", 50).read() != wav("job-2", 50).read()


def test_wav_is_not_silent() -> None:
    """The audio carries a signal, not zeros."""
    data = wav("job-1", 30).read()[44:]
    assert data.count(0) < len(data) // 4


def test_large_wav_streams_in_chunks_that_match_the_whole() -> None:
    """A 20 MB file streams in chunks adding up to its length; a byte range matches read()."""
    payload = wav("big", 7813)
    assert payload.length > 20_000_000
    total = sum(len(c) for c in payload.chunks(256 * 1024))
    assert total == payload.length
    whole = payload.read()
    start, stop = 1_234_567, 1_234_567 + 300_001
    assert b"".join(payload.chunks(65_536, start, stop)) == whole[start:stop]
    assert b"".join(payload.chunks(7, 0, 100)) == whole[:100]


def test_srt_cues_are_valid_ordered_and_cover_the_audio() -> None:
    """Cues are numbered from 1, ordered, start at 0 and end at the audio's end."""
    text = "Hello there, this is a longer sentence that will need several subtitle cues to show."
    cues = parse_srt(srt(text))
    assert len(cues) > 2
    assert [c[0] for c in cues] == list(range(1, len(cues) + 1))
    assert cues[0][1] == 0
    assert cues[-1][2] == round(audio_seconds(len(text)) * 1000)
    for (_, start, end, _), (_, next_start, _, _) in itertools.pairwise(cues):
        assert start <= end <= next_start
    assert " ".join(c[3] for c in cues) == " ".join(text.split())
    assert all(len(c[3]) <= 24 for c in cues)


def test_srt_splits_text_without_spaces() -> None:
    """Text without spaces (as Chinese is) is cut into cues of at most 24 characters."""
    text = "获取音频文件下载链接" * 8
    cues = parse_srt(srt(text))
    assert "".join(c[3] for c in cues) == text
    assert all(len(c[3]) <= 24 for c in cues)


def test_srt_is_deterministic() -> None:
    """The same text always gives the same SRT."""
    assert srt("one two three") == srt("one two three")


def test_segments_are_never_empty() -> None:
    """segments() skips whitespace and yields non-empty pieces within the limit."""
    pieces = segments("  a  bb   " + "c" * 30 + "  ", 8)
    assert [p for _, _, p in pieces] == ["a  bb", "cccccccc", "cccccccc", "cccccccc", "cccccc"]


def test_info_and_action_files_are_json_with_ordered_timings() -> None:
    """The timestamp and action files are JSON whose timings are ordered within the audio."""
    text = "word " * 40
    info = orjson.loads(info_json("job-1", text))
    duration = info["duration_ms"]
    starts = [w["begin_ms"] for w in info["words"]]
    assert starts == sorted(starts)
    assert all(0 <= w["begin_ms"] <= w["end_ms"] <= duration for w in info["words"])
    actions = orjson.loads(action_json("job-1", text))["actions"]
    assert actions
    assert all(0 <= a["begin_ms"] <= a["end_ms"] <= duration for a in actions)
    assert action_json("job-1", text) == action_json("job-1", text)


def test_files_follow_the_job_flags() -> None:
    """Audio always; timestamps, subtitles and actions only when the job has them."""
    assert files_of(make_job("t")) == (FileKind.AUDIO,)
    all_files = make_job("t", need_timestamp=True, gen_srt=True, has_action=True)
    assert set(files_of(all_files)) == set(FileKind)
    assert kind_from_name("j", "j.srt") is FileKind.SRT
    assert kind_from_name("j", "k.srt") is None


def test_media_cache_reuses_and_evicts() -> None:
    """The LRU returns the same rendering twice and holds at most its size."""
    cache = MediaCache(size=2)
    first = make_job("hello", "a", gen_srt=True)
    srt_payload = cache.get(first, FileKind.SRT)
    assert cache.get(first, FileKind.SRT) is srt_payload
    assert srt_payload.content_type == "application/x-subrip"
    cache.get(make_job("x", "b"), FileKind.AUDIO)
    cache.get(make_job("y", "c"), FileKind.AUDIO)
    assert len(cache) == 2
    assert cache.get(first, FileKind.SRT) is not srt_payload
