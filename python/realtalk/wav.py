"""WAV files in and out.

``read_wav`` reads what recorders, ffmpeg and sox write: integer PCM of 8, 16, 24 or 32 bits and
IEEE float of 32 or 64 bits, in the plain and the ``WAVE_FORMAT_EXTENSIBLE`` header, at any rate
and channel count; it returns float32 frames x channels. It parses the RIFF chunks itself (the
stdlib ``wave`` module reads neither float nor, before Python 3.12, the extensible header).
Anything else (compressed formats, truncated files, NaN samples) raises :class:`WavError`
saying what it found. ``write_wav`` writes int16 PCM with the stdlib.
"""

from __future__ import annotations

import struct
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

PCM = 1
IEEE_FLOAT = 3
EXTENSIBLE = 0xFFFE
# A streaming writer that cannot seek back leaves the data size at its maximum.
UNKNOWN_SIZE = 0xFFFFFFFF


class WavError(ValueError):
    """The file is not a WAV this module can read; the message says why."""


@dataclass(frozen=True)
class WavAudio:
    """Audio read from a WAV file: float32 frames x channels and the sample rate."""
    samples: npt.NDArray[np.float32]  # frames x channels, in [-1, 1)
    sample_rate: int

    @property
    def channels(self) -> int:
        """How many channels the file has."""
        return int(self.samples.shape[1])

    @property
    def duration_s(self) -> float:
        """The audio's length in seconds."""
        return self.samples.shape[0] / self.sample_rate

    def mono(self) -> npt.NDArray[np.float32]:
        """The channels averaged into one, contiguous."""
        if self.channels == 1:
            return np.ascontiguousarray(self.samples[:, 0])
        return np.ascontiguousarray(self.samples.mean(axis=1, dtype=np.float32))


def read_wav(path: str | Path) -> WavAudio:
    """Read a WAV file (see the module's docstring for what is accepted); raises WavError saying
    what is wrong, FileNotFoundError when there is no such file."""
    path = Path(path)
    data = path.read_bytes()
    try:
        tag, channels, rate, bits, audio = _parse_riff(data)
    except WavError as exc:
        raise WavError(f"{path}: {exc}") from None
    if channels < 1 or rate < 1:
        raise WavError(f"{path}: {channels} channels at {rate} Hz")
    width = bits // 8
    widths = (1, 2, 3, 4) if tag == PCM else (4, 8)
    if bits % 8 or width not in widths:
        kind = "integer PCM" if tag == PCM else "float"
        raise WavError(f"{path}: unsupported sample format ({bits}-bit {kind})")
    audio = audio[: len(audio) - len(audio) % (width * channels)]  # a torn last frame
    samples = _decode(audio, tag, width)
    if tag == IEEE_FLOAT and not np.isfinite(samples).all():
        raise WavError(f"{path}: holds NaN or infinite samples")
    return WavAudio(samples.reshape(-1, channels), rate)


def _parse_riff(data: bytes) -> tuple[int, int, int, int, bytes]:
    """(format tag, channels, rate, bits per sample, audio bytes) of a RIFF/WAVE file."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError("not a WAV file (no RIFF/WAVE header)")
    fmt: tuple[int, int, int, int] | None = None
    offset = 12
    while offset + 8 <= len(data):
        chunk, size = data[offset:offset + 4], int.from_bytes(data[offset + 4:offset + 8], "little")
        body = offset + 8
        if chunk == b"fmt ":
            if size < 16 or body + size > len(data):
                raise WavError("truncated: the format chunk is cut short")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
            if tag == EXTENSIBLE:
                if size < 40:
                    raise WavError("truncated: the extensible format chunk is cut short")
                tag = int.from_bytes(data[body + 24:body + 26], "little")  # the sub-format GUID
            if tag not in (PCM, IEEE_FLOAT):
                raise WavError(f"not PCM or float audio (format tag {tag:#06x}, compressed)")
            fmt = (tag, channels, rate, bits)
        elif chunk == b"data":
            if fmt is None:
                raise WavError("the audio comes before its format chunk")
            available = len(data) - body
            if size == UNKNOWN_SIZE:
                size = available
            elif size > available:
                raise WavError(f"truncated: the header promises {size} bytes of audio, the file "
                               f"holds {available}")
            return (*fmt, data[body:body + size])
        offset = body + size + (size & 1)  # chunks are padded to an even length
    if fmt is None:
        raise WavError("truncated: no format chunk")
    raise WavError("truncated: no audio (data) chunk")


def _decode(raw: bytes, tag: int, width: int) -> npt.NDArray[np.float32]:
    if tag == IEEE_FLOAT:
        return np.frombuffer(raw, dtype="<f4" if width == 4 else "<f8").astype(np.float32)
    if width == 1:  # 8-bit WAV is unsigned
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    if width == 2:
        return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    if width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        return value.astype(np.float32) / float(1 << 23)
    return (np.frombuffer(raw, dtype="<i4").astype(np.float64) / float(1 << 31)).astype(np.float32)


def write_wav(path: str | Path, samples: npt.NDArray[np.int16], sample_rate: int) -> None:
    """Write mono int16 PCM."""
    data = np.ascontiguousarray(samples, dtype="<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(data.tobytes())


__all__ = ["WavAudio", "WavError", "read_wav", "write_wav"]
