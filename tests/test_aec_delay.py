"""EchoCanceller.estimated_delay_ms: the device's output-to-input latency measured from the
signals (issue 19), so a device with 5-40 ms of latency needs no tuning. The scenes are built
with numpy with a known latency (the oracle): a speech-like far end through a soft-clipping
loudspeaker and a reverberant room whose direct sound arrives 1 ms after the loudspeaker
plays, plus background noise; in double talk a second talker too."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from realtalk.audio import EchoCanceller
from tests.test_aec import room, talker

DIRECT_MS = 1.0


Signal = NDArray[np.float32]


def microphone(rate: int, latency_ms: float, reference: Signal, near: bool) -> Signal:
    lag = int(rate * latency_ms / 1000)
    path = 4.0 * room(rate, seed=31, direct_ms=DIRECT_MS, rt60=0.5)
    echo = np.convolve(np.tanh(3.0 * reference) / 3.0, path)
    echo = np.concatenate([np.zeros(lag), echo])[: reference.size]
    rng = np.random.default_rng(32)
    mic = echo + rng.standard_normal(reference.size) * 0.1 * np.sqrt(np.mean(echo**2))
    if near:
        user = talker(rate, reference.size / rate, 230.0, seed=33)
        mic += np.convolve(user, room(rate, seed=34, direct_ms=9.0))[: reference.size]
    return np.asarray(mic, np.float32)


def estimates(canceller: EchoCanceller, mic: Signal, reference: Signal) -> list[int | None]:
    """The estimate after each frame."""
    n = canceller.frame_samples
    found = []
    for i in range(0, mic.size - n + 1, n):
        canceller.process(mic[i : i + n], reference[i : i + n])
        found.append(canceller.estimated_delay_ms)
    return found


@pytest.mark.parametrize("latency_ms", [5, 20, 30, 40])
@pytest.mark.parametrize("double_talk", [False, True])
def test_the_latency_is_found(latency_ms: int, double_talk: bool) -> None:
    rate = 16000
    reference = talker(rate, 5.0, 130.0, seed=30)
    canceller = EchoCanceller(rate)
    found = estimates(canceller, microphone(rate, latency_ms, reference, double_talk), reference)
    assert found[50] is None  # half a second: not yet
    expected = latency_ms + DIRECT_MS
    settled = found[300:]  # from 3 s on
    assert all(f is not None and abs(f - expected) <= 1.5 for f in settled), (expected, set(settled))


def test_other_rates_and_frames_and_a_given_delay() -> None:
    rate = 48000
    reference = talker(rate, 4.0, 130.0, seed=35)
    mic = microphone(rate, 30, reference, near=False)
    # delay_ms holds the filter's reference back; the estimate is still the whole latency.
    canceller = EchoCanceller(rate, frame_ms=20, delay_ms=20)
    found = estimates(canceller, mic, reference)
    assert abs((found[-1] or 0) - 31) <= 1.5
    canceller.reset()
    assert canceller.estimated_delay_ms is None


def test_no_estimate_without_a_far_end() -> None:
    rate = 16000
    near = talker(rate, 3.0, 230.0, seed=36)
    found = estimates(EchoCanceller(rate), near, np.zeros_like(near))
    assert found == [None] * len(found)
