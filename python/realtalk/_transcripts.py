"""Transcription sessions (protocol.md §6.6): the session's ``intent``, the URL that opens
one, and the transcripts of the user's audio, per item, as the conversation holds them.

A transcription session has no responses: the server commits the user's speech (VAD) or the
client does, and ``conversation.item.input_audio_transcription.delta/completed/segment``
fill the committed item's transcript. The conversation applies those events
(``realtalk.conversation``); this module reads them back as :class:`Transcript` values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from realtalk.conversation import Conversation, Item

__all__ = ["INTENTS", "Intent", "Transcript", "check_intent", "check_responses_allowed",
           "check_session_type", "input_transcripts", "transcription_url"]

Intent = Literal["realtime", "transcription"]
INTENTS: tuple[Intent, ...] = ("realtime", "transcription")


def check_intent(intent: Any, session: Any, call_id: str | None = None) -> Intent:
    """``intent`` if it is one the API knows, the initial session config does not name
    another type and it is not a call's sideband (a call is a realtime session); ValueError
    otherwise."""
    if intent not in INTENTS:
        raise ValueError(f"intent must be 'realtime' or 'transcription', got {intent!r}")
    if intent == "transcription" and call_id is not None:
        raise ValueError("a call's sideband (call_id) controls a realtime session: it cannot "
                         "be a transcription session")
    wanted = (session or {}).get("type", intent)
    if wanted != intent:
        raise ValueError(f"session type {wanted!r} does not match intent {intent!r}: a session's "
                         "type is fixed when it opens (pass intent=... instead)")
    return intent  # type: ignore[no-any-return]


def check_session_type(intent: Intent, config: dict[str, Any]) -> None:
    """ValueError if a ``session.update`` would change the session's type, which the server
    refuses (``invalid_value`` on ``session.type``)."""
    wanted = config.get("type", intent)
    if wanted != intent:
        raise ValueError(f"a {intent} session cannot change its type to {wanted!r}; open a new "
                         f"client with intent={wanted!r}")


def transcription_url(url: str | None) -> str:
    """``url`` (default: OpenAI's endpoint) asking for a transcription session:
    ``intent=transcription`` in its query, which then names no ``model`` (the transcription
    model is in the session config)."""
    if url is None:
        from realtalk.connection import OPENAI_REALTIME_URL

        url = OPENAI_REALTIME_URL
    scheme, host, path, query, fragment = urlsplit(url)
    params = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True)
              if k not in ("model", "intent")]
    params.append(("intent", "transcription"))
    return urlunsplit((scheme, host, path, urlencode(params), fragment))


@dataclass(frozen=True)
class Transcript:
    """The transcript of one committed piece of the user's audio (one conversation item).

    ``text`` is what arrived so far (the deltas joined, replaced by the ``completed`` event's
    transcript); ``final`` is True once ``completed`` or ``failed`` arrived; ``error`` is the
    ``failed`` event's error; ``segments`` are the diarized segments (``id, text, speaker,
    start, end``) of models that send them."""

    item_id: str
    text: str
    final: bool
    error: dict[str, Any] | None = None
    segments: list[dict[str, Any]] = field(default_factory=list)


def _input_audio_part(item: Item) -> dict[str, Any] | None:
    for part in item.content:
        if part.get("type") == "input_audio":
            return part
    return None


def input_transcripts(conversation: Conversation) -> list[Transcript]:
    """The user's audio items in conversation order, each with its transcript so far."""
    transcripts = []
    for item in conversation.items:
        part = _input_audio_part(item) if item.role == "user" else None
        if part is None:
            continue
        final = isinstance(part.get("transcript"), str) or item.transcription_error is not None
        transcripts.append(Transcript(item.id, item.transcript, final,
                                      item.transcription_error,
                                      list(item.transcript_segments)))
    return transcripts


def check_responses_allowed(intent: Intent) -> None:
    """RuntimeError in a transcription session, which has no responses (the server would
    refuse ``response.create`` with ``invalid_value``)."""
    if intent == "transcription":
        raise RuntimeError("a transcription session has no responses: read the transcripts "
                           "(client.transcripts) instead of asking for one")
