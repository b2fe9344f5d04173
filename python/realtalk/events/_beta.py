"""Translation between the beta (``OpenAI-Beta: realtime=v1``) wire shape and the GA shape.

Everything works on plain JSON dicts and never mutates its input. Each direction is the inverse
of the other on every valid event: beta -> GA -> beta gives back the beta event, and
GA -> beta -> GA gives back the GA event. Two beta documentation typos are the exception and are
corrected on the way back (``max_output_tokens`` in a beta session or ``response.create``,
where the beta parameter is ``max_response_output_tokens``). Fields that have no counterpart in
the other version (beta ``temperature``, GA ``truncation``) are carried over unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

JSONObject = dict[str, Any]

# beta audio format string <-> GA audio format object
_FORMAT_FROM_BETA: dict[str, JSONObject] = {
    "pcm16": {"type": "audio/pcm", "rate": 24000},
    "g711_ulaw": {"type": "audio/pcmu"},
    "g711_alaw": {"type": "audio/pcma"},
}
_FORMAT_TO_BETA: dict[tuple[Any, Any], str] = {
    ("audio/pcm", 24000): "pcm16",
    ("audio/pcmu", None): "g711_ulaw",
    ("audio/pcma", None): "g711_alaw",
}

# beta flat session field -> (GA audio direction, GA field)
_SESSION_AUDIO_FIELDS: dict[str, tuple[str, str]] = {
    "input_audio_format": ("input", "format"),
    "input_audio_transcription": ("input", "transcription"),
    "input_audio_noise_reduction": ("input", "noise_reduction"),
    "turn_detection": ("input", "turn_detection"),
    "output_audio_format": ("output", "format"),
    "voice": ("output", "voice"),
    "speed": ("output", "speed"),
}
_SESSION_AUDIO_FIELDS_BY_GA = {ga: beta for beta, ga in _SESSION_AUDIO_FIELDS.items()}

# The response object and response.create only carry the output side.
_RESPONSE_AUDIO_FIELDS: dict[str, tuple[str, str]] = {
    "output_audio_format": ("output", "format"),
    "voice": ("output", "voice"),
}
_RESPONSE_AUDIO_FIELDS_BY_GA = {ga: beta for beta, ga in _RESPONSE_AUDIO_FIELDS.items()}

_ASSISTANT_CONTENT_FROM_BETA = {"text": "output_text", "audio": "output_audio"}
_ASSISTANT_CONTENT_TO_BETA = {ga: beta for beta, ga in _ASSISTANT_CONTENT_FROM_BETA.items()}

SERVER_TYPES_FROM_BETA: dict[str, str] = {
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
    "conversation.item.created": "conversation.item.added",
    "transcription_session.created": "session.created",
    "transcription_session.updated": "session.updated",
}
SERVER_TYPES_TO_BETA: dict[str, str] = {
    ga: beta for beta, ga in SERVER_TYPES_FROM_BETA.items() if not beta.startswith("transcription")
}
# The GA spec's own (not sent live) name for conversation.item.added.
SERVER_TYPES_TO_BETA["conversation.item.created"] = "conversation.item.created"

#: GA server events that have no beta counterpart; they keep their GA name in beta output.
GA_ONLY_SERVER_EVENT_TYPES = frozenset(
    {
        "conversation.item.done",
        "conversation.item.input_audio_transcription.segment",
        "input_audio_buffer.dtmf_event_received",
        "mcp_list_tools.in_progress",
        "mcp_list_tools.completed",
        "mcp_list_tools.failed",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.in_progress",
        "response.mcp_call.completed",
        "response.mcp_call.failed",
    }
)


def audio_format_from_beta(value: Any) -> Any:
    """``"pcm16"`` -> ``{"type": "audio/pcm", "rate": 24000}`` etc.; anything else unchanged."""
    if isinstance(value, str) and value in _FORMAT_FROM_BETA:
        return dict(_FORMAT_FROM_BETA[value])
    return value


def audio_format_to_beta(value: Any) -> Any:
    """The inverse of :func:`audio_format_from_beta`; objects beta cannot express stay as they
    are."""
    if isinstance(value, Mapping) and set(value) <= {"type", "rate"}:
        rate = value.get("rate", 24000 if value.get("type") == "audio/pcm" else None)
        beta = _FORMAT_TO_BETA.get((value.get("type"), rate))
        if beta is not None:
            return beta
    return value


def _nest_audio(
    flat: Mapping[str, Any], fields: Mapping[str, tuple[str, str]], out: JSONObject
) -> None:
    """Move the flat beta audio fields of ``flat`` into ``out["audio"]``, merging with any GA
    leftovers already there."""
    audio: JSONObject | None = None
    for beta_key, (direction, ga_key) in fields.items():
        if beta_key not in flat:
            continue
        if audio is None:
            existing = out.get("audio")
            audio = {
                k: (dict(v) if isinstance(v, Mapping) else v)
                for k, v in (existing.items() if isinstance(existing, Mapping) else ())
            }
        value = flat[beta_key]
        if ga_key == "format":
            value = audio_format_from_beta(value)
        side = audio.get(direction)
        if not isinstance(side, dict):
            side = audio[direction] = {}
        side[ga_key] = value
    if audio is not None:
        out["audio"] = audio


def _flatten_audio(
    audio: Any, fields_by_ga: Mapping[tuple[str, str], str], out: JSONObject
) -> None:
    """Move GA ``audio.{input,output}.*`` fields that beta knows to flat keys of ``out``;
    whatever beta cannot express stays under ``out["audio"]`` (an empty side says nothing and
    is dropped, since a beta server refuses an ``audio`` field)."""
    if not isinstance(audio, Mapping):
        out["audio"] = audio
        return
    leftover: JSONObject = {}
    for direction, side in audio.items():
        if direction not in ("input", "output") or not isinstance(side, Mapping):
            leftover[direction] = side
            continue
        rest: JSONObject = {}
        for ga_key, value in side.items():
            beta_key = fields_by_ga.get((direction, ga_key))
            if beta_key is None:
                rest[ga_key] = value
            else:
                out[beta_key] = audio_format_to_beta(value) if ga_key == "format" else value
        if rest:
            leftover[direction] = rest
    if leftover:
        out["audio"] = leftover


def session_from_beta(beta_session: Mapping[str, Any], *, kind: str | None = None) -> JSONObject:
    """A beta (flat) session config or session object in the GA nested shape.

    ``kind`` is the GA ``session.type``; by default ``"transcription"`` for a
    ``realtime.transcription_session`` object and ``"realtime"`` otherwise.
    """
    if kind is None:
        is_transcription = beta_session.get("object") == "realtime.transcription_session"
        kind = "transcription" if is_transcription else "realtime"
    ga: JSONObject = {"type": kind}
    for key, value in beta_session.items():
        if key in _SESSION_AUDIO_FIELDS:
            continue
        if key == "modalities":
            ga["output_modalities"] = value
        elif key == "max_response_output_tokens":
            ga["max_output_tokens"] = value
        elif key != "type":
            ga[key] = value
    _nest_audio(beta_session, _SESSION_AUDIO_FIELDS, ga)
    return ga


def session_to_beta(ga_session: Mapping[str, Any]) -> JSONObject:
    """A GA (nested) session config or session object in the beta flat shape. The GA
    ``type`` is dropped (beta tells transcription sessions apart by the event name)."""
    beta: JSONObject = {}
    for key, value in ga_session.items():
        if key == "type":
            continue
        if key == "output_modalities":
            beta["modalities"] = value
        elif key == "max_output_tokens":
            beta["max_response_output_tokens"] = value
        elif key == "audio":
            _flatten_audio(value, _SESSION_AUDIO_FIELDS_BY_GA, beta)
        else:
            beta[key] = value
    return beta


def item_from_beta(item: Any) -> Any:
    """Assistant message content ``text``/``audio`` -> GA ``output_text``/``output_audio``."""
    if not (isinstance(item, Mapping) and item.get("type") == "message"):
        return item
    if item.get("role") != "assistant":
        return item
    return _rename_content(item, _ASSISTANT_CONTENT_FROM_BETA)


def item_to_beta(item: Any) -> Any:
    """GA ``output_text``/``output_audio`` message content -> beta ``text``/``audio``."""
    if not (isinstance(item, Mapping) and item.get("type") == "message"):
        return item
    return _rename_content(item, _ASSISTANT_CONTENT_TO_BETA)


def _rename_content(item: Mapping[str, Any], names: Mapping[str, str]) -> Any:
    content = item.get("content")
    if not isinstance(content, list):
        return item
    renamed = []
    for part in content:
        if isinstance(part, Mapping) and part.get("type") in names:
            part = {**part, "type": names[part["type"]]}
        renamed.append(part)
    return {**item, "content": renamed}


def _items(items: Any, translate: Any) -> Any:
    return [translate(item) for item in items] if isinstance(items, list) else items


def response_from_beta(response: Mapping[str, Any], *, is_request: bool = False) -> JSONObject:
    """A beta response object (``response.created/done``) or, with ``is_request``, the
    parameters of a beta ``response.create``, in the GA shape."""
    ga: JSONObject = {}
    for key, value in response.items():
        if key in _RESPONSE_AUDIO_FIELDS:
            continue
        if key == "modalities":
            ga["output_modalities"] = value
        elif key == "max_response_output_tokens" and is_request:
            ga["max_output_tokens"] = value
        elif key in ("output", "input"):
            ga[key] = _items(value, item_from_beta)
        else:
            ga[key] = value
    _nest_audio(response, _RESPONSE_AUDIO_FIELDS, ga)
    return ga


def response_to_beta(response: Mapping[str, Any], *, is_request: bool = False) -> JSONObject:
    """The inverse of :func:`response_from_beta`."""
    beta: JSONObject = {}
    for key, value in response.items():
        if key == "output_modalities":
            beta["modalities"] = value
        elif key == "max_output_tokens" and is_request:
            beta["max_response_output_tokens"] = value
        elif key == "audio":
            _flatten_audio(value, _RESPONSE_AUDIO_FIELDS_BY_GA, beta)
        elif key in ("output", "input"):
            beta[key] = _items(value, item_to_beta)
        else:
            beta[key] = value
    return beta


def _with(event: Mapping[str, Any], key: str, translate: Any) -> JSONObject:
    out = dict(event)
    value = out.get(key)
    if isinstance(value, Mapping):
        out[key] = translate(value)
    return out


def server_event_from_beta(event: Mapping[str, Any]) -> JSONObject:
    """A beta server event (as a dict) in GA names and shapes."""
    beta_type = event.get("type")
    ga_type = SERVER_TYPES_FROM_BETA.get(beta_type, beta_type)  # type: ignore[arg-type]
    if ga_type in ("session.created", "session.updated"):
        kind = "transcription" if beta_type.startswith("transcription_session") else None  # type: ignore[union-attr]
        out = _with(event, "session", lambda s: session_from_beta(s, kind=kind))
    elif ga_type in ("response.created", "response.done"):
        out = _with(event, "response", response_from_beta)
    elif "item" in event:
        out = _with(event, "item", item_from_beta)
    else:
        out = dict(event)
    out["type"] = ga_type
    return out


def server_event_to_beta(event: Mapping[str, Any]) -> JSONObject:
    """A GA server event (as a dict) in beta names and shapes. GA-only events
    (:data:`GA_ONLY_SERVER_EVENT_TYPES`) keep their GA name."""
    ga_type = event.get("type")
    beta_type = SERVER_TYPES_TO_BETA.get(ga_type, ga_type)  # type: ignore[arg-type]
    if ga_type in ("session.created", "session.updated"):
        session = event.get("session")
        if isinstance(session, Mapping) and session.get("type") == "transcription":
            beta_type = "transcription_" + ga_type
        out = _with(event, "session", session_to_beta)
    elif ga_type in ("response.created", "response.done"):
        out = _with(event, "response", response_to_beta)
    elif "item" in event:
        out = _with(event, "item", item_to_beta)
    else:
        out = dict(event)
    out["type"] = beta_type
    return out


def client_event_from_beta(event: Mapping[str, Any]) -> JSONObject:
    """A beta client event (as a dict) in GA names and shapes."""
    beta_type = event.get("type")
    if beta_type == "transcription_session.update":
        out = _with(event, "session", lambda s: session_from_beta(s, kind="transcription"))
        out["type"] = "session.update"
        return out
    if beta_type == "session.update":
        return _with(event, "session", lambda s: session_from_beta(s, kind="realtime"))
    if beta_type == "response.create":
        return _with(event, "response", lambda r: response_from_beta(r, is_request=True))
    if beta_type == "conversation.item.create":
        return _with(event, "item", item_from_beta)
    return dict(event)


def client_event_to_beta(event: Mapping[str, Any]) -> JSONObject:
    """A GA client event (as a dict) in beta names and shapes."""
    ga_type = event.get("type")
    if ga_type == "session.update":
        out = _with(event, "session", session_to_beta)
        session = event.get("session")
        if isinstance(session, Mapping) and session.get("type") == "transcription":
            out["type"] = "transcription_session.update"
        return out
    if ga_type == "response.create":
        return _with(event, "response", lambda r: response_to_beta(r, is_request=True))
    if ga_type == "conversation.item.create":
        return _with(event, "item", item_to_beta)
    return dict(event)
