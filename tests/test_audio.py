"""Checking that saved audio is audio: WAV headers, MP3 frames, error pages."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import pytest

from watcher.audio import audio_seconds, mp3_seconds, wav_seconds


def _wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(seconds * rate))
    return path


def _mp3(path: Path, frames: int, junk: bytes = b"") -> Path:
    # MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, no padding: 417-byte frames of 1152 samples.
    header = bytes([0xFF, 0xFB, 0x90, 0x00])
    frame = header + b"\x00" * (417 - 4)
    path.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x0a" + b"\x00" * 10 + frame * frames + junk)
    return path


def test_wav_duration_from_its_header(tmp_path: Path) -> None:
    """A 2.5 s WAV written by the stdlib reads as 2.5 s."""
    assert wav_seconds(_wav(tmp_path / "a.wav", 2.5)) == pytest.approx(2.5)


def test_mp3_duration_from_its_frames(tmp_path: Path) -> None:
    """40 frames of 1152 samples at 44.1 kHz, after an ID3 tag and before trailing junk."""
    path = _mp3(tmp_path / "a.mp3", 40, junk=b"TAG" + b"\x00" * 125)
    assert mp3_seconds(path) == pytest.approx(40 * 1152 / 44100)


@pytest.mark.parametrize("suffix", [".wav", ".mp3"])
@pytest.mark.parametrize(
    "body",
    [
        b"<?xml version='1.0'?><Error><Code>AccessDenied</Code></Error>",
        b"<html><body>502 Bad Gateway</body></html>",
        b"",
        b"RIFF\x00\x00\x00\x00WAVEjunk",
    ],
)
def test_error_pages_are_not_audio(tmp_path: Path, suffix: str, body: bytes) -> None:
    """XML and HTML error pages, empty and truncated files fail with a reason."""
    path = tmp_path / f"x{suffix}"
    path.write_bytes(body)
    with pytest.raises(ValueError, match="not a"):
        audio_seconds(path, suffix)


def test_simulator_wav_is_valid(tmp_path: Path) -> None:
    """The stdlib agrees with our reading on a WAV read back through `wave`."""
    path = _wav(tmp_path / "b.wav", 1.0, rate=8000)
    with wave.open(io.BytesIO(path.read_bytes())) as w:
        assert w.getnframes() / w.getframerate() == pytest.approx(wav_seconds(path))
