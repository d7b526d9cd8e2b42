"""Checking that saved audio is audio: WAV headers, MP3 frames, error pages."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import pytest

from watcher._audio import audio_seconds, mp3_seconds, wav_seconds


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
    with pytest.raises(ValueError, match=r"not a|claims"):
        audio_seconds(path, suffix)


def test_simulator_wav_is_valid(tmp_path: Path) -> None:
    """The stdlib agrees with our reading on a WAV read back through `wave`."""
    path = _wav(tmp_path / "b.wav", 1.0, rate=8000)
    with wave.open(io.BytesIO(path.read_bytes())) as w:
        assert w.getnframes() / w.getframerate() == pytest.approx(wav_seconds(path))


def _cut(path: Path, keep: int) -> Path:
    path.write_bytes(path.read_bytes()[:keep])
    return path


def test_a_wav_cut_short_is_refused_not_timed_by_its_header(tmp_path: Path) -> None:
    """A 1.535 s WAV cut to 0.38 s of data is an error, not 1.535 s (its header's claim)."""
    path = _wav(tmp_path / "a.wav", 1.535)
    _cut(path, 44 + int(0.38 * 32000))
    with pytest.raises(ValueError, match="claims"):
        wav_seconds(path)


def test_a_wav_whose_data_chunk_overruns_the_file_is_refused(tmp_path: Path) -> None:
    """A RIFF size patched to fit the cut file does not hide a data chunk that claims more."""
    path = _cut(_wav(tmp_path / "a.wav", 1.0), 44 + 8000)
    data = bytearray(path.read_bytes())
    data[4:8] = (len(data) - 8).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="data chunk claims 32000 bytes, the file holds 8000"):
        wav_seconds(path)


def test_a_wav_with_bytes_beyond_its_header_is_refused(tmp_path: Path) -> None:
    """Bytes after what the header accounts for (a longer body than the object) are an error."""
    path = _wav(tmp_path / "a.wav", 1.0)
    path.write_bytes(path.read_bytes() + b"\x00" * 100)
    with pytest.raises(ValueError, match="claims"):
        wav_seconds(path)


def test_an_mp3_cut_mid_frame_is_refused(tmp_path: Path) -> None:
    """An MP3 whose last frame is cut short is an error, not a shorter duration."""
    path = _mp3(tmp_path / "a.mp3", 40)
    _cut(path, len(path.read_bytes()) - 100)
    with pytest.raises(ValueError, match="cut short"):
        mp3_seconds(path)


def test_an_mp3_whose_frames_stop_before_the_end_is_refused(tmp_path: Path) -> None:
    """Junk after the frames that is not a tag (a spliced or damaged file) is an error."""
    path = _mp3(tmp_path / "a.mp3", 40, junk=b"<html>502 Bad Gateway</html>" * 10)
    with pytest.raises(ValueError, match="frames stop at byte"):
        mp3_seconds(path)


def test_a_streamed_wav_is_timed_by_the_data_on_disk(tmp_path: Path) -> None:
    """RIFF and data sizes of 0xFFFFFFFF (unknown when the header was written): the bytes count."""
    path = _wav(tmp_path / "a.wav", 1.0)
    data = bytearray(path.read_bytes())
    data[4:8] = data[40:44] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data[: 44 + 16000]))
    assert wav_seconds(path) == pytest.approx(0.5)
