"""The full parse of an audio delta the Rust scanner was not sure of lives in the Python layer
(realtalk._audio_delta); the bindings (rust/python/frame.rs) hold no protocol knowledge, only
the call. Oracle: ``json.loads`` and the field rules of /work/shared/protocol.md."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from realtalk._audio_delta import parse_audio_delta
from realtalk.audio import Downlink

BINDING = Path(__file__).parents[1] / "rust" / "python" / "frame.rs"
GA, BETA = "response.output_audio.delta", "response.audio.delta"
AUDIO = base64.b64encode(bytes(range(8))).decode()


def delta(event_type: str = GA, **change: Any) -> dict[str, Any]:
    event = {"type": event_type, "event_id": "event_1", "response_id": "resp_1",
             "item_id": "item_1", "output_index": 0, "content_index": 1, "delta": AUDIO}
    event.update(change)
    return event


@pytest.mark.parametrize("event_type", [GA, BETA])
def test_a_delta_gives_its_fields_as_json_reads_them(event_type: str) -> None:
    message = json.dumps(delta(event_type, item_id="\\u0069 escaped")).replace(
        '"item_id"', '"\\u0069tem_id"'
    )
    expected = json.loads(message)
    for form in (message, message.encode()):
        assert parse_audio_delta(form, event_type) == (
            expected["response_id"], expected["item_id"], 0, 1, AUDIO
        )


@pytest.mark.parametrize(
    "message",
    [json.dumps(delta(BETA)), json.dumps(delta(type=7)), '{"type":"session.updated"}', "[1]",
     '"response.output_audio.delta"', "17", "null"],
)
def test_any_other_json_value_is_none(message: str) -> None:
    assert parse_audio_delta(message, GA) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"delta": None}, 'field "delta" must be a string'),
        ({"item_id": 7}, 'field "item_id" must be a string'),
        ({"output_index": 1.0}, 'field "output_index" must be an integer'),
        ({"output_index": True}, 'field "output_index" must be an integer'),
        ({"content_index": 2**63}, 'field "content_index" is out of range'),
        ({"content_index": -(2**63) - 1}, 'field "content_index" is out of range'),
        ({"content_index": "0"}, 'field "content_index" must be an integer'),
    ],
)
def test_a_bad_field_is_a_value_error_naming_it_here_and_through_the_binding(
    change: dict[str, Any], message: str
) -> None:
    # An escaped key sends the message past the scanner, to the full parse.
    text = json.dumps(delta(**change)).replace('"event_id"', '"\\u0065vent_id"')
    with pytest.raises(ValueError, match=re.escape(f"{GA} {message}")):
        parse_audio_delta(text, GA)
    with pytest.raises(ValueError, match=re.escape(f"{GA} {message}")):
        Downlink(24_000).decode(text)


def test_the_64_bit_bounds_themselves_are_accepted() -> None:
    text = json.dumps(delta(output_index=-(2**63), content_index=2**63 - 1))
    assert parse_audio_delta(text, GA) == ("resp_1", "item_1", -(2**63), 2**63 - 1, AUDIO)


def test_a_missing_field_deep_nesting_and_bad_json_are_value_errors() -> None:
    missing = {k: v for k, v in delta().items() if k != "response_id"}
    with pytest.raises(ValueError, match='has no "response_id"'):
        parse_audio_delta(json.dumps(missing), GA)
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_audio_delta("[" * 100_000, GA)
    with pytest.raises(ValueError):
        parse_audio_delta("{bad", GA)


def test_the_binding_names_no_delta_field_and_no_json() -> None:
    """Protocol knowledge left rust/python/frame.rs: no field name as a string, no call of
    Python's ``json``; it asks realtalk._audio_delta instead."""
    source = BINDING.read_text()
    assert '"json"' not in source and '"loads"' not in source
    named = re.findall(
        r'"(type|response_id|item_id|output_index|content_index|delta)"', source
    )
    assert named == []
    assert '"realtalk._audio_delta"' in source and '"parse_audio_delta"' in source
