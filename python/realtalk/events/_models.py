"""Typed events of the Realtime API, in the GA vocabulary.

Every event is a msgspec Struct tagged by its GA ``type``. Top-level fields are typed and
validated; nested payloads whose schema keeps growing (session, item, response, part, error,
usage) are plain JSON objects, so nothing a server adds deep inside them is ever lost.
Optional fields default to ``UNSET`` (absent on the wire) so that an explicit ``null`` and a
missing field stay distinguishable and re-serialise exactly as received; every optional field
also takes ``null``, which servers send where the docs promise a value.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec
from msgspec import UNSET, UnsetType

JSONObject = dict[str, Any]


class Event(
    msgspec.Struct,
    tag_field="type",
    kw_only=True,
    forbid_unknown_fields=True,
    omit_defaults=True,
    repr_omit_defaults=True,
    # A __dict__ holds the unknown fields of a forward-compatible parse (see ``extra``).
    dict=True,
):
    """Base of every typed event. ``type`` is the GA event name (a class attribute)."""

    type: ClassVar[str]
    event_id: str | None | UnsetType = UNSET

    @property
    def extra(self) -> JSONObject:
        """Fields the server sent that this model does not know, kept for re-serialisation."""
        return self.__dict__.get("_extra") or {}

    def to_dict(self) -> JSONObject:
        """The event as a GA-shaped JSON object (``type`` included, unknown fields kept)."""
        data: JSONObject = msgspec.to_builtins(self)
        extra = self.__dict__.get("_extra")
        if extra:
            data.update(extra)
        return data


class ClientEvent(Event):
    """An event a client sends to the server."""


class ServerEvent(Event):
    """An event the server sends to a client."""


class UnknownEvent(msgspec.Struct, kw_only=True):
    """An event whose ``type`` this library does not know; ``data`` is the whole event as
    received (translated to GA names only where a known translation applies)."""

    type: str
    data: JSONObject

    @property
    def event_id(self) -> str | UnsetType:
        """The event's `event_id` when it has a string one, else UNSET."""
        value = self.data.get("event_id", UNSET)
        return value if isinstance(value, str) else UNSET

    @property
    def extra(self) -> JSONObject:
        """Always empty: every field of an unknown event is in `data`."""
        return {}

    def to_dict(self) -> JSONObject:
        """A shallow copy of ``data``."""
        return dict(self.data)


# ---------------------------------------------------------------------------------------------
# Client events
# ---------------------------------------------------------------------------------------------


class SessionUpdateEvent(ClientEvent, tag="session.update"):
    """Update the session config (GA nested shape; ``session["type"]`` is required by GA)."""

    session: JSONObject


class InputAudioBufferAppendEvent(ClientEvent, tag="input_audio_buffer.append"):
    """Append base64 audio (in the session's input format) to the input buffer."""

    audio: str


class InputAudioBufferCommitEvent(ClientEvent, tag="input_audio_buffer.commit"):
    pass


class InputAudioBufferClearEvent(ClientEvent, tag="input_audio_buffer.clear"):
    pass


class ConversationItemCreateEvent(ClientEvent, tag="conversation.item.create"):
    item: JSONObject
    previous_item_id: str | None | UnsetType = UNSET


class ConversationItemRetrieveEvent(ClientEvent, tag="conversation.item.retrieve"):
    item_id: str


class ConversationItemTruncateEvent(ClientEvent, tag="conversation.item.truncate"):
    item_id: str
    content_index: int
    audio_end_ms: int


class ConversationItemDeleteEvent(ClientEvent, tag="conversation.item.delete"):
    item_id: str


class ResponseCreateEvent(ClientEvent, tag="response.create"):
    response: JSONObject | None | UnsetType = UNSET


class ResponseCancelEvent(ClientEvent, tag="response.cancel"):
    response_id: str | None | UnsetType = UNSET


class OutputAudioBufferClearEvent(ClientEvent, tag="output_audio_buffer.clear"):
    """WebRTC and SIP only."""


# ---------------------------------------------------------------------------------------------
# Server events. Id fields accept null: low-fidelity servers send it, and a null id is still an
# event worth delivering.
# ---------------------------------------------------------------------------------------------


class ErrorEvent(ServerEvent, tag="error"):
    """``error`` is ``{type, code?, message, param?, event_id?}``; the session goes on."""

    error: JSONObject


class SessionCreatedEvent(ServerEvent, tag="session.created"):
    session: JSONObject


class SessionUpdatedEvent(ServerEvent, tag="session.updated"):
    session: JSONObject


class ConversationCreatedEvent(ServerEvent, tag="conversation.created"):
    conversation: JSONObject


class ConversationItemAddedEvent(ServerEvent, tag="conversation.item.added"):
    item: JSONObject
    previous_item_id: str | None | UnsetType = UNSET


class ConversationItemCreatedEvent(ConversationItemAddedEvent, tag="conversation.item.created"):
    """The documented GA name that live servers replace by ``conversation.item.added``; a
    subclass so that code handling ``added`` handles both."""


class ConversationItemDoneEvent(ServerEvent, tag="conversation.item.done"):
    item: JSONObject
    previous_item_id: str | None | UnsetType = UNSET


class ConversationItemRetrievedEvent(ServerEvent, tag="conversation.item.retrieved"):
    item: JSONObject


class ConversationItemTruncatedEvent(ServerEvent, tag="conversation.item.truncated"):
    item_id: str | None
    content_index: int
    audio_end_ms: int


class ConversationItemDeletedEvent(ServerEvent, tag="conversation.item.deleted"):
    item_id: str | None


class InputAudioTranscriptionDeltaEvent(
    ServerEvent, tag="conversation.item.input_audio_transcription.delta"
):
    item_id: str | None
    content_index: int | None | UnsetType = UNSET
    delta: str | None | UnsetType = UNSET
    logprobs: list[JSONObject] | None | UnsetType = UNSET
    obfuscation: str | None | UnsetType = UNSET


class InputAudioTranscriptionCompletedEvent(
    ServerEvent, tag="conversation.item.input_audio_transcription.completed"
):
    item_id: str | None
    content_index: int
    transcript: str
    # Absent in 2024-25 beta events although the SDK types require it.
    usage: JSONObject | None | UnsetType = UNSET
    logprobs: list[JSONObject] | None | UnsetType = UNSET
    languages: list[Any] | None | UnsetType = UNSET


class InputAudioTranscriptionFailedEvent(
    ServerEvent, tag="conversation.item.input_audio_transcription.failed"
):
    item_id: str | None
    content_index: int
    error: JSONObject


class InputAudioTranscriptionSegmentEvent(
    ServerEvent, tag="conversation.item.input_audio_transcription.segment"
):
    """Diarized transcript segment; ``start``/``end`` in seconds."""

    item_id: str | None
    content_index: int
    text: str
    id: str
    speaker: str
    start: float
    end: float


class InputAudioBufferCommittedEvent(ServerEvent, tag="input_audio_buffer.committed"):
    item_id: str | None
    previous_item_id: str | None | UnsetType = UNSET


class InputAudioBufferClearedEvent(ServerEvent, tag="input_audio_buffer.cleared"):
    pass


class InputAudioBufferSpeechStartedEvent(ServerEvent, tag="input_audio_buffer.speech_started"):
    audio_start_ms: int
    item_id: str | None


class InputAudioBufferSpeechStoppedEvent(ServerEvent, tag="input_audio_buffer.speech_stopped"):
    audio_end_ms: int
    item_id: str | None


class InputAudioBufferTimeoutTriggeredEvent(
    ServerEvent, tag="input_audio_buffer.timeout_triggered"
):
    audio_start_ms: int
    audio_end_ms: int
    item_id: str | None


class InputAudioBufferDtmfEventReceivedEvent(
    ServerEvent, tag="input_audio_buffer.dtmf_event_received"
):
    """SIP only: a keypad digit (``event``) and the epoch second it arrived."""

    event: str
    received_at: int


class OutputAudioBufferStartedEvent(ServerEvent, tag="output_audio_buffer.started"):
    response_id: str | None


class OutputAudioBufferStoppedEvent(ServerEvent, tag="output_audio_buffer.stopped"):
    response_id: str | None


class OutputAudioBufferClearedEvent(ServerEvent, tag="output_audio_buffer.cleared"):
    response_id: str | None


class ResponseCreatedEvent(ServerEvent, tag="response.created"):
    response: JSONObject


class ResponseDoneEvent(ServerEvent, tag="response.done"):
    response: JSONObject


class ResponseOutputItemAddedEvent(ServerEvent, tag="response.output_item.added"):
    response_id: str | None
    output_index: int
    item: JSONObject


class ResponseOutputItemDoneEvent(ServerEvent, tag="response.output_item.done"):
    response_id: str | None
    output_index: int
    item: JSONObject


class ResponseContentPartAddedEvent(ServerEvent, tag="response.content_part.added"):
    """``part["type"]`` is ``"text"`` or ``"audio"`` in both protocol versions."""

    response_id: str | None
    item_id: str | None
    output_index: int
    content_index: int
    part: JSONObject


class ResponseContentPartDoneEvent(ServerEvent, tag="response.content_part.done"):
    response_id: str | None
    item_id: str | None
    output_index: int
    content_index: int
    part: JSONObject


class ResponseOutputTextDeltaEvent(ServerEvent, tag="response.output_text.delta"):
    response_id: str | None
    item_id: str | None
    output_index: int
    content_index: int
    delta: str
    obfuscation: str | None | UnsetType = UNSET


class ResponseOutputTextDoneEvent(ServerEvent, tag="response.output_text.done"):
    response_id: str | None
    item_id: str | None
    output_index: int
    content_index: int
    text: str


class ResponseOutputAudioDeltaEvent(ServerEvent, tag="response.output_audio.delta"):
    """``delta`` is base64 audio in the session's output format (decoding is the caller's)."""

    response_id: str | None
    item_id: str | None
    output_index: int
    content_index: int
    delta: str
    obfuscation: str | None | UnsetType = UNSET


class ResponseOutputAudioDoneEvent(ServerEvent, tag="response.output_audio.done"):
    response_id: str | None
    item_id: str | None
    output_index: int
    content_index: int


class ResponseOutputAudioTranscriptDeltaEvent(
    ServerEvent, tag="response.output_audio_transcript.delta"
):
    response_id: str | None
    item_id: str | None
    output_index: int
    content_index: int
    delta: str
    obfuscation: str | None | UnsetType = UNSET


class ResponseOutputAudioTranscriptDoneEvent(
    ServerEvent, tag="response.output_audio_transcript.done"
):
    response_id: str | None
    item_id: str | None
    output_index: int
    content_index: int
    transcript: str


class ResponseFunctionCallArgumentsDeltaEvent(
    ServerEvent, tag="response.function_call_arguments.delta"
):
    response_id: str | None
    item_id: str | None
    output_index: int
    call_id: str | None
    delta: str
    obfuscation: str | None | UnsetType = UNSET


class ResponseFunctionCallArgumentsDoneEvent(
    ServerEvent, tag="response.function_call_arguments.done"
):
    response_id: str | None
    item_id: str | None
    output_index: int
    call_id: str | None
    arguments: str
    # GA always sends it; beta events lack it.
    name: str | None | UnsetType = UNSET


class ResponseMcpCallArgumentsDeltaEvent(ServerEvent, tag="response.mcp_call_arguments.delta"):
    response_id: str | None
    item_id: str | None
    output_index: int
    delta: str
    obfuscation: str | None | UnsetType = UNSET


class ResponseMcpCallArgumentsDoneEvent(ServerEvent, tag="response.mcp_call_arguments.done"):
    response_id: str | None
    item_id: str | None
    output_index: int
    arguments: str


class ResponseMcpCallInProgressEvent(ServerEvent, tag="response.mcp_call.in_progress"):
    output_index: int
    item_id: str | None


class ResponseMcpCallCompletedEvent(ServerEvent, tag="response.mcp_call.completed"):
    output_index: int
    item_id: str | None


class ResponseMcpCallFailedEvent(ServerEvent, tag="response.mcp_call.failed"):
    output_index: int
    item_id: str | None


class McpListToolsInProgressEvent(ServerEvent, tag="mcp_list_tools.in_progress"):
    item_id: str | None


class McpListToolsCompletedEvent(ServerEvent, tag="mcp_list_tools.completed"):
    item_id: str | None


class McpListToolsFailedEvent(ServerEvent, tag="mcp_list_tools.failed"):
    item_id: str | None


class RateLimitsUpdatedEvent(ServerEvent, tag="rate_limits.updated"):
    """``rate_limits`` is ``[{name, limit, remaining, reset_seconds}]``."""

    rate_limits: list[JSONObject]


def _concrete_subclasses(base: type[Event]) -> list[type[Event]]:
    found: list[type[Event]] = []
    pending = list(base.__subclasses__())
    while pending:
        cls = pending.pop(0)
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


CLIENT_EVENT_TYPES: dict[str, type[ClientEvent]] = {}
SERVER_EVENT_TYPES: dict[str, type[ServerEvent]] = {}
for _cls in _concrete_subclasses(ClientEvent):
    _cls.type = _cls.__struct_config__.tag  # type: ignore[assignment]
    CLIENT_EVENT_TYPES[_cls.type] = _cls  # type: ignore[assignment]
for _cls in _concrete_subclasses(ServerEvent):
    _cls.type = _cls.__struct_config__.tag  # type: ignore[assignment]
    SERVER_EVENT_TYPES[_cls.type] = _cls  # type: ignore[assignment]
del _cls

# The field names each event class knows on the wire, for splitting off unknown fields.
KNOWN_FIELDS: dict[type[Event], frozenset[str]] = {
    cls: frozenset(("type", *cls.__struct_encode_fields__))
    for cls in (*CLIENT_EVENT_TYPES.values(), *SERVER_EVENT_TYPES.values())
}
