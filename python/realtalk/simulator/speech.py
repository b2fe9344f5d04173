"""Reply audio: the synthesiser plug-in that turns a reply's text into pcm16 24 kHz speech.

- `buzz` (the fallback): a voiced, speech-like tone with the rhythm of the words. Loud and
  voiced enough for any VAD, deterministic, fast, but not intelligible.
- `EspeakNg`: real synthesised speech from the ``espeak-ng`` program, so ``reply.wav`` can be
  listened to. `default_synthesizer()` picks it when ``espeak-ng`` is on the PATH.

A synthesiser is any callable ``(text, voice) -> Speech``; the simulator calls it once per
`Text` part of a reply that has audio output.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import zlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from realtalk import audio

SAMPLE_RATE = 24000


@dataclass(frozen=True)
class Speech:
    """Synthesised speech for a text: pcm16 at 24 kHz, and where each word starts (ms)."""

    pcm: bytes
    word_starts_ms: tuple[float, ...]
    words: tuple[str, ...]


class Synthesizer(Protocol):
    def __call__(self, text: str, voice: str) -> Speech: ...


# ---- the buzz -----------------------------------------------------------------------------
def _glottal_table(size: int = 4096) -> np.ndarray:
    """One period of a voiced source: 12 harmonics with a falling spectrum."""
    phase = 2 * np.pi * np.arange(size) / size
    table = sum(np.sin(k * phase) / k**1.2 for k in range(1, 13))
    return np.asarray(table / np.abs(table).max(), dtype=np.float32)


_GLOTTAL = _glottal_table()


@functools.lru_cache(maxsize=4096)
def _spoken_word(word: str) -> np.ndarray:
    """A word's waveform (pcm16 samples), cached: replies reuse most of their words."""
    seed = zlib.crc32(word.encode())
    letters = max(1, sum(ch.isalnum() for ch in word))
    duration = min(0.75, 0.12 + 0.055 * letters)
    n = int(duration * SAMPLE_RATE)
    t = np.arange(n, dtype=np.float32) / SAMPLE_RATE
    f0 = (120 + seed % 60) + 25 * np.sin(np.pi * t / duration) - 10 * t / duration
    cycles = np.cumsum(f0) / SAMPLE_RATE  # periods elapsed at each sample
    size = len(_GLOTTAL)
    voiced = _GLOTTAL[(cycles * size).astype(np.int64) % size]
    syllables = max(1, round(letters / 3))
    envelope = 0.55 + 0.45 * np.sin(np.pi * syllables * t / duration) ** 2
    edge = min(n // 2, int(0.02 * SAMPLE_RATE))
    if edge:
        ramp = np.linspace(0.0, 1.0, edge, dtype=np.float32)
        envelope[:edge] *= ramp
        envelope[n - edge :] *= ramp[::-1]
    return np.round(0.3 * 32767 * voiced * envelope).astype("<i2")


@functools.lru_cache(maxsize=256)
def synthesize_speech(text: str) -> Speech:
    """Voiced, speech-like sound: a glottal-pulse-like harmonic tone (120-205 Hz, gliding)
    shaped into syllables, words separated by short pauses and sentences by longer ones. Loud
    enough for any energy or voicing VAD to call it speech; deterministic."""
    words = tuple(text.split()) or ("…",)
    chunks: list[np.ndarray] = []
    starts: list[float] = []
    position = 0
    for word in words:
        waveform = _spoken_word(word)
        starts.append(position * 1000 / SAMPLE_RATE)
        gap = int((0.32 if word[-1:] in ".!?;:," else 0.09) * SAMPLE_RATE)
        chunks += [waveform, np.zeros(gap, dtype="<i2")]
        position += len(waveform) + gap
    return Speech(np.concatenate(chunks).tobytes(), tuple(starts), words)




def buzz(text: str, voice: str = "alloy") -> Speech:
    """The buzz as a synthesiser (every voice sounds the same)."""
    return synthesize_speech(text)


# ---- espeak-ng ----------------------------------------------------------------------------

# A distinct espeak-ng voice per Realtime voice, so two voices can be told apart by ear.
ESPEAK_VOICES = {
    "alloy": "en-us+f3",
    "ash": "en-us+m3",
    "ballad": "en-gb+m2",
    "coral": "en-us+f2",
    "echo": "en-us+m1",
    "sage": "en-us+f4",
    "shimmer": "en-us+f1",
    "verse": "en-us+m4",
    "marin": "en-us+f5",
    "cedar": "en-us+m5",
    "fable": "en-gb+m3",
    "onyx": "en-us+m6",
    "nova": "en-us+f2",
}


class SynthesisError(RuntimeError):
    """espeak-ng failed (the response then fails with this message)."""


class EspeakNg:
    """Speech from the ``espeak-ng`` program (one run per distinct text and voice, cached)."""

    def __init__(self, executable: str = "espeak-ng", words_per_minute: int = 175) -> None:
        found = shutil.which(executable)
        if found is None:
            raise SynthesisError(f"{executable} is not installed (or not on the PATH)")
        self.executable = found
        self.words_per_minute = words_per_minute
        self._cached = functools.lru_cache(maxsize=256)(self._synthesize)

    def __call__(self, text: str, voice: str = "alloy") -> Speech:
        return self._cached(text, voice if isinstance(voice, str) else "alloy")

    def _synthesize(self, text: str, voice: str) -> Speech:
        words = tuple(text.split()) or ("…",)
        command = [self.executable, "--stdout", "--stdin", "-s", str(self.words_per_minute),
                   "-v", ESPEAK_VOICES.get(voice, "en-us")]  # fmt: skip
        try:
            result = subprocess.run(command, input=text.encode(), capture_output=True,
                                    timeout=30, check=False)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SynthesisError(f"espeak-ng failed: {exc}") from None
        if result.returncode != 0:
            detail = result.stderr.decode(errors="replace").strip().splitlines()
            raise SynthesisError(f"espeak-ng failed: {detail[-1] if detail else result.returncode}")
        if not result.stdout:  # nothing to say (blank text, punctuation alone): silence
            return Speech(b"", tuple(0.0 for _ in words), words)
        samples, rate = _wav_samples(result.stdout)
        pcm = audio.resample(samples, rate, SAMPLE_RATE) if rate != SAMPLE_RATE else samples
        return Speech(np.ascontiguousarray(pcm, dtype="<i2").tobytes(),
                      _word_starts(words, len(pcm)), words)  # fmt: skip


def _wav_samples(data: bytes) -> tuple[np.ndarray, int]:
    """Mono pcm16 samples and rate from espeak-ng's WAV on stdout, whose header sizes are
    placeholders (it streams): the chunks are walked, and the data chunk runs to the end."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SynthesisError("espeak-ng wrote no WAV audio")
    at, rate = 12, 0
    while at + 8 <= len(data):
        kind, size = data[at : at + 4], int.from_bytes(data[at + 4 : at + 8], "little")
        body = at + 8
        if kind == b"fmt ":
            channels = int.from_bytes(data[body + 2 : body + 4], "little")
            rate = int.from_bytes(data[body + 4 : body + 8], "little")
            width = int.from_bytes(data[body + 14 : body + 16], "little")
            if (channels, width) != (1, 16):
                raise SynthesisError("espeak-ng wrote audio that is not mono pcm16")
        elif kind == b"data":
            end = len(data) - (len(data) - body) % 2
            return np.frombuffer(data[body:end], dtype="<i2"), rate
        at = body + size + size % 2
    raise SynthesisError("espeak-ng wrote no WAV audio")


def _word_starts(words: tuple[str, ...], frames: int) -> tuple[float, ...]:
    """Where each word starts (ms), estimated: espeak-ng's command line gives no timings, so
    the audio is shared out by the words' lengths (for the transcript deltas' pacing)."""
    weights = np.array([len(word) + 1 for word in words], dtype=np.float64)
    starts = np.concatenate([[0.0], np.cumsum(weights)[:-1]]) / weights.sum()
    total_ms = frames * 1000 / SAMPLE_RATE
    return tuple(float(s) * total_ms for s in starts)


@functools.cache
def default_synthesizer() -> Synthesizer:
    """espeak-ng when it is installed, else the buzz (one shared instance: one cache)."""
    try:
        return EspeakNg()
    except SynthesisError:
        return buzz


__all__ = [
    "EspeakNg",
    "Speech",
    "SynthesisError",
    "Synthesizer",
    "buzz",
    "default_synthesizer",
    "synthesize_speech",
]
