"""Event parsing and serialisation: realtalk.events against the usual Python ways.

Run: ``.venv/bin/python -m pytest benches/bench_events.py -p no:cacheprovider --benchmark-only
--benchmark-columns=median,iqr,ops --benchmark-group-by=group``

The hot message is a GA ``response.output_audio.delta`` carrying 100 ms of 24 kHz PCM16
(4800 bytes, 6400 base64 characters) with the ``obfuscation`` field live servers add. The
target is parsing in under 5 us plus the base64 decode, which has its own group for
reference. Every contender turns the same bytes into an object whose ``delta`` is the base64
string.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pybase64
import pydantic
import pytest
from openai.types.realtime import RealtimeServerEvent
from realtalk.events import (
    InputAudioBufferAppendEvent,
    ResponseOutputAudioDeltaEvent,
    parse_server_event,
    serialize_client_event,
)

SDK_SERVER_EVENT = pydantic.TypeAdapter(RealtimeServerEvent)


def _pcm_base64(milliseconds: int) -> str:
    rng = np.random.default_rng(0)
    pcm = (rng.standard_normal(24 * milliseconds) * 3000).astype("<i2")
    return base64.b64encode(pcm.tobytes()).decode()


def _delta_message(event_type: str) -> bytes:
    return json.dumps(
        {
            "type": event_type,
            "event_id": "event_C9G5RJeJ2gF77mV7f2B1j",
            "response_id": "resp_C9G5RJeJ2gF77mV7f2B1k",
            "item_id": "item_C9G5RJeJ2gF77mV7f2B1l",
            "output_index": 0,
            "content_index": 0,
            "delta": _pcm_base64(100),
            "obfuscation": "Qm9nZGFu",
        }
    ).encode()


GA_DELTA = _delta_message("response.output_audio.delta")
# A field no model knows (as "obfuscation" once was) sends parsing down the slow path.
GA_DELTA_UNKNOWN_FIELD = GA_DELTA[:-1] + b', "future_field": "x"}'
BETA_DELTA = _delta_message("response.audio.delta")
SMALL_EVENT = json.dumps(
    {
        "type": "input_audio_buffer.speech_started",
        "event_id": "event_C9G5RJeJ2gF77mV7f2B1j",
        "audio_start_ms": 1000,
        "item_id": "item_C9G5RJeJ2gF77mV7f2B1l",
    }
).encode()


def _sdk_validate(data: bytes) -> Any:
    return SDK_SERVER_EVENT.validate_python(json.loads(data))


PARSERS: dict[str, Callable[[bytes], Any]] = {
    "realtalk": parse_server_event,
    "json.loads": json.loads,
    "orjson.loads": orjson.loads,
    "json.loads+openai-pydantic": _sdk_validate,
    "openai-pydantic.validate_json": SDK_SERVER_EVENT.validate_json,
}


def _delta_of(result: Any) -> str:
    return result["delta"] if isinstance(result, dict) else result.delta  # type: ignore[no-any-return]


@pytest.mark.benchmark(group="parse output_audio.delta 100 ms (GA)")
@pytest.mark.parametrize("contender", list(PARSERS))
def test_parse_audio_delta(benchmark: Any, contender: str) -> None:
    parse = PARSERS[contender]
    result = benchmark(parse, GA_DELTA)
    assert _delta_of(result) == json.loads(GA_DELTA)["delta"]
    if contender == "realtalk":
        assert isinstance(result, ResponseOutputAudioDeltaEvent)


@pytest.mark.benchmark(group="parse output_audio.delta 100 ms (GA)")
def test_parse_audio_delta_with_unknown_field(benchmark: Any) -> None:
    result = benchmark(parse_server_event, GA_DELTA_UNKNOWN_FIELD)
    assert isinstance(result, ResponseOutputAudioDeltaEvent)
    assert result.extra == {"future_field": "x"}


@pytest.mark.benchmark(group="parse audio.delta 100 ms (beta, translated to GA)")
@pytest.mark.parametrize("contender", ["realtalk", "json.loads"])
def test_parse_beta_audio_delta(benchmark: Any, contender: str) -> None:
    if contender == "realtalk":
        result = benchmark(parse_server_event, BETA_DELTA, protocol="beta")
        assert isinstance(result, ResponseOutputAudioDeltaEvent)
    else:
        result = benchmark(json.loads, BETA_DELTA)
    assert _delta_of(result) == json.loads(BETA_DELTA)["delta"]


@pytest.mark.benchmark(group="parse small event (speech_started)")
@pytest.mark.parametrize("contender", list(PARSERS))
def test_parse_small_event(benchmark: Any, contender: str) -> None:
    result = benchmark(PARSERS[contender], SMALL_EVENT)
    audio_start_ms = result["audio_start_ms"] if isinstance(result, dict) else result.audio_start_ms
    assert audio_start_ms == 1000


@pytest.mark.benchmark(group="base64 decode of the 100 ms delta (reference)")
@pytest.mark.parametrize("contender", ["base64.b64decode", "pybase64.b64decode"])
def test_decode_delta(benchmark: Any, contender: str) -> None:
    delta = json.loads(GA_DELTA)["delta"]
    decode = base64.b64decode if contender == "base64.b64decode" else pybase64.b64decode
    assert len(benchmark(decode, delta)) == 4800


APPEND_AUDIO = _pcm_base64(20)


def _json_dumps_append() -> bytes:
    return json.dumps(
        {"type": "input_audio_buffer.append", "event_id": "event_1", "audio": APPEND_AUDIO}
    ).encode()


def _orjson_dumps_append() -> bytes:
    return orjson.dumps(
        {"type": "input_audio_buffer.append", "event_id": "event_1", "audio": APPEND_AUDIO}
    )


def _realtalk_append() -> bytes:
    return serialize_client_event(InputAudioBufferAppendEvent(audio=APPEND_AUDIO))


def _realtalk_append_mapping() -> bytes:
    return serialize_client_event({"type": "input_audio_buffer.append", "audio": APPEND_AUDIO})


SERIALIZERS: dict[str, Callable[[], bytes]] = {
    "realtalk (model, generated id)": _realtalk_append,
    "realtalk (mapping, validated)": _realtalk_append_mapping,
    "json.dumps": _json_dumps_append,
    "orjson.dumps": _orjson_dumps_append,
}


@pytest.mark.benchmark(group="serialize input_audio_buffer.append 20 ms")
@pytest.mark.parametrize("contender", list(SERIALIZERS))
def test_serialize_append(benchmark: Any, contender: str) -> None:
    wire = benchmark(SERIALIZERS[contender])
    assert json.loads(wire)["audio"] == APPEND_AUDIO
