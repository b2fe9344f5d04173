"""realtalk's PCM16 conversion side by side with numpy, on 24 kHz audio.

Run: .venv/bin/python -m pytest benches/bench_pcm.py --benchmark-only \
         --benchmark-columns=median,iqr,ops -p no:cacheprovider
"""

import numpy as np
import pytest

from realtalk.audio import float_to_pcm16, pcm16_to_float

SIZES = {"20ms": 480, "100ms": 2400, "1s": 24_000, "10s": 240_000}


def numpy_float_to_pcm16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 32767), -32768, 32767).astype(np.int16)


def numpy_pcm16_to_float(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) / np.float32(32768)


def float_signal(n: int) -> np.ndarray:
    return (np.sin(np.arange(n, dtype=np.float32) * np.float32(0.001)) * np.float32(0.9)).astype(
        np.float32
    )


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(
    "implementation", [float_to_pcm16, numpy_float_to_pcm16], ids=["realtalk", "numpy"]
)
def test_float32_to_pcm16(benchmark, implementation, size) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"pcm f32->i16 {size}"
    x = float_signal(SIZES[size])
    result = benchmark(implementation, x)
    np.testing.assert_array_equal(result, numpy_float_to_pcm16(x))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(
    "implementation", [pcm16_to_float, numpy_pcm16_to_float], ids=["realtalk", "numpy"]
)
def test_pcm16_to_float32(benchmark, implementation, size) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"pcm i16->f32 {size}"
    x = float_to_pcm16(float_signal(SIZES[size]))
    result = benchmark(implementation, x)
    np.testing.assert_array_equal(result, numpy_pcm16_to_float(x))
