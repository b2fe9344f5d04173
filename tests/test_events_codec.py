"""Parsing and serialisation behaviour: forward compatibility, malformed input, ids, mappings,
the GA view of beta events, and property-based round trips."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from realtalk.errors import ProtocolError
from realtalk.events import (
    CLIENT_EVENT_TYPES,
    GA_ONLY_SERVER_EVENT_TYPES,
    SERVER_EVENT_TYPES,
    ConversationItemAddedEvent,
    ConversationItemCreatedEvent,
    ErrorEvent,
    InputAudioBufferAppendEvent,
    InputAudioBufferCommitEvent,
    InvalidEventError,
    ResponseOutputAudioDeltaEvent,
    ResponseOutputTextDeltaEvent,
    ServerEvent,
    SessionUpdateEvent,
    UnknownEvent,
    parse_client_event,
    parse_server_event,
    serialize_client_event,
    serialize_server_event,
    session_from_beta,
    session_to_beta,
)

GENERATED_ID = re.compile(r"event_[0-9a-f]{21}")

AUDIO_DELTA = {
    "type": "response.output_audio.delta",
    "event_id": "event_C9G5RJeJ2gF77mV7f2B1j",
    "response_id": "resp_1",
    "item_id": "item_1",
    "output_index": 0,
    "content_index": 0,
    "delta": base64.b64encode(bytes(range(256)) * 19).decode(),
}


def test_ga_audio_delta_fields() -> None:
    event = parse_server_event(json.dumps(AUDIO_DELTA))
    assert isinstance(event, ResponseOutputAudioDeltaEvent)
    assert event.type == "response.output_audio.delta"
    assert event.delta == AUDIO_DELTA["delta"]
    assert base64.b64decode(event.delta) == bytes(range(256)) * 19
    assert (event.response_id, event.item_id, event.output_index, event.content_index) == (
        "resp_1", "item_1", 0, 0,
    )  # fmt: skip
    assert event.event_id == AUDIO_DELTA["event_id"]


def test_str_and_bytes_input_agree() -> None:
    text = json.dumps(AUDIO_DELTA)
    assert parse_server_event(text) == parse_server_event(text.encode())


def test_obfuscation_field_is_known_and_kept() -> None:
    data = {**AUDIO_DELTA, "obfuscation": "xY3z"}
    event = parse_server_event(json.dumps(data))
    assert isinstance(event, ResponseOutputAudioDeltaEvent)
    assert event.obfuscation == "xY3z"
    assert event.extra == {}
    assert json.loads(serialize_server_event(event)) == data


@pytest.mark.parametrize("protocol", ["ga", "beta"])
def test_unknown_fields_are_kept_and_reserialised(protocol: str) -> None:
    data = {**AUDIO_DELTA, "future_field": {"nested": [1, 2]}, "another": None}
    if protocol == "beta":
        data["type"] = "response.audio.delta"
    event = parse_server_event(json.dumps(data), protocol=protocol)  # type: ignore[arg-type]
    assert isinstance(event, ResponseOutputAudioDeltaEvent)
    assert event.extra == {"future_field": {"nested": [1, 2]}, "another": None}
    assert event.delta == AUDIO_DELTA["delta"]
    assert json.loads(serialize_server_event(event, protocol)) == data  # type: ignore[arg-type]


def test_unknown_event_type_is_kept_whole() -> None:
    data = {"type": "response.brand_new.delta", "event_id": "event_1", "x": [1, {"y": None}]}
    event = parse_server_event(json.dumps(data))
    assert isinstance(event, UnknownEvent)
    assert event.type == "response.brand_new.delta"
    assert event.data == data
    assert event.event_id == "event_1"
    assert json.loads(serialize_server_event(event)) == data
    assert json.loads(serialize_server_event(event, "beta")) == data


def test_client_parser_does_not_take_server_events() -> None:
    event = parse_client_event(json.dumps(AUDIO_DELTA))
    assert isinstance(event, UnknownEvent)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b'{"type": "error",}', "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b'{"type": "error"} trailing', "not valid JSON"),
        (b"[]", "not a JSON object"),
        (b'"response.done"', "not a JSON object"),
        (b"null", "not a JSON object"),
        (b"{}", "no 'type'"),
        (b'{"event_id": "event_1", "delta": "AAAA"}', "no 'type'"),
        (b'{"type": 7}', "'type' is not a string"),
        (b'{"type": null}', "no 'type'"),
    ],
)
@pytest.mark.parametrize("protocol", ["ga", "beta"])
@pytest.mark.parametrize("parse", [parse_server_event, parse_client_event])
def test_malformed_input_raises_protocol_error(
    parse: Any, protocol: str, data: bytes, reason: str
) -> None:
    with pytest.raises(ProtocolError, match=reason):
        parse(data, protocol=protocol)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"type": "response.output_audio.delta", "delta": "AA"}, "missing required field"),
        ({**AUDIO_DELTA, "output_index": "0"}, r"Expected `int`, got `str` - at `\$.output_index`"),
        ({**AUDIO_DELTA, "delta": None}, r"Expected `str`, got `null` - at `\$.delta`"),
        ({"type": "error", "error": "boom"}, "Expected `object`, got `str`"),
    ],
)
def test_schema_violation_raises_invalid_event_error(data: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidEventError, match=reason) as info:
        parse_server_event(json.dumps(data))
    assert isinstance(info.value, ProtocolError)
    assert info.value.data == data


def test_null_ids_are_accepted() -> None:
    # Low-fidelity servers send null ids; the event is still delivered.
    event = parse_server_event(json.dumps({**AUDIO_DELTA, "item_id": None, "response_id": None}))
    assert isinstance(event, ResponseOutputAudioDeltaEvent)
    assert event.item_id is None


def test_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValueError, match="protocol"):
        parse_server_event(json.dumps(AUDIO_DELTA), protocol="v2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="protocol"):
        serialize_client_event(InputAudioBufferCommitEvent(), "v2")  # type: ignore[arg-type]


def test_every_event_class_has_its_ga_name_as_type() -> None:
    for registry in (CLIENT_EVENT_TYPES, SERVER_EVENT_TYPES):
        for name, cls in registry.items():
            assert cls.type == name
            assert msgspec.json.decode(msgspec.json.encode(_minimal(cls)))["type"] == name


def _minimal(cls: type[Any]) -> Any:
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(cls):
        if field.required:
            values[field.name] = _value_for(field.type)
    return cls(**values)


def _value_for(annotation: Any) -> Any:
    text = repr(annotation)
    if "list[" in text:
        return []
    if "dict[" in text:
        return {}
    if "int" in text:
        return 0
    if "float" in text:
        return 0.0
    return "x"


def test_generated_event_ids() -> None:
    ids = set()
    for _ in range(200):
        wire = json.loads(serialize_client_event(InputAudioBufferCommitEvent()))
        assert GENERATED_ID.fullmatch(wire["event_id"])
        ids.add(wire["event_id"])
    assert len(ids) == 200


def test_given_event_id_is_kept_and_event_not_mutated() -> None:
    event = InputAudioBufferAppendEvent(audio="AAAA", event_id="mine")
    assert json.loads(serialize_client_event(event))["event_id"] == "mine"
    bare = InputAudioBufferAppendEvent(audio="AAAA")
    serialize_client_event(bare)
    assert bare.event_id is msgspec.UNSET


def test_mapping_input_is_validated_and_serialised() -> None:
    wire = json.loads(serialize_client_event({"type": "input_audio_buffer.append", "audio": "AA"}))
    assert wire["type"] == "input_audio_buffer.append"
    assert wire["audio"] == "AA"
    assert GENERATED_ID.fullmatch(wire["event_id"])
    with pytest.raises(InvalidEventError, match="audio"):
        serialize_client_event({"type": "input_audio_buffer.append"})
    with pytest.raises(ProtocolError, match="type"):
        serialize_client_event({"audio": "AA"})


def test_mapping_in_ga_shape_becomes_beta_wire() -> None:
    session = {
        "type": "realtime",
        "output_modalities": ["text"],
        "audio": {"output": {"voice": "sage", "format": {"type": "audio/pcmu"}}},
        "max_output_tokens": 200,
    }
    wire = json.loads(
        serialize_client_event({"type": "session.update", "session": session}, "beta")
    )
    assert wire["session"] == {
        "modalities": ["text"],
        "voice": "sage",
        "output_audio_format": "g711_ulaw",
        "max_response_output_tokens": 200,
    }


def test_unknown_client_event_type_is_sent_as_given() -> None:
    wire = json.loads(serialize_client_event({"type": "session.close", "event_id": "e1"}))
    assert wire == {"type": "session.close", "event_id": "e1"}


def test_wrong_direction_is_a_type_error() -> None:
    event = parse_server_event(json.dumps(AUDIO_DELTA))
    with pytest.raises(TypeError, match="ClientEvent"):
        serialize_client_event(event)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ServerEvent"):
        serialize_server_event(InputAudioBufferCommitEvent())  # type: ignore[arg-type]


def test_beta_names_translate_both_ways() -> None:
    beta = {**AUDIO_DELTA, "type": "response.audio.delta"}
    event = parse_server_event(json.dumps(beta), protocol="beta")
    assert type(event) is ResponseOutputAudioDeltaEvent
    assert json.loads(serialize_server_event(event, "beta")) == beta
    assert json.loads(serialize_server_event(event, "ga")) == AUDIO_DELTA
    # A beta-speaking simulator writes the GA model with the beta name.
    text = ResponseOutputTextDeltaEvent(
        response_id="r", item_id="i", output_index=0, content_index=0, delta="hi", event_id="e"
    )
    assert json.loads(serialize_server_event(text, "beta"))["type"] == "response.text.delta"


def test_ga_names_under_beta_are_accepted() -> None:
    # The 2026 spec's legacy beta schemas use GA names; a beta parse still recognises them.
    event = parse_server_event(json.dumps(AUDIO_DELTA), protocol="beta")
    assert type(event) is ResponseOutputAudioDeltaEvent


def test_conversation_item_created_and_added_in_beta_output() -> None:
    item = {"id": "item_1", "type": "message", "role": "user", "content": []}
    for cls in (ConversationItemAddedEvent, ConversationItemCreatedEvent):
        wire = json.loads(serialize_server_event(cls(item=item, event_id="e"), "beta"))
        assert wire["type"] == "conversation.item.created"


def test_ga_only_events_keep_their_name_in_beta() -> None:
    for name in GA_ONLY_SERVER_EVENT_TYPES:
        wire = json.loads(serialize_server_event(_minimal(SERVER_EVENT_TYPES[name]), "beta"))
        assert wire["type"] == name


def test_error_event_is_an_event() -> None:
    data = {
        "type": "error",
        "event_id": "event_890",
        "error": {"type": "invalid_request_error", "code": "invalid_event",
                  "message": "The 'type' field is missing.", "param": None, "event_id": None},
    }  # fmt: skip
    event = parse_server_event(json.dumps(data))
    assert isinstance(event, ErrorEvent)
    assert event.error["code"] == "invalid_event"


# ---- property-based round trips ----

_json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8)
_json = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def _field_strategy(annotation: Any) -> st.SearchStrategy[Any]:
    text = repr(annotation)
    options: list[st.SearchStrategy[Any]] = []
    if "None" in text:
        options.append(st.none())
    if "list[" in text:
        options.append(
            st.lists(st.dictionaries(st.text(max_size=6), _json, max_size=2), max_size=2)
        )
    elif "dict[" in text:
        options.append(st.dictionaries(st.text(max_size=6), _json, max_size=3))
    elif "int" in text:
        options.append(st.integers(0, 2**40))
    elif "float" in text:
        options.append(st.floats(allow_nan=False, allow_infinity=False))
    else:
        options.append(st.text(max_size=12))
    return st.one_of(options)


@st.composite
def _events(draw: st.DrawFn, registry: dict[str, type[Any]]) -> Any:
    cls = draw(st.sampled_from(sorted(registry.values(), key=lambda c: c.type)))
    values = {}
    for field in msgspec.structs.fields(cls):
        if field.required or draw(st.booleans()):
            values[field.name] = draw(_field_strategy(field.type))
    event = cls(**values)
    extra = draw(
        st.dictionaries(
            st.text(min_size=1, max_size=6).filter(
                lambda k: k not in msgspec.structs.fields(cls) and k != "type"
            ),
            _json,
            max_size=2,
        )
    )
    known = {f.encode_name for f in msgspec.structs.fields(cls)} | {"type"}
    extra = {k: v for k, v in extra.items() if k not in known}
    if extra:
        event.__dict__["_extra"] = extra
    return event


def _wire(event: Any) -> dict[str, Any]:
    return {**msgspec.to_builtins(event), **event.extra}


def test_to_dict_is_the_ga_wire_object() -> None:
    data = {**AUDIO_DELTA, "future": [1]}
    event = parse_server_event(json.dumps(data))
    assert event.to_dict() == data
    unknown = parse_server_event(b'{"type": "x.y", "a": 1}')
    assert unknown.to_dict() == {"type": "x.y", "a": 1}
    beta = {**AUDIO_DELTA, "type": "response.audio.delta"}
    assert parse_server_event(json.dumps(beta), protocol="beta").to_dict() == AUDIO_DELTA


@given(_events(SERVER_EVENT_TYPES))
def test_server_event_ga_round_trip(event: ServerEvent) -> None:
    parsed = parse_server_event(serialize_server_event(event))
    assert type(parsed) is type(event)
    expected = _wire(event)
    expected.setdefault("event_id", parsed.event_id)
    assert _wire(parsed) == expected


@given(_events(CLIENT_EVENT_TYPES))
def test_client_event_ga_round_trip(event: Any) -> None:
    parsed = parse_client_event(serialize_client_event(event))
    assert type(parsed) is type(event)
    expected = _wire(event)
    expected.setdefault("event_id", parsed.event_id)
    assert _wire(parsed) == expected


@given(st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    for protocol in ("ga", "beta"):
        for parse in (parse_server_event, parse_client_event):
            try:
                event = parse(data, protocol=protocol)  # type: ignore[operator]
            except ProtocolError:
                continue
            assert isinstance(event, (UnknownEvent, msgspec.Struct))


# Beta sessions as the beta server and SDK describe them (flat).
_beta_formats = st.sampled_from(["pcm16", "g711_ulaw", "g711_alaw"])
BETA_SESSION = st.fixed_dictionaries(
    {},
    optional={
        "modalities": st.sampled_from([["text"], ["text", "audio"], ["audio", "text"]]),
        "instructions": st.text(max_size=10),
        "voice": st.sampled_from(["alloy", "sage", "verse"]),
        "input_audio_format": _beta_formats,
        "output_audio_format": _beta_formats,
        "input_audio_transcription": st.none() | st.just({"model": "whisper-1"}),
        "input_audio_noise_reduction": st.none() | st.just({"type": "near_field"}),
        "turn_detection": st.none() | st.just({"type": "server_vad", "threshold": 0.5}),
        "tools": st.just([]),
        "tool_choice": st.sampled_from(["auto", "none"]),
        "temperature": st.floats(0.6, 1.2),
        "max_response_output_tokens": st.integers(1, 4096) | st.just("inf"),
        "speed": st.floats(0.25, 1.5),
        "tracing": st.none() | st.just("auto"),
        "id": st.just("sess_1"),
        "object": st.just("realtime.session"),
    },
)


@given(BETA_SESSION)
def test_beta_session_round_trips_through_ga(beta: dict[str, Any]) -> None:
    ga = session_from_beta(beta)
    assert ga["type"] == "realtime"
    assert not {"modalities", "voice", "input_audio_format", "turn_detection"} & set(ga)
    assert session_to_beta(ga) == beta
    # The same through whole events, in both directions of the wire.
    wire = {"type": "session.update", "event_id": "e", "session": beta}
    event = parse_client_event(json.dumps(wire), protocol="beta")
    assert isinstance(event, SessionUpdateEvent)
    assert event.session == ga
    assert json.loads(serialize_client_event(event, "beta")) == wire


@given(st.sampled_from(["pcm16", "g711_ulaw", "g711_alaw"]))
def test_audio_formats_map_to_ga_objects(beta_format: str) -> None:
    expected = {
        "pcm16": {"type": "audio/pcm", "rate": 24000},
        "g711_ulaw": {"type": "audio/pcmu"},
        "g711_alaw": {"type": "audio/pcma"},
    }[beta_format]
    ga = session_from_beta({"input_audio_format": beta_format, "output_audio_format": beta_format})
    assert ga["audio"] == {"input": {"format": expected}, "output": {"format": expected}}


# Events whose payload the beta translation rewrites are covered with realistic payloads in
# test_events_openai.py; here every other server event goes GA -> beta wire -> GA unchanged.
_REWRITTEN = {"session", "response", "item"}
_PLAIN_SERVER_EVENTS = {
    name: cls
    for name, cls in SERVER_EVENT_TYPES.items()
    if not _REWRITTEN & {f.name for f in msgspec.structs.fields(cls)}
}


@given(_events(_PLAIN_SERVER_EVENTS))
def test_server_event_beta_round_trip(event: ServerEvent) -> None:
    wire = serialize_server_event(event, "beta")
    parsed = parse_server_event(wire, protocol="beta")
    assert type(parsed) is type(event)
    expected = _wire(event)
    expected.setdefault("event_id", parsed.event_id)
    assert _wire(parsed) == expected


@pytest.mark.parametrize(
    "data",
    [
        {"type": "conversation.item.input_audio_transcription.delta", "item_id": "i",
         "content_index": None, "delta": None, "obfuscation": None},
        {"type": "response.function_call_arguments.done", "response_id": "r", "item_id": "i",
         "output_index": 0, "call_id": "c", "arguments": "{}", "name": None},
        {"type": "input_audio_buffer.committed", "event_id": None, "item_id": None,
         "previous_item_id": None},
    ],
)  # fmt: skip
def test_null_optional_fields_are_kept(data: dict[str, Any]) -> None:
    event = parse_server_event(json.dumps(data))
    assert not isinstance(event, UnknownEvent)
    assert event.extra == {}
    out = json.loads(serialize_server_event(event))
    if "event_id" not in data:
        assert GENERATED_ID.fullmatch(out.pop("event_id"))
    assert out == data
