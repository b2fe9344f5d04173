"""realtalk.audio.EchoCanceller: the Rust canceller seen from Python. Echo through a synthetic
room made with numpy (an exponentially decaying random impulse response) is removed; the
near end alone passes; input checks. The canceller's finer properties (drift, pure tone,
double talk, no allocation, SIMD paths) are tested in rust/aec/tests.rs."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from realtalk.audio import EchoCanceller


def talker(rate: int, seconds: float, f0: float, seed: int) -> NDArray[np.float32]:
    """Speech-like: a gliding harmonic tone under a moving formant, syllable bursts, some noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = f0 * (1 + 0.15 * np.sin(2 * np.pi * 0.7 * t))
    phase = np.cumsum(pitch) / rate
    formant = 600 + 400 * np.sin(2 * np.pi * 1.3 * t)
    voiced = np.zeros_like(t)
    for h in range(1, 20):
        f = pitch * h
        voiced += np.where(f < rate / 2, np.exp(-(((f - formant) / 700) ** 2)) * np.sin(2 * np.pi * h * phase), 0)
    envelope = np.sqrt(np.abs(np.sin(4 * np.pi * t)))
    x = envelope * voiced / np.max(np.abs(voiced)) + 0.03 * rng.standard_normal(t.size)
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


def room(rate: int, seed: int, direct_ms: float = 8.0, rt60: float = 0.3, length_ms: float = 200.0) -> NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    n, direct = int(rate * length_ms / 1000), int(rate * direct_ms / 1000)
    h = np.zeros(n)
    tail = np.arange(n - direct - 1)
    h[direct] = 0.5
    reverb = rng.standard_normal(tail.size) * np.exp(-6.9 * tail / (rt60 * rate))
    # The reverberant tail carries as much energy as the direct sound, at any rate.
    h[direct + 1 :] = 0.5 * reverb / np.sqrt(np.sum(reverb**2))
    return h


def run(canceller: EchoCanceller, mic: NDArray, reference: NDArray) -> NDArray:
    """Frame by frame; the output realigned with the microphone (latency removed)."""
    n = canceller.frame_samples
    frames = [canceller.process(mic[i : i + n], reference[i : i + n]) for i in range(0, len(mic) - n + 1, n)]
    out = np.concatenate(frames)[canceller.latency_samples :]
    return np.concatenate([out, np.zeros(len(mic) - len(out), out.dtype)])


def erle_db(mic: NDArray, out: NDArray) -> float:
    mic, out = mic.astype(np.float64), out.astype(np.float64)
    return float(10 * np.log10(np.sum(mic**2) / np.sum(out**2)))


@pytest.mark.parametrize("rate", [16000, 48000])
def test_cancels_the_echo_of_a_room(rate: int) -> None:
    reference = talker(rate, 8.0, 130.0, seed=1)
    mic = np.convolve(reference, room(rate, seed=2))[: reference.size].astype(np.float32)
    canceller = EchoCanceller(rate)
    out = run(canceller, mic, reference)
    assert out.dtype == np.float32
    last = slice(6 * rate, 8 * rate - rate // 10)
    assert erle_db(mic[last], out[last]) > 19.0
    assert canceller.frames == reference.size // canceller.frame_samples
    assert canceller.divergences == 0


def test_int16_in_int16_out_and_a_delayed_reference() -> None:
    rate, delay_ms = 16000, 30
    reference = talker(rate, 8.0, 120.0, seed=3)
    echo = np.convolve(reference, room(rate, seed=4, direct_ms=2.0))[: reference.size]
    # The device holds the sound back 30 ms before the room: the canceller is told so.
    lag = rate * delay_ms // 1000
    echo = np.concatenate([np.zeros(lag), echo[:-lag]])
    mic = np.clip(np.round(echo * 32768), -32768, 32767).astype(np.int16)
    ref16 = np.round(reference * 32767).astype(np.int16)
    canceller = EchoCanceller(rate, delay_ms=delay_ms, filter_ms=200)
    out = run(canceller, mic, ref16)
    assert out.dtype == np.int16
    last = slice(6 * rate, 8 * rate - rate // 10)
    assert erle_db(mic[last], out[last]) > 15.0


def test_near_end_alone_passes_unchanged() -> None:
    rate = 16000
    near = talker(rate, 2.0, 220.0, seed=5)
    silence = np.zeros_like(near)
    for suppress in (True, False):
        canceller = EchoCanceller(rate, suppress=suppress)
        out = run(canceller, near, silence)
        assert canceller.latency_samples == (160 if suppress else 0)
        whole = slice(0, near.size - 160)
        np.testing.assert_allclose(out[whole], near[whole], atol=1e-5)


def test_reset_starts_over_and_output_is_deterministic() -> None:
    rate = 16000
    reference = talker(rate, 1.0, 130.0, seed=6)
    mic = np.convolve(reference, room(rate, seed=7))[: reference.size].astype(np.float32)
    canceller = EchoCanceller(rate)
    first = run(canceller, mic, reference)
    assert not np.array_equal(run(canceller, mic, reference), first)
    canceller.reset()
    assert canceller.frames == 0
    np.testing.assert_array_equal(run(canceller, mic, reference), first)
    np.testing.assert_array_equal(run(EchoCanceller(rate), mic, reference), first)


def test_configuration_is_reported() -> None:
    canceller = EchoCanceller(48000, frame_ms=20, filter_ms=300, delay_ms=25, suppress=False)
    assert (canceller.sample_rate, canceller.frame_ms, canceller.filter_ms, canceller.delay_ms) == (48000, 20, 300, 25)
    assert canceller.frame_samples == 960 and canceller.latency_samples == 0 and not canceller.suppress
    assert repr(canceller) == "EchoCanceller(48000, frame_ms=20, filter_ms=300, delay_ms=25, suppress=False)"
    assert EchoCanceller(44100).frame_samples == 441


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sample_rate": 7999}, "sample_rate must be between 8000 and 48000"),
        ({"sample_rate": 96000}, "sample_rate must be between 8000 and 48000"),
        ({"sample_rate": -1}, "sample_rate"),
        ({"sample_rate": 16000, "frame_ms": 15}, "frame_ms must be 10, 20 or 30"),
        ({"sample_rate": 11025}, "not a whole number of samples"),
        ({"sample_rate": 16000, "filter_ms": 2000}, "filter_ms must be between"),
        ({"sample_rate": 16000, "delay_ms": 5000}, "delay_ms must be between 0 and 1000"),
    ],
)
def test_bad_configuration_is_a_value_error(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EchoCanceller(**kwargs)


def test_bad_frames_are_value_errors_and_change_nothing() -> None:
    canceller = EchoCanceller(16000)
    frame = np.zeros(160, np.float32)
    with pytest.raises(ValueError, match="mic must be one frame of 160 samples"):
        canceller.process(np.zeros(159, np.float32), frame)
    with pytest.raises(ValueError, match="reference must be one frame of 160 samples"):
        canceller.process(frame, np.zeros(320, np.int16))
    nan = frame.copy()
    nan[3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        canceller.process(nan, frame)
    with pytest.raises(ValueError, match="finite"):
        canceller.process(frame, np.where(nan == nan, frame, np.inf).astype(np.float32))
    for bad in (frame.astype(np.float64), frame.reshape(2, 80), frame[::2].repeat(2)[::2], [0.0] * 160, b"\0" * 320):
        with pytest.raises(ValueError, match="must be a 1-D contiguous numpy array of float32 or int16"):
            canceller.process(bad, frame)
    assert canceller.frames == 0
