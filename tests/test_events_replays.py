"""Recorded event sequences (tests/data/replays, see its README for the sources) parse, keep
their order and content, and re-serialise to what was received."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from realtalk.events import (
    ConversationItemAddedEvent,
    InvalidEventError,
    ResponseCreatedEvent,
    ResponseDoneEvent,
    ResponseOutputAudioDeltaEvent,
    ResponseOutputAudioDoneEvent,
    ResponseOutputTextDeltaEvent,
    ResponseOutputTextDoneEvent,
    UnknownEvent,
    parse_client_event,
    parse_server_event,
    serialize_client_event,
    serialize_server_event,
)

REPLAYS = Path(__file__).parent / "data" / "replays"


def _lines(name: str) -> list[bytes]:
    return [line for line in (REPLAYS / name).read_bytes().splitlines() if line.strip()]


def test_real_beta_text_response() -> None:
    """A real 2025 beta capture of one text response, in full order."""
    events = [parse_server_event(line, protocol="beta") for line in _lines(
        "real_beta_text_response.liusida.jsonl"
    )]  # fmt: skip
    assert len(events) == 85
    assert not any(isinstance(e, UnknownEvent) for e in events)
    assert [type(e) for e in events[:3]] == [
        ResponseCreatedEvent,
        type(events[1]),
        ConversationItemAddedEvent,
    ]
    assert events[1].type == "response.output_item.added"
    deltas = [e for e in events if isinstance(e, ResponseOutputTextDeltaEvent)]
    (done,) = [e for e in events if isinstance(e, ResponseOutputTextDoneEvent)]
    assert len(deltas) == 77
    assert "".join(d.delta for d in deltas) == done.text
    assert isinstance(events[-1], ResponseDoneEvent)
    # The beta response object appears in GA shape above this layer.
    created = events[0]
    assert isinstance(created, ResponseCreatedEvent)
    assert created.response["output_modalities"] == ["text"]
    assert created.response["audio"] == {
        "output": {"voice": "alloy", "format": {"type": "audio/pcm", "rate": 24000}}
    }
    for line, event in zip(_lines("real_beta_text_response.liusida.jsonl"), events, strict=True):
        assert json.loads(serialize_server_event(event, "beta")) == json.loads(line)


def test_synthetic_ga_overlapping_audio_items() -> None:
    lines = _lines("synthetic_ga_multi_item_overlapping_audio.pipecat.jsonl")
    events = [parse_server_event(line) for line in lines]
    kinds = [type(e) for e in events]
    assert kinds == [ResponseOutputAudioDeltaEvent] * 4 + [ResponseOutputAudioDoneEvent] * 2 + [
        ResponseDoneEvent
    ]
    audio: dict[str, bytes] = {}
    for event in events:
        if isinstance(event, ResponseOutputAudioDeltaEvent):
            audio[event.item_id] = audio.get(event.item_id, b"") + base64.b64decode(event.delta)  # type: ignore[index]
    for line in lines:
        raw = json.loads(line)
        if raw["type"] == "response.output_audio.delta":
            assert base64.b64decode(raw["delta"]) in audio[raw["item_id"]]
    for line, event in zip(lines, events, strict=True):
        assert json.loads(serialize_server_event(event)) == json.loads(line)


@pytest.mark.parametrize(
    ("name", "protocol", "direction"),
    [
        ("openapi_examples_ga_server_events.jsonl", "ga", "server"),
        ("openapi_examples_ga_client_events.jsonl", "ga", "client"),
        ("openapi_examples_beta_server_events.jsonl", "beta", "server"),
        ("openapi_examples_beta_client_events.jsonl", "beta", "client"),
    ],
)
def test_openapi_example_streams(name: str, protocol: Any, direction: str) -> None:
    parse = parse_server_event if direction == "server" else parse_client_event
    serialize = serialize_server_event if direction == "server" else serialize_client_event
    for line in _lines(name):
        original = json.loads(line)
        event = parse(line, protocol=protocol)
        assert not isinstance(event, UnknownEvent), original["type"]
        out = json.loads(serialize(event, "ga"))  # type: ignore[arg-type]
        if "event_id" not in original:
            out.pop("event_id")
        if protocol == "ga":
            assert out == original
        else:
            # The beta stream mixes beta names with the GA names of the 2026 legacy schemas;
            # either way the GA view carries the GA name.
            assert out["type"] == event.type
            assert not out["type"].startswith(("response.text.", "response.audio"))


def test_low_fidelity_fake_server() -> None:
    """fakeai 0.3.2 sends a flat union of every field (nulls everywhere) and leaves out
    required ones. Events that carry what their type needs are delivered with the stray
    nulls kept as extra fields; the three that lack a required field raise InvalidEventError
    naming it, with the decoded object attached so a caller can skip them and go on."""
    delivered = []
    refused: list[tuple[str, str]] = []
    for line in _lines("lowfi_fakeai_0.3.2_beta_session.jsonl"):
        try:
            delivered.append(parse_server_event(line, protocol="beta"))
        except InvalidEventError as exc:
            missing = str(exc).rsplit("`", 2)[-2]
            refused.append((exc.data["type"], missing))
            # .data is the event as decoded, in the GA view (names and nested shapes).
            original = json.loads(line)
            assert exc.data.keys() == original.keys()
            assert exc.data["event_id"] == original["event_id"]
    assert refused == [
        ("response.content_part.added", "part"),
        ("response.output_text.done", "text"),
        ("response.content_part.done", "part"),
    ]
    assert len(delivered) == 24
    deltas = [e for e in delivered if isinstance(e, ResponseOutputTextDeltaEvent)]
    assert "".join(d.delta for d in deltas) == (
        "Hi there! I'm here to help you with any questions you might have."
    )
    assert all(d.item_id is None for d in deltas)
    first = delivered[0]
    assert first.type == "session.created"
    assert first.extra["rate_limits"] is None
