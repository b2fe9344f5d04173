"""Python-side cost of 20 ms frames: realtalk's Vad next to webrtcvad (every mode).

    python -m pytest benches/bench_vad.py --benchmark-only --benchmark-timer=time.thread_time \
        --benchmark-columns=median,iqr,ops

Both detectors get the same 16 kHz int16 speech-like audio (voiced stretches, pauses, noise),
one call per 20 ms frame; one benchmark round is one second of audio, 50 calls, so divide the
times by 50 for the cost of a frame. A plain `for` loop drives the calls, the cheapest
harness Python has. realtalk's `process` and `classify` take the numpy frames; webrtcvad takes
bytes, so its frames are converted once, before timing. The thread-time timer measures CPU
time of the benchmarking thread, so a busy machine does not inflate the figures.
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


FRAMES_PER_ROUND = 50  # one second of 20 ms frames


def one_second(frames: list[NDArray[np.int16]]) -> Iterator[list[NDArray[np.int16]]]:
    """Successive one-second slices of the audio, round after round."""
    return cycle(one_second_lists(frames))


@pytest.mark.benchmark(group="vad: 50 calls of one 20 ms frame, 16 kHz int16")
@pytest.mark.parametrize("method", ["process", "classify"])
def test_realtalk(benchmark: Callable[..., object], method: str) -> None:
    vad = Vad(RATE, frame_ms=20)
    call: Callable[[NDArray[np.int16]], object] = getattr(vad, method)
    rounds = one_second(frames())

    def second() -> None:
        for frame in next(rounds):
            call(frame)

    benchmark(second)


@pytest.mark.benchmark(group="vad: 50 calls of one 20 ms frame, 16 kHz int16")
@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_webrtcvad(benchmark: Callable[..., object], mode: int) -> None:
    vad = webrtcvad.Vad(mode)
    rounds = cycle([[frame.tobytes() for frame in chunk] for chunk in one_second_lists(frames())])

    def second() -> None:
        for frame in next(rounds):
            vad.is_speech(frame, RATE)

    benchmark(second)


def one_second_lists(frames: list[NDArray[np.int16]]) -> list[list[NDArray[np.int16]]]:
    return [frames[i : i + FRAMES_PER_ROUND] for i in range(0, len(frames), FRAMES_PER_ROUND)]
