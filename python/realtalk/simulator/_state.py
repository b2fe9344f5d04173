"""The one state of a simulated connection, which every section of the session reads and
changes: the session config, the conversation, the input buffer and its clock, the responses,
and the queue of server events not yet drained."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from typing import Protocol as TypingProtocol

from realtalk.simulator import _config as cfg
from realtalk.simulator._ids import IdFactory
from realtalk.simulator._protocol import ProtocolAdapter
from realtalk.simulator.responder import ResponseContext

Event = dict[str, Any]


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
    input_tokens: int = 0  # text (instructions and the items' text and transcripts)
    input_audio_tokens: int = 0
    cached_tokens: tuple[int, int] = (0, 0)  # (text, audio): the prefix the last one read
    beta_rate_limits_sent: bool = False

    @property
    def done(self) -> bool:
        return self.status != "in_progress"


class SessionState:
    """One connection's state. The sections change it; only `emit` queues output."""

    def __init__(
        self,
        *,
        adapter: ProtocolAdapter,
        model: str,
        intent: str,
        ids: IdFactory,
        now: Callable[[], float],
        max_session_s: float,
        vad_factory: VadFactory | None,
        audio_chunk_ms: int,
    ) -> None:
        self.adapter = adapter
        self.protocol = adapter.name
        self.model = model
        self.intent = intent
        self.transcription = intent == "transcription"
        self.ids = ids
        self.now = now
        self.vad_factory = vad_factory
        self.audio_chunk_ms = audio_chunk_ms
        self.session_id = ids.new("sess")
        self.conversation_id = ids.new("conv")
        self.created_at = now()
        # The session config, exactly as it goes on the wire for this protocol.
        self.config = adapter.default_session(
            self.session_id,
            model,
            int(self.created_at + max_session_s),
            transcription=self.transcription,
        )
        self.outbox: list[Event] = []
        self.stats = SessionStats()
        # conversation: item ids in order, items by id, audio by (item id, content index)
        self.order: list[str] = []
        self.items: dict[str, dict[str, Any]] = {}
        self.audio: dict[tuple[str, int], bytes | bytearray] = {}
        self.voice_locked = False  # assistant audio is present: the voice is fixed
        # input buffer and its clock (ms since the first appended sample)
        self.buffer = bytearray()
        self.buffer_start_ms = 0.0
        self.clock_ms = 0.0
        self.vad: VadLike | None = None
        self.vad_origin_ms = 0.0
        self.speech_item_id: str | None = None
        self.speech_start_ms = 0.0
        # server_vad idle_timeout_ms: armed at response.done (plus its audio's playback).
        self.idle_from_ms: float | None = None
        # responses
        self.active: ResponseState | None = None
        self.out_of_band: dict[str, ResponseState] = {}
        self.new_responses: list[ResponseState] = []
        self.tokens_used = 0
        # The (text, audio) input tokens of the last in-conversation response: the next one
        # reads the same prefix again, which the prompt cache serves.
        self.prompt_cache: tuple[int, int] = (0, 0)
        # A SIP call's sideband: the server plays the audio out itself, so the client may
        # clear it (output_audio_buffer.clear); last_response_id is whose audio that is.
        self.sideband = False
        self.last_response_id: str | None = None
        self.responder_state: dict[Any, Any] = {}  # `ResponseContext.session_state`
        self.refresh_view()

    def emit(self, type_: str, **fields: Any) -> None:
        event: Event = {"type": type_, "event_id": self.ids.new("event")}
        event.update(fields)
        self.outbox.append(event)

    # ---- the input-side view of the config ----------------------------------------------

    def refresh_view(self) -> None:
        # Every config change passes here: the input-side facts the append path reads, looked
        # up once per change instead of once per 20 ms frame.
        self.view = self.adapter.session_view(self.config)
        self.input_bytes_per_ms = cfg.BYTES_PER_MS[self.view["input_format"]]
        turn = self.turn_detection or {}
        # Between turns only the prefix padding (and a margin) can still become part of an item.
        self.keep_between_turns_ms = float(turn.get("prefix_padding_ms", 300)) + 200

    @property
    def input_format(self) -> str:
        return str(self.view["input_format"])

    @property
    def turn_detection(self) -> dict[str, Any] | None:
        value = self.view["turn_detection"]
        return value if isinstance(value, dict) else None
