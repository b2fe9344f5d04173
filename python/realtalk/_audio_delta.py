"""The full parse of an audio delta the Rust scanner was not sure of.

``Downlink.decode`` scans a delta's JSON in Rust without parsing it (``rust/frame/scan.rs``);
a message it cannot be sure of (escapes in keys, duplicate fields, unusual numbers, a ``str``
holding lone surrogates ...) comes here, so the answer is always the one ``json.loads`` gives.
Which fields a delta has and what they must be is protocol knowledge: it lives in Python, not
in the bindings, which only call :func:`parse_audio_delta` and decode the audio it returns.
"""

from __future__ import annotations

import json

__all__ = ["parse_audio_delta"]

_I64 = range(-(2**63), 2**63)


def parse_audio_delta(
    message: str | bytes, delta_type: str
) -> tuple[str, str, int, int, str] | None:
    """``(response_id, item_id, output_index, content_index, delta)`` of ``message`` if it is
    an event of type ``delta_type``, None if it is any other JSON value. ValueError for a
    message that is not JSON, nested too deeply, or a delta with a field missing or of the
    wrong type (the indices are 64-bit integers, never booleans)."""
    try:
        event = json.loads(message)
    except RecursionError:
        raise ValueError("message is nested too deeply to parse") from None
    if not isinstance(event, dict) or event.get("type") != delta_type:
        return None

    def field(name: str) -> object:
        if name not in event:
            raise ValueError(f'{delta_type} event has no "{name}"')
        return event[name]

    def text(name: str) -> str:
        value = field(name)
        if not isinstance(value, str):
            raise ValueError(f'{delta_type} field "{name}" must be a string')
        return value

    def index(name: str) -> int:
        value = field(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f'{delta_type} field "{name}" must be an integer')
        if value not in _I64:
            raise ValueError(f'{delta_type} field "{name}" is out of range')
        return value

    return (
        text("response_id"),
        text("item_id"),
        index("output_index"),
        index("content_index"),
        text("delta"),
    )
