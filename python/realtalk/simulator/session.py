"""`ServerSession`: one simulated Realtime connection, free of I/O.

Feed it client events (`receive` takes the raw text frame or a parsed dict); it validates each
one completely before touching any state, applies it, and queues the server events the real
server would send, in the wire shape of the connection's protocol version (GA or beta). The
driver (`realtalk.simulator.server`) sends what `drain` returns and streams the responses that
`take_new_responses` hands it (`realtalk.simulator.streaming`), calling back into the steps of
the response cascade (`text_delta`, `audio_delta`, `function_call`, `finish_response` ...).

The work is split by protocol section over one `SessionState`: `SessionConfig`
(session.update), `InputBuffer` (input audio and turn detection), `Conversation` (items) and
`Responses`; one table (`ServerSession._handlers`) says which section answers which client
event, and the connection's `ProtocolAdapter` holds every difference between GA and beta.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import msgspec

from realtalk.simulator import _config as cfg
from realtalk.simulator._audio_io import b64decode
from realtalk.simulator._conversation import Conversation
from realtalk.simulator._ids import IdFactory
from realtalk.simulator._input_buffer import MAX_APPEND_BYTES, MIN_COMMIT_MS, InputBuffer
from realtalk.simulator._protocol import ADAPTERS, Protocol
from realtalk.simulator._responses import RATE_LIMIT_TOKENS, Responses
from realtalk.simulator._session_config import SessionConfig
from realtalk.simulator._state import (
    Event,
    ResponseState,
    SessionState,
    SessionStats,
    VadFactory,
    VadLike,
)
from realtalk.simulator._validate import ClientError, invalid_type, invalid_value, string
from realtalk.simulator.responder import FunctionCall

__all__ = [
    "MAX_APPEND_BYTES",
    "MIN_COMMIT_MS",
    "RATE_LIMIT_TOKENS",
    "Event",
    "Protocol",
    "ResponseState",
    "ServerSession",
    "SessionStats",
    "VadFactory",
    "VadLike",
]

_json_decoder = msgspec.json.Decoder()
_APPEND_HEAD = b'{"type":"input_audio_buffer.append",'
_EVENT_ID_FIELD = b'"event_id":"'
_AUDIO_FIELD = b'"audio":"'
_MAX_EVENT_ID = 512


def _plain_append_audio(data: bytes) -> bytes | None:
    """The decoded audio of an append event written exactly as ``{"type":"input_audio_buffer.
    append"[,"event_id":"<printable ASCII, no escapes>"],"audio":"<base64>"}`` (no whitespace),
    or None when the event is anything else, oversized or not valid base64 (the full path
    then reports it). The base64 decoder is strict (alphabet and padding only), so a quote,
    backslash or control character inside the audio field, which would change the JSON's
    meaning, makes it refuse and sends the message the full way."""
    at = len(_APPEND_HEAD)
    if data.startswith(_EVENT_ID_FIELD, at):
        start = at + len(_EVENT_ID_FIELD)
        end = data.find(b'"', start)
        if end < 0 or end - start > _MAX_EVENT_ID or data[end + 1 : end + 2] != b",":
            return None
        event_id = data[start:end]
        # JSON allows raw printable ASCII other than backslash as is; anything else (escapes,
        # control characters, non-ASCII) is left to the parser.
        if not (event_id.isascii() and event_id.decode().isprintable()) or b"\\" in event_id:
            return None
        at = end + 2
    if not data.startswith(_AUDIO_FIELD, at):
        return None
    at += len(_AUDIO_FIELD)
    encoded_len = len(data) - 2 - at
    if encoded_len < 0 or encoded_len * 3 // 4 > MAX_APPEND_BYTES:
        return None
    try:
        return b64decode(data[at:-2])
    except ValueError:
        return None


def _translation_only(event: dict[str, Any]) -> None:
    # Listed by the GA server as accepted types, but they belong to the translation endpoint
    # (/v1/realtime/translations), which the simulator does not serve.
    raise ClientError(
        "invalid_value",
        f"'{event['type']}' is only supported by the /v1/realtime/translations endpoint.",
        "type",
    )


Handler = Callable[[dict[str, Any]], None]


class ServerSession:
    """One simulated Realtime connection, free of I/O: feed it client events, drain the server
    events it queues, and drive the responses it starts (`realtalk.simulator.streaming`)."""

    def __init__(
        self,
        *,
        protocol: Protocol = "ga",
        model: str = "gpt-realtime",
        intent: str = "realtime",
        ids: IdFactory | None = None,
        now: Callable[[], float] | None = None,
        max_session_s: float = 3600,
        vad_factory: VadFactory | None = None,
        initial_config: dict[str, Any] | None = None,
        audio_chunk_ms: int = 100,
    ) -> None:
        import time

        self.state = state = SessionState(
            adapter=ADAPTERS[protocol],
            model=model,
            intent=intent,
            ids=ids or IdFactory(),
            now=now or time.time,
            max_session_s=max_session_s,
            vad_factory=vad_factory,
            audio_chunk_ms=audio_chunk_ms,
        )
        if initial_config:
            cfg.merge(state.config, initial_config)
        self.conversation = Conversation(state)
        self.responses = Responses(state, self.conversation)
        self.input_buffer = InputBuffer(state, self.conversation, self.responses)
        self.config = SessionConfig(state, self.input_buffer)
        self.input_buffer.configure_vad()
        # Which section answers which client event. The protocol's adapter says which types
        # a connection accepts at all; every accepted type has its line here.
        self._handlers: dict[str, Handler] = {
            "session.update": self.config.on_session_update,
            "transcription_session.update": self.config.on_transcription_session_update,
            "session.close": _translation_only,
            "session.input_audio_buffer.append": _translation_only,
            "input_audio_buffer.append": self.input_buffer.on_append,
            "input_audio_buffer.commit": self.input_buffer.on_commit,
            "input_audio_buffer.clear": self.input_buffer.on_clear,
            "output_audio_buffer.clear": self.input_buffer.on_output_audio_buffer_clear,
            "conversation.item.create": self.conversation.on_create,
            "conversation.item.retrieve": self.conversation.on_retrieve,
            "conversation.item.delete": self.conversation.on_delete,
            "conversation.item.truncate": self.conversation.on_truncate,
            "response.create": self.responses.on_create,
            "response.cancel": self.responses.on_cancel,
        }

    # ---- what the session is -------------------------------------------------------------

    @property
    def protocol(self) -> Protocol:
        """The connection's protocol version, `"ga"` or `"beta"`."""
        return self.state.protocol

    @property
    def model(self) -> str:
        """The model the client asked for in the URL."""
        return self.state.model

    @property
    def intent(self) -> str:
        """`"realtime"` or `"transcription"` (the URL's intent)."""
        return self.state.intent

    @property
    def transcription(self) -> bool:
        """True for a transcription session."""
        return self.state.transcription

    @property
    def ids(self) -> IdFactory:
        """The factory of the server's ids (seeded for reproducible sessions)."""
        return self.state.ids

    @property
    def session_id(self) -> str:
        """The session's id, as in `session.created`."""
        return self.state.session_id

    @property
    def conversation_id(self) -> str:
        """The default conversation's id."""
        return self.state.conversation_id

    @property
    def created_at(self) -> float:
        """When the session was created (epoch seconds, from the session's clock)."""
        return self.state.created_at

    @property
    def audio_chunk_ms(self) -> int:
        """How much reply audio one `output_audio.delta` carries."""
        return self.state.audio_chunk_ms

    @property
    def vad_factory(self) -> VadFactory | None:
        """Builds the turn detector from `turn_detection` (None: the default energy VAD)."""
        return self.state.vad_factory

    @property
    def session(self) -> dict[str, Any]:
        """The session config as it goes on the wire."""
        return self.state.config

    @property
    def stats(self) -> SessionStats:
        """The session's counters (events, audio, responses, errors)."""
        return self.state.stats

    @property
    def input_format(self) -> str:
        """The input audio format's name (`pcm16`, `g711_ulaw`, `g711_alaw`)."""
        return self.state.input_format

    @property
    def turn_detection(self) -> dict[str, Any] | None:
        """The session's turn detection config, or None when it is off."""
        return self.state.turn_detection

    @property
    def active(self) -> ResponseState | None:
        """The response in the default conversation, if one is running."""
        return self.state.active

    @property
    def out_of_band(self) -> dict[str, ResponseState]:
        """Running responses outside the default conversation, by id."""
        return self.state.out_of_band

    @property
    def responder_state(self) -> dict[Any, Any]:
        """Per-connection memory for the responder (`ResponseContext.session_state`); dropped with
        the session."""
        return self.state.responder_state

    # The conversation and input buffer under the names tests inspect them by.
    @property
    def _order(self) -> list[str]:
        return self.state.order

    @property
    def _items(self) -> dict[str, dict[str, Any]]:
        return self.state.items

    @property
    def _audio(self) -> dict[tuple[str, int], bytes | bytearray]:
        return self.state.audio

    @property
    def _buffer(self) -> bytearray:
        return self.state.buffer

    @property
    def _clock_ms(self) -> float:
        return self.state.clock_ms

    # ---- output --------------------------------------------------------------------------

    def emit(self, type_: str, **fields: Any) -> None:
        """Queue one server event of `type_` with these fields."""
        self.state.emit(type_, **fields)

    @property
    def has_output(self) -> bool:
        """Events are queued for `drain`."""
        return bool(self.state.outbox)

    @property
    def has_new_responses(self) -> bool:
        """Responses are waiting for `take_new_responses`."""
        return bool(self.state.new_responses)

    def drain(self) -> list[Event]:
        """The queued server events, in order; the queue is left empty."""
        state = self.state
        out, state.outbox = state.outbox, []
        return out

    def take_new_responses(self) -> list[ResponseState]:
        """Responses started since the last call, for the driver to stream."""
        state = self.state
        out, state.new_responses = state.new_responses, []
        return out

    def error(self, exc: ClientError, event_id: str | None = None) -> None:
        """Queue an `error` event for a refused client event (and count it)."""
        self.state.stats.errors += 1
        self.state.emit("error", error=exc.payload(event_id))

    def start(self) -> None:
        """Queue the first event of every connection."""
        state = self.state
        name = state.adapter.created_event(transcription=state.transcription)
        state.emit(name, session=copy.deepcopy(state.config))

    def created_events(self) -> list[Event]:
        """The events that open every connection (`session.created` and what follows)."""
        self.start()
        return self.drain()

    # ---- input ---------------------------------------------------------------------------

    def receive(self, frame: str | bytes | dict[str, Any]) -> list[Event]:
        """Handle one client frame (text, binary, or an already parsed event) and return what
        the server sends in reply."""
        self.feed(frame)
        return self.drain()

    def feed(self, frame: str | bytes | dict[str, Any]) -> None:
        """Handle one client frame; its replies stay queued for `drain`."""
        if isinstance(frame, (bytes, bytearray, memoryview)):
            self.error(
                ClientError(
                    "invalid_event",
                    "Expected a text WebSocket message; binary frames are not supported.",
                )
            )
            return
        if isinstance(frame, str):
            try:
                event = _json_decoder.decode(frame)
            except msgspec.DecodeError as exc:
                self.error(
                    ClientError(
                        "invalid_json",
                        f"Invalid event: failed to parse JSON value. {exc}",
                    )
                )
                return
        else:
            event = frame
        self.handle(event)

    def feed_text(self, data: bytes) -> None:
        """Handle one text frame given as its UTF-8 bytes (replies stay queued for `drain`).

        The same as ``feed(data.decode())``, but an `input_audio_buffer.append` in the shape
        clients send it (``{"type":"input_audio_buffer.append","audio":"..."}``, optionally
        with a plain ``"event_id"`` between the two) is taken apart without a JSON parse: at
        50 frames a second per session that parse is most of the append's cost. Anything
        else, and any doubt, goes the full way, so the answer is always what ``feed`` gives."""
        if data.startswith(_APPEND_HEAD) and data.endswith(b'"}'):
            audio = _plain_append_audio(data)
            if audio is not None:
                self.input_buffer.append_audio(audio)
                return
        self.feed(data.decode())

    def handle(self, event: Any) -> None:
        """Handle one parsed client event; a refusal becomes an `error` event."""
        event_id = event.get("event_id") if isinstance(event, dict) else None
        if not isinstance(event_id, str):
            event_id = None
        try:
            self._dispatch(event)
        except ClientError as exc:
            self.error(exc, event_id)

    def _dispatch(self, event: Any) -> None:
        if not isinstance(event, dict):
            raise ClientError("invalid_event", "The event must be a JSON object.")
        if "type" not in event:
            raise ClientError("invalid_event", "The 'type' field is missing.")
        kind = event["type"]
        if not isinstance(kind, str):
            raise invalid_type("type", "a string", kind)
        supported = self.state.adapter.client_types
        if self.state.sideband and kind == "output_audio_buffer.clear":
            supported = (*supported, kind)
        if kind not in supported:
            raise invalid_value("type", kind, supported)
        if event.get("event_id") is not None:
            string(max_length=512)(event["event_id"], "event_id")
        self._handlers[kind](event)

    def append_audio(self, audio: bytes) -> None:
        """Raw input audio in the session's input format, as an append event carries it."""
        self.input_buffer.append_audio(audio)

    def preconfigure(self, update: dict[str, Any]) -> None:
        """Apply an already validated session update without announcing it (a REST-created
        token's session config)."""
        self.config.preconfigure(update)

    # ---- the response cascade, for the streaming driver -----------------------------------

    def wire_item(
        self, item: dict[str, Any], *, in_conversation: bool, with_audio: bool = False
    ) -> dict[str, Any]:
        """An item as the server shows it on the wire (in the conversation or out of band)."""
        return self.conversation.wire_item(
            item, in_conversation=in_conversation, with_audio=with_audio
        )

    def create_response(self, overrides: dict[str, Any]) -> ResponseState:
        """Start a response with these overrides of the session config."""
        return self.responses.create_response(overrides)

    def open_message(self, response: ResponseState) -> None:
        """Open the response's assistant message (its item and content part)."""
        self.responses.open_message(response)

    def text_delta(self, response: ResponseState, delta: str) -> None:
        """Written text (text output) or the transcript of spoken audio (audio output)."""
        self.responses.text_delta(response, delta)

    def audio_delta(self, response: ResponseState, audio: bytes) -> None:
        """Audio already in the response's output format."""
        self.responses.audio_delta(response, audio)

    def close_message(self, response: ResponseState, *, status: str = "completed") -> None:
        """Close the response's open message with this status."""
        self.responses.close_message(response, status=status)

    def function_call(self, response: ResponseState, call: FunctionCall, chunk: int = 24) -> None:
        """Emit a function call item, its arguments in deltas of `chunk` characters."""
        self.responses.function_call(response, call, chunk)

    def enforce_token_limit(self, response: ResponseState) -> bool:
        """End the response as `incomplete` once it has produced `max_output_tokens`. True
        when it ended."""
        return self.responses.enforce_token_limit(response)

    def finish_response(
        self,
        response: ResponseState,
        status: str = "completed",
        details: dict[str, Any] | None = None,
    ) -> None:
        """End the response (`response.done` with usage) with this status and details."""
        self.responses.finish_response(response, status, details)

    def cancel_response(self, response: ResponseState, reason: str) -> None:
        """Cancel the response for this reason (`turn_detected`, `client_cancelled`)."""
        self.responses.cancel_response(response, reason)

    def fail_response(self, response: ResponseState, message: str) -> None:
        """End the response as failed with this message."""
        self.responses.fail_response(response, message)

