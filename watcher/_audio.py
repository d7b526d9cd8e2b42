"""Is a downloaded audio file what it claims to be, all of it? A WAV must have a RIFF/WAVE header
whose sizes agree with the file (the RIFF size with the file's, the `data` chunk within it) and a
`fmt ` chunk before `data` (a streamed WAV, whose sizes say "unknown", is timed by the data on
disk); an MP3 must be MPEG audio frames in a row (after an ID3 tag, if any) that run to the end
of the file, or to a trailing tag. An HTML or XML error page saved under an audio name fails
both, and so does a file cut short. Gives the duration of the audio on disk.

Pure functions over a file path; they read only what they need (a WAV's header, an MP3's frames).
"""

from __future__ import annotations

import os
from pathlib import Path

MIN_MP3_FRAMES = 3
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # what a streaming WAV writer puts before the length is known
_MP3_TRAILERS = (b"TAG", b"APETAGEX", b"LYRICSBEGIN", b"ID3")  # tags that may follow the frames
_MP3_BITRATES = {  # kbit/s by (MPEG-1?, bitrate index), Layer III
    True: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    False: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _describe(head: bytes) -> str:
    text = head[:16].decode("ascii", "replace").strip()
    return (
        f"it starts with {text!r}" if text.isprintable() and text else f"it starts {head[:8].hex()}"
    )


def wav_seconds(path: Path) -> float:
    """The duration of a WAV file; ValueError says why it is not one (or not all there)."""
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise ValueError(f"not a WAV file: {_describe(head)}")
        riff = int.from_bytes(head[4:8], "little")
        streamed = riff in _UNKNOWN_SIZES  # written before its length was known
        if not streamed and riff + 8 not in (size, size - 1):  # the last pad byte may be left out
            raise ValueError(f"WAV header claims {riff + 8} bytes, the file has {size}")
        byte_rate = 0
        while chunk := f.read(8):
            if len(chunk) < 8:
                break
            name, length = chunk[:4], int.from_bytes(chunk[4:], "little")
            if name == b"fmt ":
                fmt = f.read(length + (length & 1))
                if len(fmt) < 16:
                    raise ValueError("not a WAV file: its fmt chunk is cut short")
                byte_rate = int.from_bytes(fmt[8:12], "little")
            elif name == b"data":
                if not byte_rate:
                    raise ValueError("not a WAV file: data comes before a usable fmt chunk")
                held = size - f.tell()
                if streamed and length in _UNKNOWN_SIZES:
                    length = held  # no claim to check: the data is what is on disk
                if length > held:
                    raise ValueError(f"WAV data chunk claims {length} bytes, the file holds {held}")
                return float(length) / byte_rate
            else:
                f.seek(length + (length & 1), 1)
    raise ValueError("not a WAV file: it has no data chunk")


def _mp3_frame(header: bytes) -> tuple[int, float] | None:
    """(frame length in bytes, seconds) of a Layer III frame header, or None if it is not one."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version = (header[1] >> 3) & 3  # 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5
    layer = (header[1] >> 1) & 3  # 1: Layer III
    bitrate_index, rate_index = header[2] >> 4, (header[2] >> 2) & 3
    if version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    mpeg1 = version == 3
    bitrate = _MP3_BITRATES[mpeg1][bitrate_index] * 1000
    sample_rate = _MP3_RATES[version][rate_index]
    samples = 1152 if mpeg1 else 576
    padding = (header[2] >> 1) & 1
    length = samples // 8 * bitrate // sample_rate + padding
    return length, samples / sample_rate


def mp3_seconds(path: Path) -> float:
    """The duration of an MP3 file (sum of its frames); ValueError says why it is not one."""
    data = path.read_bytes()
    start = 0
    if data[:3] == b"ID3" and len(data) >= 10:  # skip an ID3v2 tag: 4 bytes of 7-bit size
        size = data[6] << 21 | data[7] << 14 | data[8] << 7 | data[9]
        start = 10 + size
    position = data.find(b"\xff", start)
    frames, seconds = 0, 0.0
    while 0 <= position < len(data):
        frame = _mp3_frame(data[position : position + 4])
        if frame is None:
            if frames >= MIN_MP3_FRAMES:
                break  # the end of the audio: only a tag may follow
            frames, seconds = 0, 0.0
            position = data.find(b"\xff", position + 1)
            continue
        frames += 1
        seconds += frame[1]
        position += frame[0]
    if frames < MIN_MP3_FRAMES:
        raise ValueError(f"not an MP3 file: no run of MPEG audio frames; {_describe(data[:16])}")
    if position > len(data):
        raise ValueError(f"MP3 cut short: its last frame needs {position - len(data)} more bytes")
    if position < len(data) and not data.startswith(_MP3_TRAILERS, position):
        raise ValueError(
            f"MP3 frames stop at byte {position} of {len(data)}: {_describe(data[position:])}"
        )
    return seconds


def audio_seconds(path: Path, suffix: str) -> float:
    """The duration of the audio file at `path`, checked as the format its `suffix` claims."""
    return mp3_seconds(path) if suffix.lower() == ".mp3" else wav_seconds(path)
