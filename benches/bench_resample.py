"""realtalk's resampler side by side with soxr, scipy and libsamplerate.

Streaming: one 20 ms mono float32 chunk per call (Python call included), realtalk at each
preset against soxr.ResampleStream at HQ (20-bit) and MQ (16-bit). One-shot: 10 s mono float32
against soxr.resample HQ, scipy.signal.resample_poly and samplerate sinc_best. Each streaming id
carries the measured streaming lag in ms (input fed x ratio minus output returned, averaged over
20 ms chunks), so speed reads beside delay.

Run: .venv/bin/python -m pytest benches/bench_resample.py --benchmark-only \
         --benchmark-columns=median,iqr,ops -p no:cacheprovider
"""

from __future__ import annotations

from collections.abc import Callable
from math import gcd
from typing import Any

import numpy as np
import pytest
import samplerate
import soxr
from scipy import signal

from realtalk.audio import Resampler, resample

STREAM_PAIRS = [(48_000, 24_000), (44_100, 24_000), (16_000, 24_000), (24_000, 48_000)]
ONE_SHOT_PAIRS = [(48_000, 24_000), (44_100, 24_000), (24_000, 48_000)]


def noise(frames: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(frames) * 0.1).astype(np.float32)


def streaming_lag_ms(process: Callable[[np.ndarray], np.ndarray], in_rate: int, out_rate: int) -> float:
    """Average of (outputs owed for the input fed so far - outputs returned), in ms."""
    chunk = noise(in_rate // 50, seed=1)
    fed = returned = 0
    lags = []
    for _ in range(100):
        returned += len(process(chunk))
        fed += len(chunk)
        lags.append(fed * out_rate / in_rate - returned)
    return float(np.mean(lags[10:])) / out_rate * 1000


def streamers(in_rate: int, out_rate: int) -> list[Any]:
    params = []
    for quality in ["low", "high", "max"]:
        lag = streaming_lag_ms(Resampler(in_rate, out_rate, quality=quality).process, in_rate, out_rate)
        params.append(pytest.param(("realtalk", quality), id=f"realtalk-{quality}-lag{lag:.2f}ms"))
    for quality in ["HQ", "MQ"]:
        sox = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=quality)
        lag = streaming_lag_ms(sox.resample_chunk, in_rate, out_rate)
        params.append(pytest.param(("soxr", quality), id=f"soxr-{quality}-lag{lag:.2f}ms"))
    return params


@pytest.mark.parametrize(
    ("in_rate", "out_rate", "implementation"),
    [
        pytest.param(in_rate, out_rate, p.values[0], id=f"{in_rate}->{out_rate}-{p.id}")
        for in_rate, out_rate in STREAM_PAIRS
        for p in streamers(in_rate, out_rate)
    ],
)
def test_stream_20ms_chunk(benchmark, in_rate, out_rate, implementation) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"resample stream 20 ms {in_rate}->{out_rate}"
    library, quality = implementation
    chunk = noise(in_rate // 50)
    if library == "realtalk":
        process = Resampler(in_rate, out_rate, quality=quality).process
    else:
        process = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=quality).resample_chunk
    for _ in range(10):  # past the start-up, where outputs are still withheld
        process(chunk)
    result = benchmark(process, chunk)
    if library == "realtalk":  # soxr returns its output in bursts
        assert abs(len(result) - len(chunk) * out_rate / in_rate) <= 1


def realtalk_one_shot(x: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    return resample(x, in_rate, out_rate, quality="high")


def soxr_one_shot(x: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    return soxr.resample(x, in_rate, out_rate, "HQ")


def scipy_one_shot(x: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    divisor = gcd(in_rate, out_rate)
    return signal.resample_poly(x, out_rate // divisor, in_rate // divisor)


def samplerate_one_shot(x: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    return samplerate.resample(x, out_rate / in_rate, "sinc_best")


@pytest.mark.parametrize(
    "implementation",
    [realtalk_one_shot, soxr_one_shot, scipy_one_shot, samplerate_one_shot],
    ids=["realtalk-high", "soxr-HQ", "scipy-resample_poly", "samplerate-sinc_best"],
)
@pytest.mark.parametrize(("in_rate", "out_rate"), ONE_SHOT_PAIRS, ids=lambda r: str(r))
def test_one_shot_10s(benchmark, implementation, in_rate, out_rate) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"resample one-shot 10 s {in_rate}->{out_rate}"
    x = noise(in_rate * 10)
    result = benchmark.pedantic(implementation, args=(x, in_rate, out_rate), rounds=5, warmup_rounds=1)
    assert abs(len(result) - len(x) * out_rate / in_rate) <= 2
