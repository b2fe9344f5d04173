"""`ServerSession`: one simulated Realtime connection, free of I/O.

Feed it client events (`receive` takes the raw text frame or a parsed dict); it validates each
one completely before touching any state, applies it, and queues the server events the real
server would send, in the wire shape of the connection's protocol version (GA or beta). The
driver (`realtalk.simulator.server`) sends what `drain` returns, and runs the responses that
`take_new_responses` hands it with `stream_response` (async, but still I/O-free: it only calls
back into the session and a clock).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from typing import Protocol as TypingProtocol

import anyio
import msgspec

from realtalk.simulator import _config as cfg
from realtalk.simulator._audio_io import b64decode, b64encode
from realtalk.simulator._ids import IdFactory
from realtalk.simulator._validate import (
    Check,
    ClientError,
    Obj,
    anything,
    array,
    enum,
    integer,
    invalid_type,
    invalid_value,
    nullable,
    string,
    tagged,
)
from realtalk.simulator.responder import (
    Audio,
    Close,
    Delay,
    Drop,
    FunctionCall,
    Responder,
    ResponseContext,
    ServerError,
    Text,
    default_responder,
    iterate_parts,
)
from realtalk.simulator.speech import Synthesizer, buzz

Protocol = Literal["ga", "beta"]
Event = dict[str, Any]

GA_CLIENT_TYPES = (
    "session.update",
    "session.close",
    "input_audio_buffer.append",
    "session.input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.truncate",
    "conversation.item.delete",
    "conversation.item.retrieve",
    "response.create",
    "response.cancel",
)
BETA_CLIENT_TYPES = (
    "session.update",
    "transcription_session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.truncate",
    "conversation.item.delete",
    "conversation.item.retrieve",
    "response.create",
    "response.cancel",
    "output_audio_buffer.clear",
)
MAX_APPEND_BYTES = 15 * 1024 * 1024
MIN_COMMIT_MS = 100.0
RATE_LIMIT_TOKENS = 40000
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


class VadLike(TypingProtocol):
    """What the session needs from a turn detector: feed the session's input bytes, get
    ``("speech_started", ms)`` / ``("speech_stopped", ms)`` pairs with ms counted from the
    detector's first sample."""

    def process(self, data: bytes) -> list[tuple[str, float]]: ...


VadFactory = Callable[[dict[str, Any], str], VadLike]


@dataclass
class SessionStats:
    input_audio_bytes: int = 0
    output_audio_bytes: int = 0
    responses: int = 0
    errors: int = 0


@dataclass
class ResponseState:
    """One response's state machine: created -> (message / function call items) -> done."""

    id: str
    conversation: str  # "auto" (default conversation) or "none" (out of band)
    metadata: dict[str, str] | None
    overrides: dict[str, Any]
    effective: cfg.Effective
    context: ResponseContext
    output: list[dict[str, Any]] = field(default_factory=list)
    status: str = "in_progress"
    status_details: dict[str, Any] | None = None
    open_item: dict[str, Any] | None = None
    open_kind: str | None = None  # "text" | "audio"
    open_text: list[str] = field(default_factory=list)
    open_audio_ms: float = 0.0
    audio_sent_ms: float = 0.0
    output_text_chars: int = 0
    output_audio_ms: float = 0.0
    input_tokens: int = 0
    beta_rate_limits_sent: bool = False

    @property
    def done(self) -> bool:
        return self.status != "in_progress"


class ServerSession:
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

        self.protocol: Protocol = protocol
        self.model = model
        self.intent = intent
        self.ids = ids or IdFactory()
        self._now = now or time.time
        self.audio_chunk_ms = audio_chunk_ms
        self.vad_factory = vad_factory
        self.session_id = self.ids.new("sess")
        self.conversation_id = self.ids.new("conv")
        self.created_at = self._now()
        expires_at = int(self.created_at + max_session_s)
        self.transcription = intent == "transcription"
        if protocol == "ga":
            self.session = cfg.ga_default_session(
                self.session_id, model, expires_at, transcription=self.transcription
            )
        elif self.transcription:
            self.session = cfg.beta_default_transcription_session(self.session_id, expires_at)
        else:
            self.session = cfg.beta_default_session(self.session_id, model, expires_at)
        if initial_config:
            cfg.merge(self.session, initial_config)
        self._outbox: list[Event] = []
        self.stats = SessionStats()
        # conversation
        self._order: list[str] = []
        self._items: dict[str, dict[str, Any]] = {}
        self._audio: dict[tuple[str, int], bytes | bytearray] = {}
        self._voice_locked = False
        # input buffer and its clock (ms since the first appended sample)
        self._buffer = bytearray()
        self._buffer_start_ms = 0.0
        self._clock_ms = 0.0
        self._vad: VadLike | None = None
        self._vad_origin_ms = 0.0
        self._speech_item_id: str | None = None
        # server_vad idle_timeout_ms: armed at response.done (plus its audio's playback).
        self._idle_from_ms: float | None = None
        self._speech_start_ms = 0.0
        # responses
        self.active: ResponseState | None = None
        self.out_of_band: dict[str, ResponseState] = {}
        self._new_responses: list[ResponseState] = []
        self._tokens_used = 0
        self._configure_vad()

    # ---- output -----------------------------------------------------------------------

    def emit(self, type_: str, **fields: Any) -> None:
        event: Event = {"type": type_, "event_id": self.ids.new("event")}
        event.update(fields)
        self._outbox.append(event)

    @property
    def has_output(self) -> bool:
        """Events are queued for `drain`."""
        return bool(self._outbox)

    @property
    def has_new_responses(self) -> bool:
        """Responses are waiting for `take_new_responses`."""
        return bool(self._new_responses)

    def drain(self) -> list[Event]:
        out, self._outbox = self._outbox, []
        return out

    def take_new_responses(self) -> list[ResponseState]:
        out, self._new_responses = self._new_responses, []
        return out

    def error(self, exc: ClientError, event_id: str | None = None) -> None:
        self.stats.errors += 1
        self.emit("error", error=exc.payload(event_id))

    def start(self) -> None:
        """Queue the first event of every connection."""
        if self.protocol == "beta" and self.transcription:
            self.emit("transcription_session.created", session=copy.deepcopy(self.session))
        else:
            self.emit("session.created", session=copy.deepcopy(self.session))

    def created_events(self) -> list[Event]:
        self.start()
        return self.drain()

    # ---- input ------------------------------------------------------------------------

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
                self.append_audio(audio)
                return
        self.feed(data.decode())

    def handle(self, event: Any) -> None:
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
        supported = GA_CLIENT_TYPES if self.protocol == "ga" else BETA_CLIENT_TYPES
        if kind not in supported:
            raise invalid_value("type", kind, supported)
        if event.get("event_id") is not None:
            string(max_length=512)(event["event_id"], "event_id")
        handler = getattr(self, "_on_" + kind.replace(".", "_"))
        handler(event)

    @staticmethod
    def _fields(
        event: dict[str, Any], fields: dict[str, Check], required: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        spec = dict(fields)
        spec["type"] = anything()
        spec["event_id"] = anything()
        checked: dict[str, Any] = Obj(spec, required)(event, "")
        return checked

    # ---- session.update ---------------------------------------------------------------

    def _on_session_update(self, event: dict[str, Any]) -> None:
        if self.protocol == "ga":
            schema = (
                cfg.ga_transcription_session_schema()
                if self.transcription
                else cfg.ga_session_schema()
            )
        elif self.transcription:
            schema = cfg.beta_transcription_session_schema()
        else:
            schema = cfg.beta_session_schema()
        update = self._fields(event, {"session": schema}, ("session",))["session"]
        self._apply_session(update)

    def _on_transcription_session_update(self, event: dict[str, Any]) -> None:
        if not self.transcription:
            raise ClientError(
                "invalid_value",
                "transcription_session.update is only supported in transcription sessions.",
                "type",
            )
        update = self._fields(
            event, {"session": cfg.beta_transcription_session_schema()}, ("session",)
        )["session"]
        self._apply_session(update)

    def _apply_session(self, update: dict[str, Any]) -> None:
        update = dict(update)
        if self.protocol == "ga":
            wanted = update.pop("type")
            if wanted != self.session["type"]:
                raise ClientError(
                    "invalid_value",
                    f"Invalid value: '{wanted}'. A {self.session['type']} session cannot "
                    f"change its type.",
                    "session.type",
                )
        if "model" in update:
            cfg.model_check(self.session.get("model", self.model))(
                update.pop("model"), "session.model"
            )
        update.pop("client_secret", None)
        voice_path, voice = self._voice_in(update)
        if voice is not None and self._voice_locked and voice != self._current_voice():
            raise ClientError(
                "cannot_update_voice",
                "Cannot update a conversation's voice if assistant audio is present.",
                voice_path,
            )
        if (
            self.session.get("tracing") not in (None,)
            and "tracing" in update
            and (update["tracing"] != self.session["tracing"])
        ):
            raise ClientError(
                "invalid_value", "Tracing cannot be modified once enabled.", "session.tracing"
            )
        # Validation is complete: from here on the update applies whole.
        self.preconfigure(update)
        name = (
            "transcription_session.updated"
            if self.protocol == "beta" and self.transcription
            else "session.updated"
        )
        self.emit(name, session=copy.deepcopy(self.session))

    def preconfigure(self, update: dict[str, Any]) -> None:
        """Apply an already validated update without announcing it (a REST-created token's
        session config, or the tail of a `session.update`)."""
        update = {k: v for k, v in update.items() if k not in ("type", "model", "client_secret")}
        turn = self._turn_detection_in(update)
        cfg.merge(self.session, update)
        if turn is not None:
            filled = cfg.fill_turn_detection(turn[1], self.protocol)
            if self.protocol == "ga":
                self.session["audio"]["input"]["turn_detection"] = filled
            else:
                self.session["turn_detection"] = filled
            self._configure_vad()
        elif self._input_format_changed(update):
            self._configure_vad()
        else:
            self._refresh_view()

    def _voice_in(self, update: dict[str, Any]) -> tuple[str, Any]:
        if self.protocol == "ga":
            return "session.audio.output.voice", update.get("audio", {}).get("output", {}).get(
                "voice"
            )
        return "session.voice", update.get("voice")

    def _current_voice(self) -> Any:
        if self.protocol == "ga":
            return self.session["audio"]["output"]["voice"]
        return self.session["voice"]

    def _turn_detection_in(self, update: dict[str, Any]) -> tuple[bool, Any] | None:
        if self.protocol == "ga":
            audio_in = update.get("audio", {}).get("input", {})
            if "turn_detection" in audio_in:
                return (True, audio_in["turn_detection"])
            return None
        if "turn_detection" in update:
            return (True, update["turn_detection"])
        return None

    def _input_format_changed(self, update: dict[str, Any]) -> bool:
        if self.protocol == "ga":
            return "format" in update.get("audio", {}).get("input", {})
        return "input_audio_format" in update

    @property
    def input_format(self) -> str:
        return str(self._view["input_format"])

    @property
    def turn_detection(self) -> dict[str, Any] | None:
        value = self._view["turn_detection"]
        return value if isinstance(value, dict) else None

    def _refresh_view(self) -> None:
        # Every config change passes here: the input-side facts the append path reads, looked
        # up once per change instead of once per 20 ms frame.
        self._view = cfg.session_view(self.protocol, self.session)
        self._input_bytes_per_ms = cfg.BYTES_PER_MS[self._view["input_format"]]
        turn = self.turn_detection or {}
        # Between turns only the prefix padding (and a margin) can still become part of an item.
        self._keep_between_turns_ms = float(turn.get("prefix_padding_ms", 300)) + 200

    def _configure_vad(self) -> None:
        self._refresh_view()
        self._idle_from_ms = None
        turn = self.turn_detection
        self._speech_item_id = None
        if turn is None or self.vad_factory is None:
            self._vad = None
            return
        self._vad = self.vad_factory(turn, self.input_format)
        self._vad_origin_ms = self._clock_ms

    # ---- input audio buffer -----------------------------------------------------------

    def _on_input_audio_buffer_append(self, event: dict[str, Any]) -> None:
        encoded = event.get("audio")
        if not (
            isinstance(encoded, str)
            and len(event) <= 3
            and (len(event) == 2 or "event_id" in event)
        ):  # the common shape skips the general validator, which reports the rest
            encoded = self._fields(event, {"audio": string()}, ("audio",))["audio"]
        if len(encoded) * 3 // 4 > MAX_APPEND_BYTES:
            raise ClientError(
                "invalid_value",
                "Audio content exceeds the maximum of 15 MiB per input_audio_buffer.append event.",
                "audio",
            )
        try:
            audio = b64decode(encoded)
        except ValueError:
            raise ClientError(
                "invalid_value", "Invalid 'audio'. Expected base64-encoded audio bytes.", "audio"
            ) from None
        self.append_audio(audio)

    def append_audio(self, audio: bytes) -> None:
        bytes_per_ms = self._input_bytes_per_ms
        self.stats.input_audio_bytes += len(audio)
        self._buffer += audio
        self._clock_ms += len(audio) / bytes_per_ms
        if self._vad is not None:
            for kind, at_ms in self._vad.process(audio):
                if kind == "speech_started":
                    self._speech_started(self._vad_origin_ms + at_ms)
                elif kind == "speech_stopped":
                    self._speech_stopped(self._vad_origin_ms + at_ms)
        if self._idle_from_ms is not None and self._speech_item_id is None:
            self._check_idle_timeout()
        if self._vad is not None and self._speech_item_id is None:
            # Between turns only the prefix padding can still become part of an item (and,
            # while the idle timer runs, the audio it would commit).
            keep_ms = self._keep_between_turns_ms
            if self._idle_from_ms is not None:
                keep_ms = max(keep_ms, self._clock_ms - self._idle_from_ms)
            excess = int((self._clock_ms - self._buffer_start_ms - keep_ms) * bytes_per_ms)
            excess -= excess % 2
            if excess > 0:
                del self._buffer[:excess]
                self._buffer_start_ms += excess / bytes_per_ms

    def _arm_idle_timeout(self, response: ResponseState) -> None:
        turn = self.turn_detection or {}
        if turn.get("type") == "server_vad" and turn.get("idle_timeout_ms"):
            self._idle_from_ms = self._clock_ms + response.output_audio_ms

    def _check_idle_timeout(self) -> None:
        """`idle_timeout_ms` of input without speech after the model's last reply (and its
        playback): commit the silence and ask for a response (protocol.md 6.3)."""
        assert self._idle_from_ms is not None
        idle_ms = float((self.turn_detection or {}).get("idle_timeout_ms") or 0)
        if not idle_ms or self.active is not None:
            return
        if self._clock_ms - self._idle_from_ms < idle_ms:
            return
        start_ms = max(self._idle_from_ms, self._buffer_start_ms)
        self._idle_from_ms = None
        item_id = self.ids.new("item")
        self.emit(
            "input_audio_buffer.timeout_triggered",
            audio_start_ms=int(round(start_ms)),
            audio_end_ms=int(round(self._clock_ms)),
            item_id=item_id,
        )
        bytes_per_ms = cfg.BYTES_PER_MS[self.input_format]
        start = int((start_ms - self._buffer_start_ms) * bytes_per_ms)
        start -= start % 2
        audio = bytes(self._buffer[start:])
        self._buffer.clear()
        self._buffer_start_ms = self._clock_ms
        self._commit(audio, item_id)
        self.create_response({})

    def _speech_started(self, at_ms: float) -> None:
        if self._speech_item_id is not None:
            return
        self._idle_from_ms = None
        self._speech_item_id = self.ids.new("item")
        self._speech_start_ms = max(at_ms, self._buffer_start_ms)
        self.emit(
            "input_audio_buffer.speech_started",
            audio_start_ms=int(round(at_ms)),
            item_id=self._speech_item_id,
        )
        turn = self.turn_detection or {}
        if turn.get("interrupt_response", True) and self.active is not None:
            self.cancel_response(self.active, "turn_detected")

    def _speech_stopped(self, at_ms: float) -> None:
        item_id = self._speech_item_id
        if item_id is None:
            return
        self.emit(
            "input_audio_buffer.speech_stopped", audio_end_ms=int(round(at_ms)), item_id=item_id
        )
        self._idle_from_ms = None
        bytes_per_ms = cfg.BYTES_PER_MS[self.input_format]
        start = int((self._speech_start_ms - self._buffer_start_ms) * bytes_per_ms)
        end = int((at_ms - self._buffer_start_ms) * bytes_per_ms)
        start, end = max(0, start - start % 2), min(len(self._buffer), end - end % 2)
        audio = bytes(self._buffer[start:end])
        del self._buffer[:end]
        self._buffer_start_ms += end / bytes_per_ms
        self._speech_item_id = None
        self._commit(audio, item_id)
        turn = self.turn_detection or {}
        if turn.get("create_response", True) and not self.transcription and self.active is None:
            self.create_response({})

    def _on_input_audio_buffer_commit(self, event: dict[str, Any]) -> None:
        self._fields(event, {})
        bytes_per_ms = cfg.BYTES_PER_MS[self.input_format]
        held_ms = len(self._buffer) / bytes_per_ms
        if held_ms < MIN_COMMIT_MS:
            raise ClientError(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at least 100ms "
                f"of audio, but buffer only has {held_ms:.2f}ms of audio.",
            )
        audio = bytes(self._buffer)
        item_id = self._speech_item_id or self.ids.new("item")
        self._buffer.clear()
        self._buffer_start_ms = self._clock_ms
        self._speech_item_id = None
        self._commit(audio, item_id)

    def _commit(self, audio: bytes, item_id: str) -> None:
        previous = self._order[-1] if self._order else None
        self.emit("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)
        item = {
            "id": item_id,
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self._audio[(item_id, 0)] = audio
        self._insert(item, previous)
        self._announce_item(item, previous)
        if self._view["transcription"]:
            self._transcribe(item_id, audio)

    def _transcribe(self, item_id: str, audio: bytes) -> None:
        seconds = len(audio) / cfg.BYTES_PER_MS[self.input_format] / 1000
        transcript = f"({seconds:.2f} s of speech)"
        self.emit(
            "conversation.item.input_audio_transcription.delta",
            item_id=item_id,
            content_index=0,
            delta=transcript,
        )
        audio_tokens = max(1, math.ceil(seconds * 10))
        text_tokens = max(1, math.ceil(len(transcript) / 4))
        self.emit(
            "conversation.item.input_audio_transcription.completed",
            item_id=item_id,
            content_index=0,
            transcript=transcript,
            usage={
                "type": "tokens",
                "total_tokens": audio_tokens + text_tokens,
                "input_tokens": audio_tokens,
                "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
                "output_tokens": text_tokens,
            },
        )
        self._items[item_id]["content"][0]["transcript"] = transcript

    def _on_input_audio_buffer_clear(self, event: dict[str, Any]) -> None:
        self._fields(event, {})
        self._buffer.clear()
        self._buffer_start_ms = self._clock_ms
        self._speech_item_id = None
        self._configure_vad()
        self.emit("input_audio_buffer.cleared")

    def _on_output_audio_buffer_clear(self, event: dict[str, Any]) -> None:
        self._fields(event, {})
        raise ClientError(
            "invalid_value",
            "output_audio_buffer.clear is only supported for WebRTC and SIP connections.",
            "type",
        )

    def _on_session_close(self, event: dict[str, Any]) -> None:
        # Listed by the GA server as accepted types, but they belong to the translation
        # endpoint (/v1/realtime/translations), which the simulator does not serve.
        raise ClientError(
            "invalid_value",
            f"'{event['type']}' is only supported by the /v1/realtime/translations endpoint.",
            "type",
        )

    _on_session_input_audio_buffer_append = _on_session_close

    # ---- conversation items -----------------------------------------------------------

    def _content_check(self) -> Check:
        text = Obj({"type": anything(), "text": string()}, ("text",))
        audio_in = Obj({"type": anything(), "audio": string(), "transcript": nullable(string())})
        variants: dict[str, Check] = {"input_text": text, "input_audio": audio_in}
        if self.protocol == "ga":
            variants |= {
                "input_image": Obj(
                    {
                        "type": anything(),
                        "image_url": string(),
                        "detail": enum("auto", "low", "high"),
                    }
                ),
                "output_text": text,
                # Not valid for any role in GA; accepted here so the role check below gives
                # the live, role-specific refusal.
                "text": text,
                "output_audio": Obj(
                    {"type": anything(), "audio": string(), "transcript": nullable(string())}
                ),
            }
        else:
            variants |= {
                "text": text,
                "audio": Obj(
                    {"type": anything(), "audio": string(), "transcript": nullable(string())}
                ),
                "item_reference": Obj({"type": anything(), "id": string()}, ("id",)),
            }
        return tagged("type", variants)

    def _item_check(self, *, references: bool = False) -> Check:
        common: dict[str, Check] = {
            "id": string(max_length=64),
            "type": anything(),
            "object": enum("realtime.item"),
            "status": enum("completed", "incomplete", "in_progress"),
        }
        message = Obj(
            common
            | {
                "role": enum("user", "assistant", "system"),
                "content": array(self._content_check()),
            },
            ("role", "content"),
        )
        function_call = Obj(
            common | {"call_id": string(), "name": string(), "arguments": string()},
            ("name", "arguments"),
        )
        output = Obj(common | {"call_id": string(), "output": string()}, ("call_id", "output"))
        variants: dict[str, Check] = {
            "message": message,
            "function_call": function_call,
            "function_call_output": output,
        }
        if references:
            variants["item_reference"] = Obj({"type": anything(), "id": string()}, ("id",))
        union = tagged("type", variants)

        def check(value: Any, path: str) -> Any:
            item = union(value, path)
            if item["type"] == "message":
                self._check_roles(item, path)
            return item

        return check

    def _check_roles(self, item: dict[str, Any], path: str) -> None:
        role = item["role"]
        for index, part in enumerate(item["content"]):
            kind = part["type"]
            where = f"{path}.content[{index}].type"
            if role == "user" and kind not in (
                "input_text",
                "input_audio",
                "input_image",
                "item_reference",
            ):
                raise ClientError(
                    "invalid_value",
                    f"Invalid value: '{kind}'. Supported values are: 'input_text' and 'input_audio'.",
                    where,
                )
            if role == "system" and kind != "input_text":
                raise ClientError(
                    "invalid_value", f"Invalid value: '{kind}'. Value must be 'input_text'.", where
                )
            assistant_kind = "output_text" if self.protocol == "ga" else "text"
            if role == "assistant" and kind != assistant_kind:
                raise ClientError(
                    "invalid_value",
                    f"Invalid value: '{kind}'. Value must be '{assistant_kind}'.",
                    where,
                )

    def _on_conversation_item_create(self, event: dict[str, Any]) -> None:
        fields = self._fields(
            event,
            {"previous_item_id": nullable(string()), "item": self._item_check()},
            ("item",),
        )
        item = dict(fields["item"])
        previous = fields.get("previous_item_id")
        if previous is not None and previous != "root" and previous not in self._items:
            raise ClientError(
                "invalid_value",
                f"Error adding item: the previous item with id '{previous}' does not exist.",
                "previous_item_id",
            )
        if "id" in item and item["id"] in self._items:
            raise ClientError(
                "item_create_duplicate_item_id",
                f"Error adding item: an item with id '{item['id']}' already exists.",
            )
        if item["type"] == "function_call_output" and not any(
            other.get("type") == "function_call" and other.get("call_id") == item["call_id"]
            for other in self._items.values()
        ):
            raise ClientError(
                "invalid_value",
                f"No tool call found for function call output with call_id {item['call_id']}.",
                "item.call_id",
            )
        # Accepted: normalise to the server's stored shape.
        item.setdefault("id", self.ids.new("item"))
        item.pop("object", None)
        item["status"] = "completed"
        if item["type"] == "function_call":
            item.setdefault("call_id", self.ids.new("call"))
        if item["type"] == "message":
            content = []
            for index, part in enumerate(item["content"]):
                part = dict(part)
                if part["type"] == "input_audio":
                    try:
                        audio = b64decode(part.pop("audio", "") or "")
                    except ValueError:
                        raise ClientError(
                            "invalid_value",
                            "Invalid 'audio'. Expected base64-encoded audio bytes.",
                            f"item.content[{index}].audio",
                        ) from None
                    self._audio[(item["id"], index)] = audio
                    part.setdefault("transcript", None)
                content.append(part)
            item["content"] = content
        if previous is None:
            previous = self._order[-1] if self._order else None
        self._insert(item, previous)
        self._announce_item(item, None if previous == "root" else previous)

    def _insert(self, item: dict[str, Any], previous: str | None) -> None:
        if previous is None or previous == "root":
            index = 0 if previous == "root" else len(self._order)
        else:
            index = self._order.index(previous) + 1
        self._order.insert(index, item["id"])
        self._items[item["id"]] = item

    def _announce_item(self, item: dict[str, Any], previous: str | None) -> None:
        wire = self.wire_item(item, in_conversation=True)
        if self.protocol == "ga":
            self.emit("conversation.item.added", previous_item_id=previous, item=wire)
            self.emit("conversation.item.done", previous_item_id=previous, item=copy.deepcopy(wire))
        else:
            self.emit("conversation.item.created", previous_item_id=previous, item=wire)

    def wire_item(
        self, item: dict[str, Any], *, in_conversation: bool, with_audio: bool = False
    ) -> dict[str, Any]:
        """An item as this protocol shows it: GA omits `object` in conversation events; beta
        names assistant content `text` / `audio`."""
        wire: dict[str, Any] = {"id": item["id"]}
        if self.protocol == "beta" or not in_conversation:
            wire["object"] = "realtime.item"
        for key, value in item.items():
            if key == "id" or key.startswith("_"):
                continue
            if key == "content":
                parts = []
                for index, part in enumerate(value):
                    part = dict(part)
                    if self.protocol == "beta":
                        part["type"] = {"output_text": "text", "output_audio": "audio"}.get(
                            part["type"], part["type"]
                        )
                    if with_audio and (item["id"], index) in self._audio:
                        part["audio"] = b64encode(self._audio[(item["id"], index)])
                    parts.append(part)
                wire["content"] = parts
            else:
                wire[key] = copy.deepcopy(value)
        return wire

    def _on_conversation_item_retrieve(self, event: dict[str, Any]) -> None:
        item_id = self._fields(event, {"item_id": string()}, ("item_id",))["item_id"]
        item = self._item_or_error(item_id, "retrieve")
        self.emit(
            "conversation.item.retrieved",
            item=self.wire_item(item, in_conversation=False, with_audio=True),
        )

    def _on_conversation_item_delete(self, event: dict[str, Any]) -> None:
        item_id = self._fields(event, {"item_id": string()}, ("item_id",))["item_id"]
        self._item_or_error(item_id, "delete")
        self._order.remove(item_id)
        self._items.pop(item_id)
        # By key, not by content: a reply item still streaming has audio but no content yet.
        for key in [key for key in self._audio if key[0] == item_id]:
            del self._audio[key]
        self.emit("conversation.item.deleted", item_id=item_id)

    _ITEM_VERBS = {"retrieve": "retrieving", "delete": "deleting", "truncate": "truncating"}

    def _item_or_error(self, item_id: str, action: str) -> dict[str, Any]:
        """The item, or the live error for an unknown id: a code per action
        (`item_retrieve_invalid_item_id` ...) and no `param`. pipecat matches on the retrieve
        code to fail its pending retrieve."""
        item = self._items.get(item_id)
        if item is None:
            raise ClientError(
                f"item_{action}_invalid_item_id",
                f"Error {self._ITEM_VERBS[action]} item: the item with id '{item_id}' does not "
                "exist.",
            )
        return item

    def _on_conversation_item_truncate(self, event: dict[str, Any]) -> None:
        fields = self._fields(
            event,
            {"item_id": string(), "content_index": integer(0), "audio_end_ms": integer(0)},
            ("item_id", "content_index", "audio_end_ms"),
        )
        item_id, index, end_ms = fields["item_id"], fields["content_index"], fields["audio_end_ms"]
        item = self._item_or_error(item_id, "truncate")
        # Audio the model has produced for this item so far: the live server truncates an item
        # that is still streaming too (only audio not yet sent is out of reach). An item with
        # no model audio at all, a user item or one interrupted before its first audio delta,
        # is refused as a whole.
        audio = self._audio.get((item_id, index))
        if item.get("type") != "message" or item.get("role") != "assistant" or not any(
            key[0] == item_id for key in self._audio
        ):
            raise ClientError(
                "unsupported_content_type", "Only model output audio messages can be truncated"
            )
        if audio is None:
            raise ClientError(
                "invalid_value",
                f"Invalid 'content_index': no audio content at index {index}.",
                "content_index",
            )
        out_format = item.get("_format", "pcm16")
        bytes_per_ms = cfg.BYTES_PER_MS[out_format]
        held_ms = len(audio) / bytes_per_ms
        if end_ms > held_ms:
            raise ClientError(
                "invalid_value",
                f"Audio content of {int(held_ms)}ms is already shorter than {end_ms}ms",
                "audio_end_ms",
            )
        cut = int(end_ms * bytes_per_ms)
        self._audio[(item_id, index)] = audio[: cut - cut % 2 if out_format == "pcm16" else cut]
        # A streaming item keeps what was heard: later deltas still go out (nothing cancelled
        # the response) but no longer enter the conversation, nor does their transcript.
        item["_truncated"] = True
        content = item["content"]
        if index < len(content):
            content[index]["transcript"] = ""
        self.emit(
            "conversation.item.truncated", item_id=item_id, content_index=index, audio_end_ms=end_ms
        )

    # ---- responses --------------------------------------------------------------------

    def _on_response_create(self, event: dict[str, Any]) -> None:
        fields = self._fields(
            event,
            {"response": cfg.response_schema(self.protocol, self._item_check(references=True))},
        )
        overrides = dict(fields.get("response") or {})
        conversation = overrides.get("conversation", "auto")
        if conversation not in ("auto", "none"):
            raise ClientError(
                "invalid_value",
                f"Invalid value: '{conversation}'. Supported values are: 'auto' and 'none'.",
                "response.conversation",
            )
        if self.transcription:
            raise ClientError(
                "invalid_value",
                "Responses are not supported in transcription sessions.",
                "type",
            )
        for reference in overrides.get("input", []):
            if reference["type"] == "item_reference" and reference["id"] not in self._items:
                raise ClientError(
                    "invalid_value",
                    f"Error creating response: the item with id '{reference['id']}' does not exist.",
                    "response.input",
                )
        if conversation == "auto" and self.active is not None:
            raise ClientError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self.active.id}. "
                "Wait until the response is finished before creating a new one.",
            )
        self.create_response(overrides)

    def create_response(self, overrides: dict[str, Any]) -> ResponseState:
        conversation = overrides.get("conversation", "auto")
        effective = cfg.effective(self.protocol, self.session, overrides)
        if "input" in overrides:
            items = [
                self._items[i["id"]] if i["type"] == "item_reference" else i
                for i in overrides["input"]
            ]
        else:
            items = [self._items[i] for i in self._order]
        items = [
            {k: copy.deepcopy(v) for k, v in item.items() if not k.startswith("_")}
            for item in items
        ]
        bytes_per_ms = cfg.BYTES_PER_MS[self.input_format]
        audio_ms = {
            item_id: len(audio) / bytes_per_ms
            for (item_id, _), audio in self._audio.items()
            if self._items.get(item_id, {}).get("role") == "user"
        }
        response_id = self.ids.new("resp")
        context = ResponseContext(
            response_id=response_id,
            items=items,
            instructions=effective.instructions,
            tools=list(effective.tools),
            tool_choice=effective.tool_choice,
            audio_output=effective.audio_output,
            metadata=overrides.get("metadata"),
            conversation=conversation,
            protocol=self.protocol,
            audio_ms=audio_ms,
            session_id=self.session_id,
        )
        text_chars = sum(
            len(part.get("text") or part.get("transcript") or "")
            for item in items
            for part in item.get("content", [])
        ) + len(effective.instructions)
        input_tokens = math.ceil(text_chars / 4) + math.ceil(sum(audio_ms.values()) / 100)
        response = ResponseState(
            id=response_id,
            conversation=conversation,
            metadata=overrides.get("metadata"),
            overrides=overrides,
            effective=effective,
            context=context,
            input_tokens=input_tokens,
        )
        if conversation == "auto":
            self.active = response
        else:
            self.out_of_band[response_id] = response
        self.stats.responses += 1
        self.emit("response.created", response=self._response_object(response))
        self._new_responses.append(response)
        return response

    def _response_object(self, response: ResponseState) -> dict[str, Any]:
        eff = response.effective
        obj: dict[str, Any] = {
            "object": "realtime.response",
            "id": response.id,
            "status": response.status,
            "status_details": copy.deepcopy(response.status_details),
            "output": [self.wire_item(i, in_conversation=True) for i in response.output]
            if response.done
            else [],
            "conversation_id": self.conversation_id if response.conversation == "auto" else None,
        }
        if self.protocol == "ga":
            obj["output_modalities"] = ["audio"] if eff.audio_output else ["text"]
            obj["max_output_tokens"] = eff.max_output_tokens
            obj["audio"] = {
                "output": {"format": cfg.format_to_ga(eff.output_format), "voice": eff.voice}
            }
        else:
            obj["modalities"] = ["text", "audio"] if eff.audio_output else ["text"]
            obj["voice"] = eff.voice
            obj["output_audio_format"] = eff.output_format
            obj["temperature"] = response.overrides.get(
                "temperature", self.session.get("temperature", 0.8)
            )
            obj["max_output_tokens"] = eff.max_output_tokens
        obj["usage"] = self._usage(response) if response.done else None
        obj["metadata"] = response.metadata
        return obj

    def enforce_token_limit(self, response: ResponseState) -> bool:
        """End the response as `incomplete` once it has produced `max_output_tokens`
        (text: 4 characters a token; audio: 50 ms a token). True when it ended."""
        limit = response.effective.max_output_tokens
        if response.done or not isinstance(limit, int):
            return response.done
        produced = math.ceil(response.output_text_chars / 4) + math.ceil(
            response.output_audio_ms / 50
        )
        if produced < limit:
            return False
        self.finish_response(
            response, "incomplete", {"type": "incomplete", "reason": "max_output_tokens"}
        )
        return True

    def _usage(self, response: ResponseState) -> dict[str, Any]:
        text_out = math.ceil(response.output_text_chars / 4)
        audio_out = math.ceil(response.output_audio_ms / 50)
        text_in = response.input_tokens
        details_in: dict[str, Any] = {"text_tokens": text_in, "audio_tokens": 0}
        cached: dict[str, Any] = {"text_tokens": 0, "audio_tokens": 0}
        if self.protocol == "ga":
            details_in["image_tokens"] = 0
            cached["image_tokens"] = 0
        details_in["cached_tokens"] = 0
        details_in["cached_tokens_details"] = cached
        return {
            "total_tokens": text_in + text_out + audio_out,
            "input_tokens": text_in,
            "output_tokens": text_out + audio_out,
            "input_token_details": details_in,
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        }

    def _rate_limits(self, response: ResponseState) -> None:
        usage = self._usage(response)
        self._tokens_used += usage["total_tokens"]
        tokens = {
            "name": "tokens",
            "limit": RATE_LIMIT_TOKENS,
            "remaining": max(0, RATE_LIMIT_TOKENS - self._tokens_used),
            "reset_seconds": round(60 * self._tokens_used / RATE_LIMIT_TOKENS, 3),
        }
        if self.protocol == "ga":
            self.emit("rate_limits.updated", rate_limits=[tokens])
        else:
            requests = {
                "name": "requests",
                "limit": 5000,
                "remaining": 4999,
                "reset_seconds": 0.012,
            }
            self.emit("rate_limits.updated", rate_limits=[requests, tokens])

    def _beta_rate_limits_once(self, response: ResponseState) -> None:
        # Beta sent rate_limits.updated near the end, before the `.done` cascade (2025 trace).
        if self.protocol == "beta" and not response.beta_rate_limits_sent:
            response.beta_rate_limits_sent = True
            self._rate_limits(response)

    def _on_response_cancel(self, event: dict[str, Any]) -> None:
        fields = self._fields(event, {"response_id": string()})
        wanted = fields.get("response_id")
        if wanted is None or self.active is not None and self.active.id == wanted:
            target = self.active
        else:
            target = self.out_of_band.get(wanted)
        if target is None or target.done:
            raise ClientError(
                "response_cancel_not_active", "Cancellation failed: no active response found"
            )
        self.cancel_response(target, "client_cancelled")

    def cancel_response(self, response: ResponseState, reason: str) -> None:
        if response.done:
            return
        if response.open_item is not None:
            self.close_message(response, status="incomplete")
        self.finish_response(response, "cancelled", {"type": "cancelled", "reason": reason})

    # -- the response cascade, step by step (called by `stream_response`) --

    def _item_added(self, response: ResponseState, item: dict[str, Any]) -> None:
        output_index = len(response.output)
        response.output.append(item)
        self.emit(
            "response.output_item.added",
            response_id=response.id,
            output_index=output_index,
            item=self.wire_item(item, in_conversation=False),
        )
        if response.conversation == "auto":
            previous = self._order[-1] if self._order else None
            self._insert(item, previous)
            name = (
                "conversation.item.added" if self.protocol == "ga" else "conversation.item.created"
            )
            self.emit(
                name, previous_item_id=previous, item=self.wire_item(item, in_conversation=True)
            )
            item["_previous"] = previous

    def _item_done(self, response: ResponseState, item: dict[str, Any]) -> None:
        previous = item.pop("_previous", None)
        if response.conversation == "auto" and self.protocol == "ga" and item["id"] in self._items:
            self.emit(
                "conversation.item.done",
                previous_item_id=previous,
                item=self.wire_item(item, in_conversation=True),
            )
        self.emit(
            "response.output_item.done",
            response_id=response.id,
            output_index=response.output.index(item),
            item=self.wire_item(item, in_conversation=False),
        )

    def _part_ids(self, response: ResponseState) -> dict[str, Any]:
        item = response.open_item
        assert item is not None
        return {
            "response_id": response.id,
            "item_id": item["id"],
            "output_index": response.output.index(item),
            "content_index": 0,
        }

    def open_message(self, response: ResponseState) -> None:
        if response.done or response.open_item is not None:
            return
        kind = "audio" if response.effective.audio_output else "text"
        item: dict[str, Any] = {
            "id": self.ids.new("item"),
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        response.open_item, response.open_kind = item, kind
        response.open_text, response.open_audio_ms = [], 0.0
        self._item_added(response, item)
        part = (
            {"type": "audio", "transcript": ""} if kind == "audio" else {"type": "text", "text": ""}
        )
        self.emit("response.content_part.added", **self._part_ids(response), part=part)

    def _obfuscation(self) -> dict[str, str]:
        return {"obfuscation": self.ids.token(12)} if self.protocol == "ga" else {}

    def text_delta(self, response: ResponseState, delta: str) -> None:
        """Written text (text output) or the transcript of spoken audio (audio output)."""
        if response.done or not delta:
            return
        self.open_message(response)
        response.open_text.append(delta)
        response.output_text_chars += len(delta)
        if response.open_kind == "text":
            name = "response.output_text.delta" if self.protocol == "ga" else "response.text.delta"
        else:
            name = (
                "response.output_audio_transcript.delta"
                if self.protocol == "ga"
                else "response.audio_transcript.delta"
            )
        self.emit(name, **self._part_ids(response), delta=delta, **self._obfuscation())

    def audio_delta(self, response: ResponseState, audio: bytes) -> None:
        """Audio already in the response's output format."""
        if response.done or not audio:
            return
        self.open_message(response)
        item = response.open_item
        assert item is not None
        fmt = response.effective.output_format
        ms = len(audio) / cfg.BYTES_PER_MS[fmt]
        response.open_audio_ms += ms
        response.output_audio_ms += ms
        self.stats.output_audio_bytes += len(audio)
        # Truncated or deleted while streaming: the rest is sent, not kept (see truncate).
        if (
            response.conversation == "auto"
            and not item.get("_truncated")
            and item["id"] in self._items
        ):
            key = (item["id"], 0)
            held = self._audio.get(key)
            if isinstance(held, bytearray):
                held += audio  # in place: a reply's audio is not copied again for each delta
            else:
                self._audio[key] = bytearray(held or b"") + audio
            self._voice_locked = True
            item["_format"] = fmt
        name = "response.output_audio.delta" if self.protocol == "ga" else "response.audio.delta"
        self.emit(
            name,
            **self._part_ids(response),
            delta=b64encode(audio),
            **self._obfuscation(),
        )

    def close_message(self, response: ResponseState, *, status: str = "completed") -> None:
        item = response.open_item
        if item is None:
            return
        self._beta_rate_limits_once(response)
        ids = self._part_ids(response)
        text = "".join(response.open_text)
        if response.open_kind == "text":
            name = "response.output_text.done" if self.protocol == "ga" else "response.text.done"
            self.emit(name, **ids, text=text)
            part: dict[str, Any] = {"type": "text", "text": text}
            item["content"] = [{"type": "output_text", "text": text}]
        else:
            audio_done = (
                "response.output_audio.done" if self.protocol == "ga" else "response.audio.done"
            )
            transcript_done = (
                "response.output_audio_transcript.done"
                if self.protocol == "ga"
                else "response.audio_transcript.done"
            )
            self.emit(audio_done, **ids)
            self.emit(transcript_done, **ids, transcript=text)
            part = {"type": "audio", "transcript": text}
            # Truncated while streaming: the conversation keeps no transcript (see truncate).
            heard = "" if item.get("_truncated") else text
            item["content"] = [{"type": "output_audio", "transcript": heard}]
        self.emit("response.content_part.done", **ids, part=part)
        item["status"] = status
        self._item_done(response, item)
        response.open_item, response.open_kind = None, None

    def function_call(self, response: ResponseState, call: FunctionCall, chunk: int = 24) -> None:
        if response.done:
            return
        self.close_message(response)
        item: dict[str, Any] = {
            "id": self.ids.new("item"),
            "type": "function_call",
            "status": "in_progress",
            "name": call.name,
            "call_id": call.call_id or self.ids.new("call"),
            "arguments": "",
        }
        self._item_added(response, item)
        arguments = call.arguments_json
        ids = {
            "response_id": response.id,
            "item_id": item["id"],
            "output_index": response.output.index(item),
            "call_id": item["call_id"],
        }
        for start in range(0, len(arguments), chunk):
            self.emit(
                "response.function_call_arguments.delta",
                **ids,
                delta=arguments[start : start + chunk],
                **self._obfuscation(),
            )
        self._beta_rate_limits_once(response)
        done_fields: dict[str, Any] = dict(ids)
        if self.protocol == "ga":
            done_fields["name"] = call.name
        self.emit("response.function_call_arguments.done", **done_fields, arguments=arguments)
        item["arguments"] = arguments
        item["status"] = "completed"
        response.output_text_chars += len(arguments)
        self._item_done(response, item)

    def finish_response(
        self,
        response: ResponseState,
        status: str = "completed",
        details: dict[str, Any] | None = None,
    ) -> None:
        if response.done:
            return
        if response.open_item is not None:
            self.close_message(
                response, status="completed" if status == "completed" else "incomplete"
            )
        self._beta_rate_limits_once(response)
        response.status, response.status_details = status, details
        if self.active is response:
            self.active = None
        self.out_of_band.pop(response.id, None)
        if response.conversation == "auto":
            self._arm_idle_timeout(response)
        self.emit("response.done", response=self._response_object(response))
        if self.protocol == "ga":
            self._rate_limits(response)

    def fail_response(self, response: ResponseState, message: str) -> None:
        self.emit(
            "error",
            error={
                "type": "server_error",
                "code": None,
                "message": message,
                "param": None,
                "event_id": None,
            },
        )
        self.finish_response(
            response, "failed", {"type": "failed", "error": {"type": "server_error", "code": None}}
        )


# ---- streaming a response ------------------------------------------------------------------


class ConnectionFault(Exception):
    """A responder asked the server to end the connection (`Close` or `Drop`)."""

    def __init__(self, part: Close | Drop) -> None:
        super().__init__(repr(part))
        self.part = part


Flush = Callable[[], Awaitable[None]]


async def stream_response(
    session: ServerSession,
    response: ResponseState,
    responder: Responder | None,
    *,
    flush: Flush,
    sleep: Callable[[float], Awaitable[None]],
    realtime: bool,
    synthesizer: Synthesizer = buzz,
) -> None:
    """Turn a responder's parts into the response's event cascade. ``flush`` hands the queued
    events to the writer (and waits when it is behind); ``sleep`` is the pacing clock;
    ``synthesizer`` speaks `Text` parts. A response cancelled meanwhile (client cancel,
    barge-in) just stops producing."""
    responder = responder or default_responder
    chunk_ms = session.audio_chunk_ms
    parts = iterate_parts(responder(response.context))
    try:
        async for part in parts:
            if response.done:
                break
            if isinstance(part, Delay):
                await flush()
                await sleep(part.seconds)
            elif isinstance(part, Text):
                if response.effective.audio_output:
                    voice = response.effective.voice
                    voice = voice if isinstance(voice, str) else "alloy"
                    if synthesizer is buzz:
                        speech = buzz(part.text, voice)
                    else:  # a program or a model: off the event loop
                        speech = await anyio.to_thread.run_sync(synthesizer, part.text, voice)
                    if response.done:
                        break
                    await _speak(
                        session,
                        response,
                        speech.pcm,
                        speech.words,
                        speech.word_starts_ms,
                        chunk_ms,
                        flush,
                        sleep,
                        realtime,
                    )
                else:
                    written = part.text.split(" ")
                    for index, word in enumerate(written):
                        last = index == len(written) - 1
                        session.text_delta(response, word + ("" if last else " "))
                        if session.enforce_token_limit(response):
                            break
                        # Deltas stream one by one, as from the real server, not as one burst.
                        await flush()
            elif isinstance(part, Audio):
                if response.effective.audio_output:
                    words = tuple(part.transcript.split())
                    total_ms = len(part.pcm) / 48
                    starts = tuple(total_ms * i / max(1, len(words)) for i in range(len(words)))
                    await _speak(
                        session, response, part.pcm, words, starts, chunk_ms, flush, sleep, realtime
                    )
                elif part.transcript:
                    session.text_delta(response, part.transcript)
            elif isinstance(part, FunctionCall):
                session.function_call(response, part)
            elif isinstance(part, ServerError):
                session.fail_response(response, part.message)
            elif isinstance(part, (Close, Drop)):
                await flush()
                raise ConnectionFault(part)
            await flush()
        session.finish_response(response)
    finally:
        with anyio.CancelScope(shield=True):
            await parts.aclose()
        await flush()


async def _speak(
    session: ServerSession,
    response: ResponseState,
    pcm: bytes,
    words: tuple[str, ...],
    word_starts_ms: tuple[float, ...],
    chunk_ms: int,
    flush: Flush,
    sleep: Callable[[float], Awaitable[None]],
    realtime: bool,
) -> None:
    from realtalk.simulator._audio_io import encode_output

    fmt = response.effective.output_format
    audio = encode_output(fmt, pcm)
    bytes_per_ms = cfg.BYTES_PER_MS[fmt]
    chunk_bytes = bytes_per_ms * chunk_ms
    next_word = 0
    for start in range(0, len(audio), chunk_bytes):
        if response.done:
            return
        chunk = audio[start : start + chunk_bytes]
        end_ms = (start + len(chunk)) / bytes_per_ms
        pieces = []
        while next_word < len(words) and word_starts_ms[next_word] < end_ms:
            pieces.append(words[next_word] + (" " if next_word < len(words) - 1 else ""))
            next_word += 1
        if pieces:
            session.text_delta(response, "".join(pieces))
        session.audio_delta(response, chunk)
        session.enforce_token_limit(response)
        await flush()
        if realtime:
            await sleep(len(chunk) / bytes_per_ms / 1000)
    if next_word < len(words) and not response.done:
        session.text_delta(response, " ".join(words[next_word:]))
