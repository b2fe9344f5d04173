"""The fused frame paths against the Python ways of doing the same, per 20 ms frame.

Run: ``.venv/bin/python -m pytest benches/bench_frame.py -p no:cacheprovider --benchmark-only
--benchmark-columns=median,iqr,ops --benchmark-group-by=group``

Uplink: a 48 kHz float32 microphone frame (960 samples) to the JSON text of an
``input_audio_buffer.append`` event (24 kHz PCM16). Downlink: a 24 kHz PCM16 audio delta
(480 samples) to a 48 kHz float32 speaker frame. Duplex: one of each. Every contender keeps a
streaming resampler across calls, as a live session does. Real-time duplex streams per core =
20 ms / the duplex median.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pybase64
import pytest
import soxr

from realtalk.audio import Downlink, Uplink

MIC_RATE = 48_000
WIRE_RATE = 24_000
SPEAKER_RATE = 48_000


def mic_frame() -> np.ndarray:
    t = np.arange(960) / MIC_RATE
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def delta_message() -> str:
    rng = np.random.default_rng(0)
    pcm = (rng.standard_normal(480) * 3000).astype("<i2")
    return json.dumps(
        {
            "type": "response.output_audio.delta",
            "event_id": "event_CCXGRxsAimPAs8kS2Wc7Z",
            "response_id": "resp_CCXHw0UJld10EzIUXQCNh",
            "item_id": "item_CCXHwGjjDUfOXbiySlK7i",
            "output_index": 0,
            "content_index": 0,
            "delta": base64.b64encode(pcm.tobytes()).decode(),
            "obfuscation": "aLxx0jTEciOGe",
        }
    )


def typical() -> tuple[Callable[[np.ndarray], Any], Callable[[str], Any]]:
    """json + base64 + numpy + soxr, as most clients are written."""
    up = soxr.ResampleStream(MIC_RATE, WIRE_RATE, 1, dtype="float32")
    down = soxr.ResampleStream(WIRE_RATE, SPEAKER_RATE, 1, dtype="float32")

    def uplink(frame: np.ndarray) -> str:
        wire = up.resample_chunk(frame)
        pcm = np.clip(np.rint(wire * 32767), -32768, 32767).astype(np.int16)
        audio = base64.b64encode(pcm.tobytes()).decode()
        return json.dumps({"type": "input_audio_buffer.append", "audio": audio})

    def downlink(message: str) -> np.ndarray | None:
        event = json.loads(message)
        if event["type"] != "response.output_audio.delta":
            return None
        pcm = np.frombuffer(base64.b64decode(event["delta"]), np.int16)
        return down.resample_chunk(pcm.astype(np.float32) / 32768)

    return uplink, downlink


def tuned(soxr_quality: str = "HQ") -> tuple[Callable[[np.ndarray], Any], Callable[[str], Any]]:
    """orjson + pybase64 + soxr + numpy: the fastest Python pieces."""
    up = soxr.ResampleStream(MIC_RATE, WIRE_RATE, 1, dtype="float32", quality=soxr_quality)
    down = soxr.ResampleStream(WIRE_RATE, SPEAKER_RATE, 1, dtype="float32", quality=soxr_quality)

    def uplink(frame: np.ndarray) -> bytes:
        wire = up.resample_chunk(frame)
        pcm = np.clip(np.rint(wire * 32767), -32768, 32767).astype(np.int16)
        audio = pybase64.b64encode_as_string(pcm.tobytes())
        return orjson.dumps({"type": "input_audio_buffer.append", "audio": audio})

    def downlink(message: str) -> np.ndarray | None:
        event = orjson.loads(message)
        if event["type"] != "response.output_audio.delta":
            return None
        pcm = np.frombuffer(pybase64.b64decode(event["delta"], validate=True), np.int16)
        return down.resample_chunk(pcm.astype(np.float32) * np.float32(1 / 32768))

    return uplink, downlink


def fused(quality: str) -> tuple[Callable[[np.ndarray], Any], Callable[[str], Any]]:
    """realtalk: one call each way."""
    return (
        Uplink(MIC_RATE, quality=quality).encode,
        Downlink(SPEAKER_RATE, dtype=np.float32, quality=quality).decode,
    )


# Each realtalk quality next to the tuned path at a comparable soxr quality: realtalk "high"
# (>= 100 dB) with soxr's default HQ, realtalk "low" (>= 80 dB) with soxr LQ (16-bit).
PATHS = {
    "typical (json+base64+numpy+soxr HQ)": typical,
    "tuned (orjson+pybase64+numpy+soxr HQ)": tuned,
    "realtalk fused": lambda: fused("high"),
    "tuned, soxr LQ": lambda: tuned("LQ"),
    "realtalk fused, quality=low": lambda: fused("low"),
}


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.benchmark(group="frame uplink: 20 ms 48k float32 -> append event")
def test_uplink(benchmark: Any, path: str) -> None:
    uplink, _ = PATHS[path]()
    frame = mic_frame()
    for _ in range(10):  # past the resamplers' start-up
        uplink(frame)
    benchmark(uplink, frame)


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.benchmark(group="frame downlink: 20 ms delta -> 48k float32")
def test_downlink(benchmark: Any, path: str) -> None:
    _, downlink = PATHS[path]()
    message = delta_message()
    for _ in range(10):
        downlink(message)
    benchmark(downlink, message)


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.benchmark(group="frame duplex: one uplink + one downlink frame")
def test_duplex(benchmark: Any, path: str) -> None:
    uplink, downlink = PATHS[path]()
    frame, message = mic_frame(), delta_message()

    def duplex() -> None:
        uplink(frame)
        downlink(message)

    for _ in range(10):
        duplex()
    benchmark(duplex)


# The same paths at the wire rate (24 kHz in and out): what the fused path itself costs, with
# no resampler on either side.


def typical_at_wire_rate() -> tuple[Callable[[np.ndarray], Any], Callable[[str], Any]]:
    def uplink(frame: np.ndarray) -> str:
        pcm = np.clip(np.rint(frame * 32767), -32768, 32767).astype(np.int16)
        audio = base64.b64encode(pcm.tobytes()).decode()
        return json.dumps({"type": "input_audio_buffer.append", "audio": audio})

    def downlink(message: str) -> np.ndarray | None:
        event = json.loads(message)
        if event["type"] != "response.output_audio.delta":
            return None
        return np.frombuffer(base64.b64decode(event["delta"]), np.int16).astype(np.float32) / 32768

    return uplink, downlink


def tuned_at_wire_rate() -> tuple[Callable[[np.ndarray], Any], Callable[[str], Any]]:
    def uplink(frame: np.ndarray) -> bytes:
        pcm = np.clip(np.rint(frame * 32767), -32768, 32767).astype(np.int16)
        audio = pybase64.b64encode_as_string(pcm.tobytes())
        return orjson.dumps({"type": "input_audio_buffer.append", "audio": audio})

    def downlink(message: str) -> np.ndarray | None:
        event = orjson.loads(message)
        if event["type"] != "response.output_audio.delta":
            return None
        pcm = np.frombuffer(pybase64.b64decode(event["delta"], validate=True), np.int16)
        return pcm.astype(np.float32) * np.float32(1 / 32768)

    return uplink, downlink


WIRE_RATE_PATHS = {
    "typical (json+base64+numpy)": typical_at_wire_rate,
    "tuned (orjson+pybase64+numpy)": tuned_at_wire_rate,
    "realtalk fused": lambda: (Uplink(WIRE_RATE).encode, Downlink(WIRE_RATE).decode),
}


@pytest.mark.parametrize("path", list(WIRE_RATE_PATHS))
@pytest.mark.benchmark(group="frame duplex at 24 kHz (no resampling): 480-sample frame each way")
def test_duplex_at_wire_rate(benchmark: Any, path: str) -> None:
    uplink, downlink = WIRE_RATE_PATHS[path]()
    frame, message = mic_frame()[:480].copy(), delta_message()

    def duplex() -> None:
        uplink(frame)
        downlink(message)

    benchmark(duplex)
