"""WAV files in and out, with the stdlib ``wave`` module.

``read_wav`` accepts integer PCM of any width (8, 16, 24, 32 bit), any rate and any channel
count, and returns float32 frames x channels; ``write_wav`` writes int16 PCM. Anything else
(float or compressed WAVs, truncated files) raises :class:`WavError` saying what it found.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt


class WavError(ValueError):
    """The file is not a readable integer-PCM WAV."""


@dataclass(frozen=True)
class WavAudio:
    samples: npt.NDArray[np.float32]  # frames x channels, in [-1, 1)
    sample_rate: int

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration_s(self) -> float:
        return self.samples.shape[0] / self.sample_rate

    def mono(self) -> npt.NDArray[np.float32]:
        """The channels averaged into one, contiguous."""
        if self.channels == 1:
            return np.ascontiguousarray(self.samples[:, 0])
        return np.ascontiguousarray(self.samples.mean(axis=1, dtype=np.float32))


def read_wav(path: str | Path) -> WavAudio:
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as wav:
            channels = wav.getnchannels()
            width = wav.getsampwidth()
            rate = wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        # wave says "unknown format: 3" for IEEE-float WAVs; name the cause plainly.
        detail = str(exc)
        if detail.startswith("unknown format"):
            detail = f"not integer PCM ({detail})"
        raise WavError(f"{path}: {detail}") from None
    if channels < 1 or rate < 1:
        raise WavError(f"{path}: {channels} channels at {rate} Hz")
    usable = len(raw) - len(raw) % (width * channels)
    raw = raw[:usable]
    if width == 1:  # 8-bit WAV is unsigned
        ints = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        ints = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        ints = value.astype(np.float32) / float(1 << 23)
    elif width == 4:
        ints = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / float(1 << 31)).astype(
            np.float32
        )
    else:
        raise WavError(f"{path}: unsupported sample width of {width} bytes")
    return WavAudio(ints.reshape(-1, channels), rate)


def write_wav(path: str | Path, samples: npt.NDArray[np.int16], sample_rate: int) -> None:
    """Write mono int16 PCM."""
    data = np.ascontiguousarray(samples, dtype="<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(data.tobytes())


__all__ = ["WavAudio", "WavError", "read_wav", "write_wav"]
