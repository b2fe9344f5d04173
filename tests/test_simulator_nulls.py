"""`null` in client payloads (issue 18, bug 2): on an optional field it means "not set", as on
the live server, except where null has a meaning of its own (turn detection, transcription and
noise reduction off; no tracing, prompt, include or metadata). Required fields still refuse it.

The framework payloads are built with the openai package's own types and serialised the way
each framework does (livekit-plugins-openai: ``model_dump(exclude_unset=True)``, so a field it
assigns None goes out as null)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from openai.types.realtime import (
    RealtimeResponseCreateParams,
    RealtimeSessionCreateRequest,
    ResponseCreateEvent,
    SessionUpdateEvent,
)
from openai.types.realtime.realtime_audio_config import RealtimeAudioConfig
from openai.types.realtime.realtime_audio_config_input import RealtimeAudioConfigInput
from openai.types.realtime.realtime_audio_config_output import RealtimeAudioConfigOutput
from openai.types.realtime.realtime_audio_formats import AudioPCM
from realtalk.simulator import ServerSession
from realtalk.simulator._ids import IdFactory


def new_session(protocol: str = "ga") -> ServerSession:
    # Seeded: two sessions fed the same events give the same ids, so results compare whole.
    session = ServerSession(protocol=protocol, ids=IdFactory(18))  # type: ignore[arg-type]
    session.created_events()
    return session


def with_null(payload: dict[str, Any], path: str) -> dict[str, Any]:
    """A copy of ``payload`` with the field at the dotted ``path`` set to None."""
    out = copy.deepcopy(payload)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = None
    return out


def without(payload: dict[str, Any], path: str) -> dict[str, Any]:
    out = copy.deepcopy(payload)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[key]
    node.pop(last, None)
    return out


def only_event(events: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(events) == 1, events
    return events[0]


# ---- response.create ----------------------------------------------------------------------


def livekit_response_create() -> dict[str, Any]:
    # generate_reply() without instructions: RealtimeResponseCreateParams(instructions=None, ...)
    params = RealtimeResponseCreateParams(
        instructions=None, metadata={"client_event_id": "response_create_x"}
    )
    event = ResponseCreateEvent(
        type="response.create", event_id="response_create_x", response=params
    )
    return event.model_dump(by_alias=True, exclude_unset=True, exclude_defaults=False)


def test_livekit_generate_reply_is_a_response() -> None:
    payload = livekit_response_create()
    assert payload["response"]["instructions"] is None  # what goes on the wire
    session = new_session()
    session.receive(
        json.dumps(
            {"type": "session.update", "session": {"type": "realtime", "instructions": "Be brief."}}
        )
    )
    created = only_event(session.receive(json.dumps(payload)))
    assert created["type"] == "response.created"
    assert created["response"]["metadata"] == {"client_event_id": "response_create_x"}
    # Not set: the session's instructions apply.
    (response,) = session.take_new_responses()
    assert response.context.instructions == "Be brief."


RESPONSE_FIELDS = {
    "ga": [
        "instructions",
        "tools",
        "tool_choice",
        "conversation",
        "input",
        "output_modalities",
        "audio",
        "audio.output",
        "audio.output.voice",
        "audio.output.format",
        "max_output_tokens",
        "reasoning",
        "parallel_tool_calls",
    ],
    "beta": [
        "instructions",
        "tools",
        "tool_choice",
        "conversation",
        "input",
        "modalities",
        "voice",
        "output_audio_format",
        "temperature",
        "max_response_output_tokens",
        "max_output_tokens",
    ],
}


def response_created(protocol: str, response: dict[str, Any]) -> dict[str, Any]:
    session = new_session(protocol)
    session.receive(
        json.dumps({"type": "session.update", "session": {"type": "realtime", "instructions": "I"}})
        if protocol == "ga"
        else json.dumps({"type": "session.update", "session": {"instructions": "I"}})
    )
    event = only_event(session.receive(json.dumps({"type": "response.create", "response": response})))
    assert event["type"] == "response.created", event
    (state,) = session.take_new_responses()
    return {"response": event["response"], "instructions": state.context.instructions,
            "tools": state.context.tools, "items": state.context.items}  # fmt: skip


@pytest.mark.parametrize(
    ("protocol", "path"),
    [(p, f) for p, fields in RESPONSE_FIELDS.items() for f in fields],
)
def test_null_in_response_create_is_not_set(protocol: str, path: str) -> None:
    assert response_created(protocol, with_null({}, path)) == response_created(protocol, {})


@pytest.mark.parametrize("protocol", ["ga", "beta"])
def test_null_metadata_is_no_metadata(protocol: str) -> None:
    assert response_created(protocol, {"metadata": None})["response"]["metadata"] is None


# ---- session.update -----------------------------------------------------------------------

SESSION_FIELDS = {
    "ga": [
        "model",
        "output_modalities",
        "instructions",
        "audio",
        "audio.input",
        "audio.input.format",
        "audio.output",
        "audio.output.format",
        "audio.output.voice",
        "audio.output.speed",
        "tools",
        "tool_choice",
        "max_output_tokens",
        "truncation",
        "reasoning",
        "parallel_tool_calls",
    ],
    "beta": [
        "model",
        "modalities",
        "instructions",
        "voice",
        "input_audio_format",
        "output_audio_format",
        "tools",
        "tool_choice",
        "temperature",
        "max_response_output_tokens",
        "speed",
    ],
}


def session_update(protocol: str, session_fields: dict[str, Any]) -> dict[str, Any]:
    body = {"type": "realtime", **session_fields} if protocol == "ga" else session_fields
    return {"type": "session.update", "session": body}


@pytest.mark.parametrize(
    ("protocol", "path"),
    [(p, f) for p, fields in SESSION_FIELDS.items() for f in fields],
)
def test_null_in_session_update_leaves_the_field_as_it_is(protocol: str, path: str) -> None:
    session = new_session(protocol)
    before = copy.deepcopy(session.session)
    updated = only_event(session.receive(json.dumps(session_update(protocol, with_null({}, path)))))
    assert updated["type"] == "session.updated", updated
    assert updated["session"] == before


@pytest.mark.parametrize(
    ("turn_detection", "path"),
    [
        ({"type": "server_vad"}, "threshold"),
        ({"type": "server_vad"}, "prefix_padding_ms"),
        ({"type": "server_vad"}, "silence_duration_ms"),
        ({"type": "server_vad"}, "create_response"),
        ({"type": "server_vad"}, "interrupt_response"),
        ({"type": "semantic_vad"}, "eagerness"),
        ({"type": "semantic_vad"}, "create_response"),
    ],
)
def test_null_inside_turn_detection_is_the_default(
    turn_detection: dict[str, Any], path: str
) -> None:
    def effective(value: dict[str, Any]) -> Any:
        session = new_session()
        update = {"audio": {"input": {"turn_detection": value}}}
        event = only_event(session.receive(json.dumps(session_update("ga", update))))
        assert event["type"] == "session.updated", event
        return event["session"]["audio"]["input"]["turn_detection"]

    assert effective(with_null(turn_detection, path)) == effective(turn_detection)


@pytest.mark.parametrize(
    "path",
    [
        "audio.input.turn_detection",
        "audio.input.transcription",
        "audio.input.noise_reduction",
        "tracing",
        "prompt",
        "include",
    ],
)
def test_null_that_means_off_still_turns_it_off(path: str) -> None:
    session = new_session()
    on = {
        "audio": {
            "input": {
                "transcription": {"model": "whisper-1"},
                "noise_reduction": {"type": "near_field"},
            }
        },
        "prompt": {"id": "pmpt_1"},
        "include": ["item.input_audio_transcription.logprobs"],
    }
    session.receive(json.dumps(session_update("ga", on)))
    updated = only_event(session.receive(json.dumps(session_update("ga", with_null({}, path)))))
    node = updated["session"]
    for key in path.split("."):
        node = node[key]
    assert node is None


def livekit_session_update() -> dict[str, Any]:
    # _create_session_update_event() with the plugin's defaults (no noise reduction, tracing
    # None), then update_options(truncation=None, reasoning=None, max_response_output_tokens=None)
    pcm = AudioPCM(rate=24000, type="audio/pcm")
    session = RealtimeSessionCreateRequest(
        type="realtime",
        model="gpt-realtime",
        output_modalities=["audio"],
        audio=RealtimeAudioConfig(
            input=RealtimeAudioConfigInput(
                format=pcm,
                noise_reduction=None,
                transcription=None,
                turn_detection={
                    "type": "semantic_vad",
                    "create_response": True,
                    "eagerness": "medium",
                    "interrupt_response": True,
                },
            ),
            output=RealtimeAudioConfigOutput(format=pcm, speed=1.0, voice="marin"),
        ),
        max_output_tokens="inf",
        tool_choice="auto",
        tracing=None,
    )
    first = SessionUpdateEvent(type="session.update", session=session, event_id="session_update_x")
    options = RealtimeSessionCreateRequest(type="realtime")
    options.truncation = None  # type: ignore[assignment]
    options.reasoning = None
    options.max_output_tokens = None
    second = SessionUpdateEvent(type="session.update", session=options, event_id="options_x")
    return {
        "connect": first.model_dump(by_alias=True, exclude_unset=True, exclude_defaults=False),
        "options": second.model_dump(by_alias=True, exclude_unset=True, exclude_defaults=False),
    }


def test_livekit_session_updates_are_accepted() -> None:
    payloads = livekit_session_update()
    assert payloads["options"]["session"]["reasoning"] is None  # what goes on the wire
    session = new_session()
    for name in ("connect", "options"):
        updated = only_event(session.receive(json.dumps(payloads[name])))
        assert updated["type"] == "session.updated", (name, updated)
    effective = updated["session"]
    assert effective["audio"]["output"]["voice"] == "marin"
    assert effective["audio"]["input"]["turn_detection"]["eagerness"] == "medium"
    assert effective["truncation"] == "auto" and effective["max_output_tokens"] == "inf"


# ---- items and the envelope ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "path"),
    [
        ({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
         "id"),
        ({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
         "object"),
        ({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
         "status"),
        ({"type": "function_call", "name": "f", "arguments": "{}"}, "call_id"),
    ],
)  # fmt: skip
def test_null_in_an_item_is_not_set(item: dict[str, Any], path: str) -> None:
    session = new_session()
    event = {"type": "conversation.item.create", "item": with_null(item, path)}
    added = session.receive(json.dumps(event))[0]
    assert added["type"] == "conversation.item.added", added
    reference = new_session()
    expected = reference.receive(
        json.dumps({"type": "conversation.item.create", "item": without(item, path)})
    )[0]
    generated = {"id", "call_id"}
    assert {k: v for k, v in added["item"].items() if k not in generated} == {
        k: v for k, v in expected["item"].items() if k not in generated
    }
    assert added["item"]["id"].startswith("item_")


def test_null_event_id_is_no_event_id() -> None:
    session = new_session()
    error = only_event(session.receive(json.dumps({"type": "response.cancel", "event_id": None})))
    assert error["error"]["code"] == "response_cancel_not_active"
    assert error["error"]["event_id"] is None


@pytest.mark.parametrize(
    ("event", "param"),
    [
        ({"type": "conversation.item.create",
          "item": {"type": "message", "role": None, "content": []}}, "item.role"),
        ({"type": "conversation.item.create",
          "item": {"type": "message", "role": "user",
                   "content": [{"type": "input_text", "text": None}]}}, "item.content[0].text"),
        ({"type": "conversation.item.truncate", "item_id": "x", "content_index": 0,
          "audio_end_ms": None}, "audio_end_ms"),
        ({"type": "conversation.item.retrieve", "item_id": None}, "item_id"),
        ({"type": "input_audio_buffer.append", "audio": None}, "audio"),
        ({"type": "session.update", "session": None}, "session"),
    ],
)  # fmt: skip
def test_null_in_a_required_field_is_still_refused(event: dict[str, Any], param: str) -> None:
    session = new_session()
    error = only_event(session.receive(json.dumps(event)))["error"]
    assert (error["code"], error["param"]) == ("invalid_type", param)
