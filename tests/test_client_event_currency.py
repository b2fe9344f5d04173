"""One event currency inbound: the client's receive path parses a server frame once, into a
validated plain dict (``events._codec.parse_server_event_dict``), checked here against the
typed parser as the oracle on the official example events, beta and GA."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from realtalk.errors import ProtocolError
from realtalk.events import UnknownEvent, parse_server_event
from realtalk.events._codec import InvalidEventError, parse_server_event_dict

CONFORMANCE = Path(__file__).parent / "data" / "conformance"
SERVER_EXAMPLES = [entry for entry in json.loads((CONFORMANCE / "_manifest.json").read_text())[
    "events"] if entry["direction"] == "server"]


def _typed_as_dict(data: bytes, protocol: Any) -> dict[str, Any]:
    event = parse_server_event(data, protocol=protocol)
    if isinstance(event, UnknownEvent):
        return dict(event.data)
    built = msgspec.to_builtins(event)
    built.update(event.__dict__.get("_extra") or {})
    return built  # type: ignore[no-any-return]


@pytest.mark.parametrize("entry", SERVER_EXAMPLES, ids=lambda entry: entry["file"])
def test_the_dict_is_what_the_typed_parser_reads_from_the_official_examples(
        entry: dict[str, Any]) -> None:
    data = (CONFORMANCE / entry["file"]).read_bytes()
    assert parse_server_event_dict(data, protocol=entry["version"]) == _typed_as_dict(
        data, entry["version"])


def test_unknown_fields_and_types_are_kept_as_sent() -> None:
    # (bytes -> Struct -> dict dropped the unknown field: it lived outside the model.)
    event = {"type": "response.output_text.delta", "event_id": "e1", "response_id": "r",
             "item_id": "i", "output_index": 0, "content_index": 0, "delta": "hi",
             "surprise": {"new": "field"}}
    assert parse_server_event_dict(json.dumps(event)) == event
    other = {"type": "response.brand_new", "event_id": "e2", "whatever": [1]}
    assert parse_server_event_dict(json.dumps(other)) == other


@pytest.mark.parametrize("frame", [
    b'{"type": "error", "event_id": "e", "error": "bad"}',
    b'{"type": "response.output_text.delta", "event_id": "e", "delta": 5}',
    b'{"type": "response.done", "event_id": "e", "response": 3, "extra": 1}',
])
def test_a_schema_violation_is_refused_as_the_typed_parser_refuses_it(frame: bytes) -> None:
    with pytest.raises(InvalidEventError) as typed:
        parse_server_event(frame)
    with pytest.raises(InvalidEventError) as as_dict:
        parse_server_event_dict(frame)
    assert str(as_dict.value) == str(typed.value)
    assert as_dict.value.data == json.loads(frame)


@pytest.mark.parametrize("frame", [b"{not json", b"[1, 2]", b'{"no_type": 1}', b'{"type": 3}',
                                   b"\xff\xfe"])
def test_frames_that_are_no_event_are_protocol_errors(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_server_event_dict(frame)
    with pytest.raises(ValueError, match="protocol"):
        parse_server_event_dict(b'{"type": "error"}', protocol="gamma")  # type: ignore[arg-type]


def test_absurd_nesting_fails_as_in_the_typed_parser() -> None:
    # (RecursionError from msgspec: the client reports it as an invalid frame and goes on.)
    frame = b'{"type": "error", "error": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    with pytest.raises(Exception) as typed:
        parse_server_event(frame)
    with pytest.raises(Exception) as as_dict:
        parse_server_event_dict(frame)
    assert type(as_dict.value) is type(typed.value)
