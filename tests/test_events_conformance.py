"""The official example events (tests/data/conformance, copied from the OpenAPI spec with the
manifest that names their caveats) parse into typed events and re-serialise to equal JSON in
their own protocol version."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from realtalk.events import (
    CLIENT_EVENT_TYPES,
    SERVER_EVENT_TYPES,
    ConversationItemAddedEvent,
    ConversationItemCreatedEvent,
    ConversationItemRetrievedEvent,
    InputAudioBufferDtmfEventReceivedEvent,
    InputAudioTranscriptionCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseCreateEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseOutputItemDoneEvent,
    SessionCreatedEvent,
    SessionUpdatedEvent,
    UnknownEvent,
    parse_client_event,
    parse_server_event,
    serialize_client_event,
    serialize_server_event,
    session_from_beta,
    session_to_beta,
)

CONFORMANCE = Path(__file__).parent / "data" / "conformance"
MANIFEST = json.loads((CONFORMANCE / "_manifest.json").read_text())
ENTRIES = {entry["file"]: entry for entry in MANIFEST["events"]}
GENERATED_ID = re.compile(r"event_[0-9a-f]{21}")

# Beta renames as the reference (protocol.md section 3.1) lists them, written out here rather
# than imported so that the translation table is checked against the spec, not against itself.
BETA_TO_GA_NAMES = {
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
    "conversation.item.created": "conversation.item.added",
    "transcription_session.created": "session.created",
    "transcription_session.updated": "session.updated",
    "transcription_session.update": "session.update",
}


def _load(name: str) -> tuple[bytes, dict[str, Any]]:
    raw = (CONFORMANCE / name).read_bytes()
    return raw, json.loads(raw)


def _parse(entry: dict[str, Any], raw: bytes) -> Any:
    parse = parse_server_event if entry["direction"] == "server" else parse_client_event
    return parse(raw, protocol=entry["version"])


def _serialize(entry: dict[str, Any], event: Any) -> dict[str, Any]:
    serialize = serialize_server_event if entry["direction"] == "server" else serialize_client_event
    return json.loads(serialize(event, entry["version"]))  # type: ignore[no-any-return]


def _beta_max_tokens_typo(original: dict[str, Any]) -> dict[str, Any] | None:
    """Beta's session and response.create parameter is ``max_response_output_tokens``; several
    beta doc examples write ``max_output_tokens`` (protocol.md section 11). The translation
    maps both to GA ``max_output_tokens`` and writes the real beta name on the way back, so
    the expected re-serialisation is the example with that one key renamed."""
    if original["type"] in ("session.update", "session.created", "session.updated"):
        container = "session"
    elif original["type"] == "response.create":
        container = "response"
    else:
        return None
    payload = original.get(container)
    if not isinstance(payload, dict) or "max_output_tokens" not in payload:
        return None
    fixed = {
        ("max_response_output_tokens" if key == "max_output_tokens" else key): value
        for key, value in payload.items()
    }
    return {**original, container: fixed}


def test_corpus_is_complete() -> None:
    files = sorted(p.name for p in CONFORMANCE.glob("*__*.json"))
    assert len(files) == 129
    assert set(files) == set(ENTRIES)


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_example_parses_to_its_typed_event(name: str) -> None:
    entry = ENTRIES[name]
    raw, original = _load(name)
    event = _parse(entry, raw)
    assert not isinstance(event, UnknownEvent)
    expected_type = original["type"]
    if entry["version"] == "beta":
        expected_type = BETA_TO_GA_NAMES.get(expected_type, expected_type)
    registry = SERVER_EVENT_TYPES if entry["direction"] == "server" else CLIENT_EVENT_TYPES
    assert event.type == expected_type
    assert type(event) is registry[expected_type]
    # Every field of every example is known to the model: nothing lands in the extras.
    assert event.extra == {}


BETA_TYPO_FILES = {
    "beta__response.create.json",
    "beta__response.create__2.json",
    "beta__response.create__3.json",
    "beta__session.update__4.json",
    "beta__session.created__5.json",
    "beta__session.updated__5.json",
}


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_example_reserialises_to_equal_json(name: str) -> None:
    entry = ENTRIES[name]
    raw, original = _load(name)
    out = _serialize(entry, _parse(entry, raw))
    if "event_id" not in original:
        # The DTMF example and some client examples have none: one is generated.
        assert GENERATED_ID.fullmatch(out.pop("event_id"))
    expected = original
    if entry["version"] == "beta":
        fixed = _beta_max_tokens_typo(original)
        assert (fixed is not None) == (name in BETA_TYPO_FILES)
        if fixed is not None:
            expected = fixed
    assert out == expected


def test_ga_conversation_item_created_is_an_added_event() -> None:
    # Caveat: the GA spec documents conversation.item.created, live servers send .added.
    raw, original = _load("ga__conversation.item.created.json")
    event = parse_server_event(raw)
    assert isinstance(event, ConversationItemCreatedEvent)
    assert isinstance(event, ConversationItemAddedEvent)
    assert event.item == original["item"]


def test_beta_conversation_item_created_becomes_added() -> None:
    raw, original = _load("beta__conversation.item.created.json")
    event = parse_server_event(raw, protocol="beta")
    assert type(event) is ConversationItemAddedEvent
    assert event.previous_item_id == original["previous_item_id"]
    assert json.loads(serialize_server_event(event, "ga"))["type"] == "conversation.item.added"


def test_ga_examples_with_beta_content_spellings_parse() -> None:
    # Caveats: GA examples (one a live capture) use assistant content "audio" / "text".
    raw, _ = _load("ga__conversation.item.retrieved.json")
    event = parse_server_event(raw)
    assert isinstance(event, ConversationItemRetrievedEvent)
    assert event.item["content"][0]["type"] == "audio"
    assert event.item["content"][0]["format"] == "pcm16"
    raw, _ = _load("ga__response.output_item.done.json")
    done = parse_server_event(raw)
    assert isinstance(done, ResponseOutputItemDoneEvent)
    assert done.item["content"][0] == {"type": "text", "text": "Sure, I can help with that."}


def test_content_part_type_is_unprefixed_in_both_versions() -> None:
    for name, protocol in (
        ("ga__response.content_part.added.json", "ga"),
        ("beta__response.content_part.added.json", "beta"),
    ):
        raw, original = _load(name)
        event = parse_server_event(raw, protocol=protocol)  # type: ignore[arg-type]
        assert isinstance(event, ResponseContentPartAddedEvent)
        assert event.part == original["part"]
        assert event.part["type"] in ("text", "audio")


def test_dtmf_example_without_event_id() -> None:
    raw, _ = _load("ga__input_audio_buffer.dtmf_event_received.json")
    event = parse_server_event(raw)
    assert isinstance(event, InputAudioBufferDtmfEventReceivedEvent)
    assert (event.event, event.received_at) == ("9", 1763605109)


def test_transcription_completed_without_usage() -> None:
    # Caveat: 2024-25 beta events lack usage, which the SDK's beta type requires.
    raw, original = _load("beta__conversation.item.input_audio_transcription.completed.json")
    assert "usage" not in original
    event = parse_server_event(raw, protocol="beta")
    assert isinstance(event, InputAudioTranscriptionCompletedEvent)
    assert event.transcript == original["transcript"]
    assert "usage" not in json.loads(serialize_server_event(event, "beta"))


def test_beta_function_call_arguments_done_has_no_name() -> None:
    raw, original = _load("beta__response.function_call_arguments.done.json")
    event = parse_server_event(raw, protocol="beta")
    assert isinstance(event, ResponseFunctionCallArgumentsDoneEvent)
    assert event.arguments == original["arguments"]
    assert "name" not in json.loads(serialize_server_event(event, "ga"))


def test_beta_transcription_session_becomes_ga_transcription_session() -> None:
    raw, original = _load("beta__transcription_session.created.json")
    event = parse_server_event(raw, protocol="beta")
    assert isinstance(event, SessionCreatedEvent)
    session = event.session
    assert session["type"] == "transcription"
    assert session["object"] == "realtime.transcription_session"
    beta = original["session"]
    assert session["audio"]["input"] == {
        "format": {"type": "audio/pcm", "rate": 24000},
        "transcription": beta["input_audio_transcription"],
        "turn_detection": beta["turn_detection"],
        "noise_reduction": beta["input_audio_noise_reduction"],
    }
    assert "output" not in session["audio"]
    wire = json.loads(serialize_server_event(event, "beta"))
    assert wire["type"] == "transcription_session.created"


def test_beta_transcription_session_update_becomes_session_update() -> None:
    raw, original = _load("beta__transcription_session.update.json")
    event = parse_client_event(raw, protocol="beta")
    assert event.type == "session.update"
    assert event.session["type"] == "transcription"  # type: ignore[union-attr]
    assert event.session["include"] == original["session"]["include"]  # type: ignore[union-attr]


def test_beta_oct_2024_turn_detection_none_is_accepted() -> None:
    # Caveat: turn_detection.type "none" (later docs use null); kept as received.
    raw, _ = _load("beta__session.updated__5.json")
    event = parse_server_event(raw, protocol="beta")
    assert isinstance(event, SessionUpdatedEvent)
    assert event.session["audio"]["input"]["turn_detection"] == {"type": "none"}


def test_same_session_in_both_shapes_translates_both_ways() -> None:
    """The beta-shaped and GA-shaped ``session.created`` examples of the 2026 spec describe the
    same live session (same id); an independent check of the session translation. The beta
    example omits two fields the GA one has (``noise_reduction: null``, ``speed: 1.0``)."""
    _, beta = _load("beta__session.created__6.json")
    _, ga = _load("ga__session.created.json")
    assert beta["session"]["id"] == ga["session"]["id"]
    ga_session = json.loads(json.dumps(ga["session"]))
    del ga_session["audio"]["input"]["noise_reduction"]
    del ga_session["audio"]["output"]["speed"]
    # modalities ["audio"] in the beta-shaped example matches GA output_modalities ["audio"].
    assert session_from_beta(beta["session"]) == ga_session
    assert session_to_beta(ga["session"]) == {
        **beta["session"],
        "input_audio_noise_reduction": None,
        "speed": 1.0,
    }
    assert parse_server_event(json.dumps(beta), protocol="beta").session == ga_session  # type: ignore[union-attr]


def test_beta_response_create_translates_to_ga_parameters() -> None:
    raw, original = _load("beta__response.create.json")
    event = parse_client_event(raw, protocol="beta")
    assert isinstance(event, ResponseCreateEvent)
    beta = original["response"]
    response = event.response
    assert isinstance(response, dict)
    assert response["output_modalities"] == beta["modalities"]
    assert response["audio"] == {
        "output": {"voice": beta["voice"], "format": {"type": "audio/pcm", "rate": 24000}}
    }
    assert response["max_output_tokens"] == beta["max_output_tokens"]
    assert "modalities" not in response and "voice" not in response


def test_beta_response_done_assistant_text_becomes_output_text() -> None:
    raw, original = _load("beta__response.done.json")
    event = parse_server_event(raw, protocol="beta")
    content = event.response["output"][0]["content"]  # type: ignore[union-attr]
    assert content == [
        {"type": "output_text", "text": original["response"]["output"][0]["content"][0]["text"]}
    ]
