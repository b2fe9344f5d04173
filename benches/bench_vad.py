"""Python-side cost of one 20 ms frame: realtalk's Vad next to webrtcvad (every mode).

    python -m pytest benches/bench_vad.py --benchmark-only --benchmark-columns=median,iqr,ops

Both detectors get the same 16 kHz int16 speech-like audio, one 20 ms frame per call, cycling
through 5 s so the detectors see speech, pauses and noise (not one frame over and over).
realtalk's `process` and `classify` take the numpy frame; webrtcvad takes bytes, so its
frames are converted once, before timing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import cycle

import numpy as np
import pytest
import webrtcvad
from numpy.typing import NDArray

from realtalk.audio import Vad

RATE = 16000
FRAME = RATE * 20 // 1000


def audio() -> NDArray[np.int16]:
    rng = np.random.RandomState(0)
    t = np.arange(5 * RATE) / RATE
    voiced = sum(np.exp(-(((150 * h - 700) / 500) ** 2)) * np.sin(2 * np.pi * 150 * h * t) for h in range(1, 20))
    envelope = (np.sin(2 * np.pi * 0.7 * t) > 0).astype(float)
    x = 0.1 * voiced * envelope + 0.003 * rng.standard_normal(len(t))
    return np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)


def frames() -> list[NDArray[np.int16]]:
    pcm = audio()
    return [pcm[i : i + FRAME] for i in range(0, len(pcm) - FRAME + 1, FRAME)]


def run(benchmark: Callable[..., object], step: Callable[[], object]) -> None:
    benchmark(step)


@pytest.mark.benchmark(group="vad per 20 ms frame, 16 kHz")
@pytest.mark.parametrize("method", ["process", "classify"])
def test_realtalk(benchmark: Callable[..., object], method: str) -> None:
    vad = Vad(RATE, frame_ms=20)
    call = getattr(vad, method)
    source: Iterator[NDArray[np.int16]] = cycle(frames())
    run(benchmark, lambda: call(next(source)))


@pytest.mark.benchmark(group="vad per 20 ms frame, 16 kHz")
@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_webrtcvad(benchmark: Callable[..., object], mode: int) -> None:
    vad = webrtcvad.Vad(mode)
    source = cycle([frame.tobytes() for frame in frames()])
    run(benchmark, lambda: vad.is_speech(next(source), RATE))
