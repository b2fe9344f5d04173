"""realtalk's base64 and G.711 side by side with pybase64, the stdlib and audioop (24 kHz).

Run: .venv/bin/python -m pytest benches/bench_codec.py --benchmark-only \
         --benchmark-columns=median,iqr,ops -p no:cacheprovider
"""

import base64
import binascii

import numpy as np
import pybase64
import pytest

from realtalk.audio import (
    alaw_decode,
    alaw_encode,
    b64decode,
    b64encode,
    pcm16_from_base64,
    pcm16_to_base64,
    ulaw_decode,
    ulaw_encode,
)

# The stdlib module up to 3.12; the audioop-lts backport installs the same name from 3.13.
import audioop

SIZES = {"20ms": 480, "100ms": 2400, "1s": 24_000, "10s": 240_000}


def pcm(n: int) -> np.ndarray:
    return (np.sin(np.arange(n) * 0.01) * 20000).astype(np.int16)


ENCODERS = {
    "realtalk": b64encode,
    "realtalk-pcm16": pcm16_to_base64,
    "pybase64": pybase64.b64encode_as_string,
    "stdlib": lambda raw: base64.b64encode(raw).decode("ascii"),
    "binascii": lambda raw: binascii.b2a_base64(raw, newline=False).decode("ascii"),
}

DECODERS = {
    "realtalk": b64decode,
    "pybase64": lambda text: pybase64.b64decode(text, validate=True),
    "stdlib": lambda text: base64.b64decode(text, validate=True),
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", ENCODERS)
def test_base64_encode(benchmark, name, size) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"base64 encode {size}"
    samples = pcm(SIZES[size])
    raw = samples.tobytes()
    argument = samples if name == "realtalk-pcm16" else raw
    result = benchmark(ENCODERS[name], argument)
    assert result == base64.b64encode(raw).decode()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", [*DECODERS, "realtalk-pcm16"])
def test_base64_decode(benchmark, name, size) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"base64 decode {size}"
    raw = pcm(SIZES[size]).tobytes()
    text = base64.b64encode(raw).decode()
    if name == "realtalk-pcm16":
        result = benchmark(pcm16_from_base64, text).tobytes()
    else:
        result = benchmark(DECODERS[name], text)
    assert result == raw


G711 = {
    "ulaw encode": (ulaw_encode, lambda raw: audioop.lin2ulaw(raw, 2)),
    "alaw encode": (alaw_encode, lambda raw: audioop.lin2alaw(raw, 2)),
    "ulaw decode": (ulaw_decode, lambda raw: audioop.ulaw2lin(raw, 2)),
    "alaw decode": (alaw_decode, lambda raw: audioop.alaw2lin(raw, 2)),
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("operation", G711)
@pytest.mark.parametrize("name", ["realtalk", "audioop"])
def test_g711(benchmark, name, operation, size) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"g711 {operation} {size}"
    ours, theirs = G711[operation]
    samples = pcm(SIZES[size])
    if operation.endswith("decode"):
        samples = ulaw_encode(samples) if operation.startswith("ulaw") else alaw_encode(samples)
    raw = samples.tobytes()
    if name == "realtalk":
        # The numpy face: an array in, an array out (as a pipeline would call it).
        result = benchmark(ours, samples).tobytes()
    else:
        result = benchmark(theirs, raw)
    assert result == theirs(raw)


OVERHEAD_CASES = {
    "float_to_pcm16": np.zeros(0, np.float32),
    "pcm16_to_float": np.zeros(0, np.int16),
    "b64encode": b"",
    "b64decode": "",
    "pcm16_to_base64": np.zeros(0, np.int16),
    "pcm16_from_base64": "",
    "ulaw_encode": np.zeros(0, np.int16),
    "ulaw_decode": np.zeros(0, np.uint8),
    "alaw_encode": np.zeros(0, np.int16),
    "alaw_decode": np.zeros(0, np.uint8),
}


@pytest.mark.parametrize("name", OVERHEAD_CASES)
def test_call_overhead(benchmark, name) -> None:  # type: ignore[no-untyped-def]
    """The fixed cost of a call (argument checks, output allocation) on an empty input."""
    import realtalk.audio

    benchmark.group = "per-call overhead (empty input)"
    function = getattr(realtalk.audio, name)
    assert len(benchmark(function, OVERHEAD_CASES[name])) == 0
