"""RealtimeClient: the session layer voice agents are written against.

One client owns one task group (nothing outlives its ``async with``) in which a supervisor task
(``_connection_supervisor``) owns the connection: it connects, pushes the session config and
tools, runs one reader and one writer task per connection, and on a retryable close
(``_supervision.ReconnectPolicy``) reconnects with jittered backoff, replays the
conversation's history (messages as text, tool calls and their outputs), then the user-level
events the old connection never confirmed (``_delivery``: each replayed once, else reported
lost), then what was still queued and the audio appended during the outage. What a loss
means for responses, item requests and the conversation stays here (``_on_connection_lost``).
Event and item ids are minted in ``_ids``.

Nothing the server sends ends the session: a frame that cannot be decoded or applied is one
``error`` event (``invalid_server_event``), a refused follow-up after tool calls is one
``error`` event. User message content is encoded by ``_content``; the one-at-a-time response
slot, tool runs and their follow-up live in ``_responses``.

Hot paths: microphone frames from the loop's thread become wire messages in one Rust call
(``Uplink.encode``); from any other thread (an audio callback) they are copied into a bounded
hand-off queue and the loop is woken without waiting for it, and the loop encodes them. Audio
deltas go from the wire into ``playback`` in one Rust call (``Downlink.decode``) without a JSON
parse. Everything else is parsed into GA-named dicts and applied to the ``conversation``.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import inspect
import math
import os
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
import msgspec
import numpy as np
import numpy.typing as npt

from realtalk import _telemetry, _transcripts
from realtalk import audio as _audio
from realtalk import events as _events
from realtalk._barge_in import BargeIn, BargeInPolicy, check_position, resolve_cut
from realtalk._content import decode_wire_audio, mono_float, user_content_part
from realtalk.events._beta import SERVER_TYPES_FROM_BETA
from realtalk.events._codec import parse_server_event_dict
from realtalk._connection_supervisor import ConnectionSupervisor
from realtalk._delivery import Delivery, DeliveryLedger
from realtalk._ids import new_event_id as _new_event_id
from realtalk._ids import new_item_id as _new_item_id
# The response errors are re-exported: RealtimeClient's methods raise them.
from realtalk._responses import RequestRefused as RequestRefused
from realtalk._responses import ResponseBusy as ResponseBusy
from realtalk._responses import ResponseRefused as ResponseRefused
from realtalk._responses import (
    ResponseSlot,
    function_calls,
    is_out_of_band,
    run_tool_calls,
)
# RETRYABLE_CLOSE_CODES is re-exported: it lived here before the policy had its module.
from realtalk._supervision import RETRYABLE_CLOSE_CODES as RETRYABLE_CLOSE_CODES
from realtalk._transcripts import Transcript as Transcript
from realtalk._uplink import (
    HANDOFF_FULL,
    HANDOFF_NOT_TAKEN,
    HANDOFF_QUEUED,
    HANDOFF_QUEUED_WAKE,
    HANDOFF_TOO_LARGE,
    OutageBuffer,
    new_frame_handoff,
)
from realtalk.usage import Prices, RateLimit, Usage
from realtalk.conversation import Change, Conversation, Item
from realtalk.errors import (
    ConnectionClosed,
    RealtalkError,
    Timeout,
)
from realtalk._echo import DEFAULT_DELAY_MS as DEFAULT_ECHO_DELAY_MS, EchoCancel
from realtalk.recorder import SessionRecorder, start_recording, stop_recording
from realtalk.tools import ToolHandler, ToolRegistry

__all__ = [
    "ClientEvent",
    "ClientMetrics",
    "EventStream",
    "InputBackpressure",
    "Link",
    "NOTIFICATION_TYPES",
    "Notification",
    "RealtimeClient",
    "RequestRefused",
    "ResponseBusy",
    "ResponseRefused",
    "Transcript",
    "TurnMetrics",
]

# Server error codes that say nothing went wrong for the user (protocol.md §8).
BENIGN_ERROR_CODES = frozenset(
    {
        "conversation_already_has_active_response",
        "response_cancel_not_active",
        "input_audio_buffer_commit_empty",
    }
)

_FORMATS = {"audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw", "audio/pcma": "g711_alaw"}
_MIN_COMMIT_MS = 100


class Link(Protocol):
    """One WebSocket connection as the client needs it: whole text messages both ways
    (``realtalk.transport.WebSocket`` is one). A link that also has ``consume(handler)``
    (calls ``handler(data, is_text)`` per message, raises when the connection ends) is read
    through it."""

    async def send_text(self, message: str | bytes) -> None:
        """Send one whole text message."""

    async def receive_raw(self) -> tuple[bytes, bool]:
        """The next message's payload (UTF-8 for text) and whether it was a text frame."""
        ...


ConnectFactory = Callable[[], AbstractAsyncContextManager[Link]]


@dataclass(eq=False)
class _ItemRequest:
    """A ``conversation.item.retrieve``/``.delete`` awaiting its answer: the item (retrieve),
    the server's error, or the connection's end."""

    kind: str  # the answer's type: conversation.item.retrieved | conversation.item.deleted
    item_id: str
    event_id: str
    answered: anyio.Event = field(default_factory=anyio.Event)
    item: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    lost: BaseException | None = None


class InputBackpressure(RealtalkError):
    """``append_input_audio`` could not queue a frame: the uplink is full. Nothing was queued."""


@dataclass(frozen=True, slots=True)
class Notification:
    """What ``on()`` handlers and ``events()`` receive: a name and its fields. (Not a wire
    event: those are ``realtalk.events.ClientEvent`` / ``ServerEvent``.)"""

    type: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        """The field `key`, or `default` when the notification has none."""
        return self.data.get(key, default)


# The name this type had before it clashed with realtalk.events.ClientEvent; kept for old code.
ClientEvent = Notification


@dataclass
class TurnMetrics:
    """Latencies of one response, in seconds (None when the turn had no such moment); the
    first delta is the reply's first audio. ``request_to_first_delta_s`` is measured for the
    responses this client asked for (``response.create``). Exported as OpenTelemetry
    histograms when ``opentelemetry-api`` is installed (``realtalk._telemetry``)."""

    response_id: str | None = None
    speech_end_to_first_delta_s: float | None = None
    request_to_first_delta_s: float | None = None
    first_delta_to_first_audible_s: float | None = None
    tool_run_s: list[float] = field(default_factory=list)
    _speech_end: float | None = field(default=None, repr=False)
    _requested: float | None = field(default=None, repr=False)
    _first_delta: float | None = field(default=None, repr=False)
    _first_item: str | None = field(default=None, repr=False)


@dataclass
class ClientMetrics:
    turns: deque[TurnMetrics] = field(default_factory=lambda: deque(maxlen=256))
    reconnects: int = 0
    input_frames_refused: int = 0
    outage_audio_dropped_ms: float = 0.0
    events_dropped: int = 0
    playback_dropped_samples: int = 0
    # report_playback calls refused for going backwards (the furthest position stays).
    playback_reports_refused: int = 0
    # Server frames that could not be decoded or applied (each reported as an error event).
    invalid_server_events: int = 0
    # User-level events written, unconfirmed when the connection dropped, and sent again on
    # the next one; and those given up on (each reported in a client_event_lost error).
    client_events_replayed: int = 0
    client_events_lost: int = 0
    # echo_cancel=True: canceller frames cleaned, and those whose reference was incomplete.
    echo_frames_cleaned: int = 0
    echo_reference_underruns: int = 0


# What the client itself reports (besides the server's events, which keep their wire names).
NOTIFICATION_TYPES = frozenset(
    {
        "error",
        "conversation.updated",
        "conversation.item.appended",
        "conversation.item.completed",
        "conversation.interrupted",
        "playback.pause",
        "playback.resume",
        "playback.flush",
        "connection.lost",
        "connection.restored",
        "realtime.event",
    }
)


@dataclass(eq=False, slots=True)
class _Subscription:
    """One ``events()`` stream: None takes every notification (no server event); a set takes
    exactly the names in it."""

    send: MemoryObjectSendStream[Notification]
    types: frozenset[str] | None

    def wants(self, name: str) -> bool:
        return name in NOTIFICATION_TYPES if self.types is None else name in self.types


class EventStream:
    """A subscription to a client's events (see :meth:`RealtimeClient.events`)."""

    def __init__(
        self,
        client: RealtimeClient,
        subscription: _Subscription,
        receive: MemoryObjectReceiveStream[Notification],
    ) -> None:
        self._client = client
        self._subscription = subscription
        self._send = subscription.send
        self._receive = receive

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Notification:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop receiving; notifications not yet read are dropped."""
        with contextlib.suppress(ValueError):
            self._client._subscribers.remove(self._subscription)
        self._send.close()
        self._receive.close()


class RealtimeClient:
    """A Realtime session with its conversation, tools, playback and reconnection.

    ``session`` is the initial session config in the GA shape (``instructions``,
    ``output_modalities``, ``audio.input.turn_detection``, ...); ``update_session`` merges into
    it. ``playback_rate`` is the audio device's rate. ``local_vad`` (a ``realtalk.audio.Vad``
    at the input rate, or any ``realtalk.audio.TurnDetector``) turns the client into the turn
    detector when the session's turn detection is ``None``. ``local_playback=False``: the
    app plays the audio deltas itself (the conversation still keeps them) and reports its
    position with :meth:`report_playback`. ``barge_in`` (a ``BargeInPolicy``) decides what a
    speech start over a reply does (default: cut at once). ``connect`` replaces the network
    (tests, relays): a zero-argument callable returning an async context manager of a
    :class:`Link`. ``retry_rate_limited_s``: when set,
    the response after tool outputs, refused for a rate limit, is asked for once more after
    the server's ``reset_seconds`` (at most this long); by default the refusal is reported.
    ``call_id``: connect to that call's sideband WebSocket instead of a new session with
    ``model`` (see :mod:`realtalk.calls`). ``record``: a ``.wav`` path or a directory to
    record the session to, as :meth:`record` does, from ``async with`` on.
    ``intent="transcription"`` opens a transcription session (protocol.md §6.6; the
    transcription model goes in ``session``'s ``audio.input.transcription``, and ``model`` is
    not sent): no responses, the user's speech comes back in :attr:`transcripts`.
    :attr:`usage` sums the tokens of every finished response; with ``prices``
    (:class:`realtalk.usage.Prices`) ``usage.cost`` is what they cost. ``meter_provider``:
    the OpenTelemetry meter provider the turn latencies go to (default: the global one; only
    with ``opentelemetry-api`` installed). ``echo_cancel=True`` (needs local playback) cleans
    the microphone of what the speaker played before the uplink and a local VAD, the speaker
    taken ``echo_delay_ms`` (the device's output-to-input latency) behind the microphone on
    their sample clocks (see :mod:`realtalk._echo`)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        model: str = "gpt-realtime",
        intent: _transcripts.Intent = "realtime",
        api_key: str | None = None,
        protocol: _events.Protocol = "ga",
        headers: Mapping[str, str] | None = None,
        session: Mapping[str, Any] | None = None,
        playback_rate: int = 24000,
        playback_capacity_ms: int = 120_000,
        input_rate: int = 24000,
        local_vad: _audio.TurnDetector | None = None,
        local_playback: bool = True,
        barge_in: BargeInPolicy | None = None,
        tool_timeout: float | None = 30.0,
        reconnect: bool = True,
        max_reconnect_attempts: int = 8,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 8.0,
        expiry_margin_s: float = 30.0,
        outage_audio_ms: int = 10_000,
        uplink_queue_frames: int = 256,
        event_queue_size: int = 1024,
        max_conversation_audio_s: float = 600.0,
        connect_timeout_s: float = 15.0,
        retry_rate_limited_s: float | None = None,
        connect: ConnectFactory | None = None,
        call_id: str | None = None,
        record: str | os.PathLike[str] | None = None,
        prices: Prices | None = None,
        meter_provider: Any = None,
        echo_cancel: bool = False,
        echo_delay_ms: int = DEFAULT_ECHO_DELAY_MS,
    ) -> None:
        if protocol not in ("ga", "beta"):
            raise ValueError(f"protocol must be 'ga' or 'beta', got {protocol!r}")
        if playback_rate <= 0 or input_rate <= 0:
            raise ValueError("playback_rate and input_rate must be positive")
        self.intent = _transcripts.check_intent(intent, session, call_id)
        if call_id is not None:  # a SIP/WebRTC call's sideband (realtalk.calls)
            from realtalk.calls import sideband_url
            url = sideband_url(url, call_id)
        self.url = _transcripts.transcription_url(url) if intent == "transcription" else url
        self.model = model
        self.protocol: _events.Protocol = "ga" if protocol == "ga" else "beta"
        self._api_key = api_key
        self._headers = dict(headers or {})
        self._connect_factory = connect
        self._config: dict[str, Any] = {"type": self.intent}
        if session:
            _deep_merge(self._config, dict(session))
        self.tools = ToolRegistry(timeout=tool_timeout)
        self.playback_rate = playback_rate
        self.input_rate = input_rate
        self.playback = _audio.PlaybackBuffer(playback_rate, capacity_ms=playback_capacity_ms)
        self.conversation = Conversation(
            audio_rate=playback_rate,
            max_audio_samples=int(max_conversation_audio_s * playback_rate),
        )
        if local_vad is not None and getattr(local_vad, "sample_rate", input_rate) != input_rate:
            raise ValueError(f"local_vad runs at {local_vad.sample_rate} Hz but the input is "
                             f"{input_rate} Hz; create it with sample_rate={input_rate}")
        self.local_vad = local_vad
        # False: the app plays the deltas itself and reports its position (report_playback).
        self.local_playback = bool(local_playback)
        self._barge_in = BargeIn(self, barge_in, self.local_playback)
        self.metrics = ClientMetrics()
        self._echo = EchoCancel.for_client(echo_cancel, self, echo_delay_ms)
        self.usage = Usage(prices)
        self._telemetry = _telemetry.turn_telemetry(meter_provider, {
            "realtalk.model": model, "realtalk.protocol": self.protocol})
        self.reconnect = reconnect
        self.max_reconnect_attempts = max_reconnect_attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.expiry_margin_s = expiry_margin_s
        self.connect_timeout_s = connect_timeout_s
        if retry_rate_limited_s is not None and not (
                retry_rate_limited_s > 0 and math.isfinite(retry_rate_limited_s)):
            raise ValueError("retry_rate_limited_s must be a positive number of seconds or None,"
                             f" got {retry_rate_limited_s!r}")
        self.retry_rate_limited_s = retry_rate_limited_s
        self._rate_limits: list[Mapping[str, Any]] = []
        self.outage_audio_ms = outage_audio_ms
        self._uplink_queue_frames = uplink_queue_frames
        self._event_queue_size = event_queue_size
        self._handlers: dict[str, list[Callable[[Notification], Any]]] = {}
        self._subscribers: list[_Subscription] = []
        self._tg: anyio.abc.TaskGroup | None = None
        self._token: Any = None
        self._loop_thread: int | None = None
        self._link: Link | None = None
        self._connected = anyio.Event()
        self._closed = False
        self._final_error: BaseException | None = None
        self._server_session: dict[str, Any] = {}
        self._input_format = "pcm16"
        self._output_format = "pcm16"
        self._uplinks: dict[tuple[int, int], Any] = {}
        self._downlink: Any = None
        # Frames from foreign threads waiting for the loop (the only place they are encoded,
        # so the uplinks' resampler state belongs to the loop): a Rust queue, see _uplink.py.
        self._handoff = new_frame_handoff(uplink_queue_frames, input_rate)
        self._refused_lock = threading.Lock()  # refusals are counted from every thread
        self._call_soon_threadsafe: Callable[[Callable[[], object]], object] | None = None
        self._outage = OutageBuffer()
        self._uncommitted_ms = 0.0
        self._appended_ms = 0.0
        # Responses in the default conversation, one at a time.
        self._responses = ResponseSlot()
        self._ledger = DeliveryLedger()
        self._supervisor = ConnectionSupervisor(self)
        self._item_waiters: list[tuple[anyio.Event, bool, list[Item]]] = []
        self._item_requests: list[_ItemRequest] = []
        self._turn: TurnMetrics | None = None
        self._speech_end: float | None = None
        self._audible_watch: tuple[str, float] | None = None
        self._audible_pending = anyio.Event()
        # Responses and items cut by a barge-in: their late audio is not played.
        self._muted_responses: deque[str] = deque(maxlen=16)
        self._muted_items: deque[str] = deque(maxlen=16)
        self._local_speaking = False
        self._record_to = record
        self._recorder: SessionRecorder | None = None
        self._apply_formats()

    # ---- lifecycle ----

    async def __aenter__(self) -> RealtimeClient:
        self._token = anyio.lowlevel.current_token()
        self._call_soon_threadsafe = _call_soon_threadsafe(self._token)
        self._loop_thread = threading.get_ident()
        self._handoff.open(self.input_rate)
        send, receive = anyio.create_memory_object_stream[bytes](self._uplink_queue_frames)
        self._outbox_send, self._outbox_receive = send, receive
        self._tg_cm = anyio.create_task_group()
        self._tg = await self._tg_cm.__aenter__()
        try:
            if self._record_to is not None:
                self.record(self._record_to)
            await self._tg.start(self._supervisor.run)
            self._tg.start_soon(self._drain_handoff_when_woken)
        except BaseException:
            self._tg.cancel_scope.cancel()
            try:
                await self._tg_cm.__aexit__(None, None, None)
            finally:
                self._outbox_send.close()
                self._outbox_receive.close()
                await stop_recording(self)
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        self._closed = True
        self._handoff.close()
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        try:
            # The body's own exception propagates as it is, not wrapped in a group.
            await self._tg_cm.__aexit__(None, None, None)
            return None
        finally:
            for subscription in self._subscribers:
                subscription.send.close()
            self._subscribers.clear()
            self._outbox_send.close()
            self._outbox_receive.close()
            await stop_recording(self)

    def record(self, path: str | os.PathLike[str]) -> SessionRecorder:
        """Record the session from now on: a stereo WAV (the user's input left, the audio
        the device pulled from ``playback`` right, on one clock) and a JSONL log of every
        event both ways, written as it runs and readable if the process dies (see
        :mod:`realtalk.recorder`). ``path``: the ``.wav`` file (the log goes beside it as
        ``.jsonl``) or a directory. The device must pull through ``client.playback`` after
        this call. Stops when the session ends; RuntimeError if already recording."""
        if self._recorder is not None and not self._recorder.closed:
            raise RuntimeError(f"already recording to {self._recorder.wav_path}")
        self._recorder = start_recording(self, path)
        return self._recorder

    @property
    def recording(self) -> SessionRecorder | None:
        """The last recorder started (``record=`` or :meth:`record`; ``closed`` once it
        stopped), None if the session was never recorded."""
        return self._recorder

    @property
    def connected(self) -> bool:
        """True while a connection to the server is open (False during an outage)."""
        return self._link is not None

    @property
    def session(self) -> dict[str, Any]:
        """The session config as the server last reported it (GA shape)."""
        return self._server_session

    @property
    def config(self) -> dict[str, Any]:
        """The session config this client pushes on every (re)connect (GA shape)."""
        return self._config

    @property
    def transcripts(self) -> list[Transcript]:
        """The transcripts of the user's audio, one per committed item in conversation order,
        as far as they arrived (``conversation.item.input_audio_transcription.*``; needs
        ``audio.input.transcription`` in the session config)."""
        return _transcripts.input_transcripts(self.conversation)

    @property
    def rate_limits(self) -> list[RateLimit]:
        """The server's latest ``rate_limits.updated`` (GA sends one after each response)."""
        return RateLimit.parse(self._rate_limits)

    # ---- events ----

    def on(self, name: str, handler: Callable[[Notification], object]) -> Callable[[], None]:
        """Call ``handler(event)`` for each event ``name``: a server event type by its GA name
        (``"response.done"``, ``"input_audio_buffer.speech_started"`` ...; a beta session's
        events arrive under their GA names too), with the parsed event (GA shape) as its
        ``data``, after the client has applied it; or a client notification
        (``NOTIFICATION_TYPES``: ``"error"`` covers the server's errors as well); or ``"*"``
        for every client notification (the server's events go only to handlers of their
        name; ``"realtime.event"`` sees the raw wire both ways). Any other name raises
        ``ValueError``. Async handlers run in the client's task group. Returns a function that
        removes the handler."""
        if name != "*":
            _check_event_name(name)
        self._handlers.setdefault(name, []).append(handler)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._handlers[name].remove(handler)

        return remove

    def events(self, *types: str) -> EventStream:
        """The client's events from now on, in order, through a bounded queue (overflow is
        counted in ``metrics.events_dropped``): with no ``types``, every client notification;
        with ``types``, exactly those (server event types by their GA name and/or
        notifications, checked as in :meth:`on`). Use ``async for event in
        client.events()``; ``async with client.events("response.done") as stream`` stops the
        subscription on exit (it also stops when the client closes)."""
        for name in types:
            _check_event_name(name)
        send, receive = anyio.create_memory_object_stream[Notification](self._event_queue_size)
        subscription = _Subscription(send, frozenset(types) if types else None)
        self._subscribers.append(subscription)
        return EventStream(self, subscription, receive)

    def _listening(self, name: str) -> bool:
        if self._handlers.get(name) or (name in NOTIFICATION_TYPES and self._handlers.get("*")):
            return True
        return any(subscription.wants(name) for subscription in self._subscribers)

    def _emit_server_event(self, event: Mapping[str, Any]) -> None:
        """A parsed server event to the handlers and streams asking for its type (``error``
        is reported as the ``error`` notification instead)."""
        kind = event.get("type")
        if isinstance(kind, str) and kind != "error" and self._listening(kind):
            self._emit(kind, event)

    def _emit(self, name: str, data: Mapping[str, Any]) -> None:
        event = Notification(name, data)
        everything = self._handlers.get("*", ()) if name in NOTIFICATION_TYPES else ()
        for handler in (*self._handlers.get(name, ()), *everything):
            try:
                result = handler(event)
                if inspect.isawaitable(result) and self._tg is not None:
                    self._tg.start_soon(_await_handler, result, self, name)
            except Exception as exc:  # a user's handler must not break the session
                if name != "error":
                    self._emit("error", {"error": {"type": "handler_error",
                                                   "message": f"{type(exc).__name__}: {exc}"},
                                         "local": True})
        for subscription in self._subscribers:
            if not subscription.wants(name):
                continue
            try:
                subscription.send.send_nowait(event)
            except anyio.WouldBlock:
                self.metrics.events_dropped += 1
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

    def _log_wire(self, source: str, message: bytes) -> None:
        """A message as written or read, for ``realtime.event`` listeners only."""
        if self._recorder is not None:
            self._recorder.wire(source, message)
        if self._listening("realtime.event"):
            self._emit("realtime.event", {"source": source, "time": time.time(),
                                          "event": _loads(message)})

    def _local_error(self, code: str, message: str, **extra: Any) -> None:
        self._emit("error", {"error": {"type": "client_error", "code": code, "message": message,
                                       **extra}, "local": True, "benign": False})

    # ---- session and tools ----

    async def update_session(self, **config: Any) -> None:
        """Merge GA-shaped fields into the session config and push it when connected.
        ``turn_detection=`` is accepted as a shortcut for ``audio.input.turn_detection``.
        The update has the session's type (``intent``); another ``type`` raises
        ``ValueError``, as a session cannot change its type."""
        _transcripts.check_session_type(self.intent, config)
        if "turn_detection" in config:
            config.setdefault("audio", {}).setdefault("input", {})["turn_detection"] = (
                config.pop("turn_detection"))
        _deep_merge(self._config, config)
        self._apply_formats()
        if self.connected:
            await self._send_event({"type": "session.update",
                                    "session": dict(config, type=self.intent)})

    async def add_tool(self, definition: Mapping[str, Any], handler: ToolHandler) -> None:
        """Register a tool and its handler and push the tool list to the server; the client runs the
        handler when the model calls it."""
        self.tools.add(definition, handler)
        await self._push_tools()

    async def remove_tool(self, name: str) -> None:
        """Unregister a tool and push the remaining tool list to the server."""
        self.tools.remove(name)
        await self._push_tools()

    async def _push_tools(self) -> None:
        if self.connected:
            await self._send_event({"type": "session.update",
                                    "session": {"type": self.intent,
                                                "tools": self._full_session()["tools"]}})

    def _full_session(self) -> dict[str, Any]:
        session: dict[str, Any] = copy.deepcopy(self._config)
        if len(self.tools) or "tools" in session:
            session["tools"] = [*session.get("tools", []), *self.tools.definitions()]
        return session

    def _turn_detection(self) -> Any:
        source = self._server_session or self._config
        return ((source.get("audio") or {}).get("input") or {}).get(
            "turn_detection", {"type": "server_vad"} if source is self._config else None)

    def _apply_formats(self) -> None:
        audio_config = self._config.get("audio") or {}
        for direction in ("input", "output"):
            self._set_format(direction, (audio_config.get(direction) or {}).get("format"))
        if self._downlink is None:
            self._downlink = self._new_downlink(self._output_format)

    def _new_downlink(self, format_: str) -> Any:
        return _audio.Downlink(self.playback_rate, format=format_, protocol=self.protocol,
                               dtype=np.int16)

    # ---- sending ----

    async def send(self, event: Mapping[str, Any]) -> None:
        """Send a raw client event (GA names; translated for beta)."""
        await self._send_event(event)

    def _check_usable(self) -> None:
        if self._final_error is not None:
            code = getattr(self._final_error, "code", 1006)
            raise ConnectionClosed(code, str(self._final_error),
                                   message=f"the connection is gone for good: "
                                   f"{self._final_error}") from self._final_error

    async def _send_event(self, event: Mapping[str, Any]) -> str | None:
        self._check_usable()
        await self._flush_handoff()
        data = dict(event)
        if "event_id" not in data:
            data["event_id"] = _new_event_id()
        item = data.get("item")
        if data.get("type") == "conversation.item.create" and isinstance(item, Mapping) \
                and "id" not in item:
            # A client-chosen id: the echo confirms this very item, and a replay of it can
            # never become a second copy.
            data["item"] = {"id": _new_item_id(), **item}
        message = _events.serialize_client_event(data, self.protocol)
        self._ledger.record(data, message)
        await self._outbox_send.send(message)
        return str(data["event_id"])

    async def send_user_message_content(
        self, content: list[Mapping[str, Any]] | str, *, previous_item_id: str | None = None
    ) -> str:
        """Add a user message. ``content`` is a string or a list of parts: ``input_text``
        (``text``), ``input_audio`` (``audio`` as numpy samples at ``sample_rate=`` or the input
        rate, or bytes already in the input format), ``input_image`` (``image`` as bytes or a
        path; ``detail`` optional). Returns the item id."""
        parts = [{"type": "input_text", "text": content}] if isinstance(content, str) else [
            user_content_part(part, input_rate=self.input_rate,
                              input_format=self._input_format) for part in content]
        item_id = _new_item_id()
        event: dict[str, Any] = {"type": "conversation.item.create",
                                 "item": {"id": item_id, "type": "message", "role": "user",
                                          "content": parts}}
        if previous_item_id is not None:
            event["previous_item_id"] = previous_item_id
        await self._send_event(event)
        return item_id

    def append_input_audio(self, samples: npt.ArrayLike | bytes | bytearray | memoryview | str,
                           sample_rate: int | None = None) -> None:
        """Queue microphone audio: any numeric dtype (floats in [-1, 1], integer PCM at its
        full scale), mono or ``(frames, channels)``, at ``sample_rate`` (default: the client's
        ``input_rate``). It is resampled and encoded for the session's input format by the
        Rust core, with the resampler's state carried from frame to frame.

        Audio already in the session's input format is taken too, as the API's
        ``input_audio_buffer.append`` takes it: ``bytes``/``bytearray``/``memoryview`` of
        pcm16 (little-endian, 24 kHz mono) or G.711 codes (8 kHz), or that as a base64
        ``str``. It goes on the wire unchanged; ``sample_rate``, if given, must be the
        format's rate. An odd pcm16 byte count or invalid base64 raises ``ValueError``.

        Safe from any thread, and never waits for the event loop: from a foreign thread (an
        audio device callback) the frame is copied into a bounded hand-off queue and the loop
        is woken without waiting for it (it encodes and sends the frame when it runs). Raises
        :class:`InputBackpressure` when that queue (or, in the loop's own thread, the uplink
        queue) is full: the frame is dropped and counted in ``metrics.input_frames_refused``;
        the caller decides whether to retry. A single frame from another thread larger than
        the queue's arena (``uplink_queue_frames`` x 20 ms of stereo float32, at least 64 of
        them) raises ``ValueError``: append it in pieces."""
        # A device thread's whole path: one Rust call that copies a float32/int16 array into
        # the hand-off's arena and wakes the loop through an eventfd (no Python call for it).
        status = self._handoff.push(samples) if sample_rate is None else HANDOFF_NOT_TAKEN
        if status == HANDOFF_QUEUED:
            return
        if status == HANDOFF_NOT_TAKEN:
            # Anything else: checked and converted here (the loop's own thread, other dtypes
            # and layouts, bytes, another rate, a client not running).
            if self._token is None or self._closed:
                raise RuntimeError("the client is not running (use it inside 'async with')")
            self._check_usable()
            if isinstance(samples, bytes | bytearray | memoryview | str):
                frame, rate = self._wire_audio_frame(samples, sample_rate)
            else:
                rate = self.input_rate if sample_rate is None else int(sample_rate)
                if rate <= 0:
                    raise ValueError(f"sample_rate must be positive, got {rate}")
                frame = _as_audio(samples)
            if frame.ndim not in (1, 2):
                raise ValueError(f"audio is mono samples or (frames, channels), got "
                                 f"{frame.ndim} dimensions")
            if self.local_vad is not None and rate != self.local_vad.sample_rate \
                    and self._local_vad_active():
                raise ValueError(f"local_vad runs at {self.local_vad.sample_rate} Hz; "
                                 f"this frame is at {rate} Hz")
            if self._echo is not None:
                self._echo.check_rate(rate)
            if threading.get_ident() == self._loop_thread:
                # Frames handed over by other threads first: they were appended before this.
                if not self._drain_handoff() or not self._take_frame(frame, rate):
                    self._count_refused()
                    if self._echo is not None:
                        self._echo.dropped(frame.shape[0], self._handoff)
                    raise InputBackpressure("the uplink queue is full; the frame was not queued")
                return
            status = self._handoff.push(frame, rate)
            samples = frame
        if status == HANDOFF_FULL and self._echo is not None:  # an array in either push
            self._echo.dropped(len(samples), self._handoff)  # type: ignore[arg-type]
        self._handed_over(status, rate if status == HANDOFF_NOT_TAKEN else None)

    def _handed_over(self, status: int, rate: int | None) -> None:
        """What a foreign thread's push that did not simply queue the frame means."""
        if status == HANDOFF_QUEUED:
            return
        if status == HANDOFF_QUEUED_WAKE:  # no wake-up descriptor on this platform
            if self._call_soon_threadsafe is not None:
                with contextlib.suppress(RuntimeError):  # the loop is gone: closing
                    self._call_soon_threadsafe(self._drain_handoff)
            return
        if status == HANDOFF_FULL:
            self._count_refused()
            raise InputBackpressure("the hand-off queue to the event loop is full; "
                                    "the frame was dropped")
        if status == HANDOFF_TOO_LARGE:
            raise ValueError(f"a frame handed over from another thread holds at most "
                             f"{self._handoff.arena_bytes} bytes; append it in pieces")
        if self._closed:
            raise RuntimeError("the client is not running (use it inside 'async with')")
        self._check_usable()
        raise ValueError(f"sample_rate must be from 1 to 16777216 Hz, got {rate}")

    async def _drain_handoff_when_woken(self) -> None:
        """Drain the hand-off each time a device thread's push wakes the loop (its eventfd)."""
        wake_fd = self._handoff.wake_fd
        if wake_fd is None:
            return  # pushes ask their caller to wake the loop instead
        while True:
            await anyio.wait_readable(wake_fd)
            self._drain_handoff()

    def _wire_audio_frame(self, data: bytes | bytearray | memoryview | str,
                          sample_rate: int | None) -> tuple[np.ndarray, int]:
        """Audio in the session's input format as samples at that format's rate: the Uplink
        encodes them back to the very same codes (no resampling at an equal rate), and the
        frame takes the path every frame takes (hand-off, outage buffer, local VAD)."""
        format_ = self._input_format
        wire_rate = 24000 if format_ == "pcm16" else 8000
        if sample_rate is not None and int(sample_rate) != wire_rate:
            raise ValueError(f"audio given as {type(data).__name__} is in the session's input "
                             f"format ({format_}, {wire_rate} Hz), not at {sample_rate} Hz; "
                             "pass numpy samples to have them resampled")
        raw: bytes | bytearray | memoryview
        if isinstance(data, str):
            try:
                raw = _audio.b64decode(data)
            except ValueError as exc:
                raise ValueError(f"audio given as str must be base64 ({exc})") from None
        elif isinstance(data, memoryview):
            raw = data.cast("B") if data.c_contiguous else data.tobytes()
        else:
            raw = data
        if format_ == "pcm16" and len(raw) % 2:
            raise ValueError(f"pcm16 audio has 2 bytes per sample; got {len(raw)} bytes")
        return decode_wire_audio(raw, format_), wire_rate

    def _manual_turns(self) -> bool:
        """True when the server detects no turns: the turn detection this client last asked
        for (already on the wire before anything sent now), else the server's report."""
        asked = (self._config.get("audio") or {}).get("input") or {}
        if "turn_detection" in asked:
            return asked["turn_detection"] is None
        return self._turn_detection() is None

    def _local_vad_active(self) -> bool:
        return self.local_vad is not None and self._turn_detection() is None

    def _drain_handoff(self) -> bool:
        """Move frames from the hand-off into the uplink (loop thread). False when the
        uplink queue is full: the rest wait, and the writer drains again as it makes room."""
        self._handoff.woken()
        while (front := self._handoff_front()) is not None:
            if not self._take_frame(*front):
                return False
            self._pop_handoff()
        return True

    def _pop_handoff(self) -> None:
        if self._echo is None:
            self._handoff.pop()
        else:  # counted by the canceller: a refused frame's place is a count of pops
            self._echo.popped(self._handoff)

    def _handoff_front(self) -> tuple[np.ndarray, int] | None:
        """The oldest handed-over frame as ``(samples, rate)``, in the layout it was appended
        in (mono, or ``(frames, channels)``), or None when the hand-off is empty."""
        front = self._handoff.front()
        if front is None:
            return None
        samples, channels, rate = front
        return (samples.reshape(-1, channels) if channels else samples), rate

    def _count_refused(self) -> None:
        # Under a lock: refusals are counted from the loop and from device threads.
        with self._refused_lock:
            self.metrics.input_frames_refused += 1

    async def _flush_handoff(self) -> None:
        """Every frame handed over so far into the uplink, waiting for room if need be:
        what the loop sends next (a commit, a response.create) comes after them."""
        while self._handoff and not self._drain_handoff():
            front = self._handoff_front()
            if front is None:
                break
            self._pop_handoff()
            encoded = self._encode_frame(*front)
            if encoded is not None:
                message, duration_ms, vad_events = encoded
                # A waiting sender goes before any later send_nowait: the order holds.
                await self._outbox_send.send(message)
                self._account_audio(duration_ms, vad_events)

    def _uplink_full(self) -> bool:
        stats = self._outbox_send.statistics()
        return (stats.current_buffer_used >= stats.max_buffer_size
                and not stats.tasks_waiting_receive)

    def _take_frame(self, frame: np.ndarray, rate: int) -> bool:
        """Encode one frame and route it (loop thread): into the outage buffer while
        disconnected, straight onto the link, or into the uplink queue. False: that queue is
        full, and nothing was done (the resampler has not seen the frame)."""
        if self.connected and self._uplink_full():
            return False
        encoded = self._encode_frame(frame, rate)
        if encoded is None:
            return True
        message, duration_ms, vad_events = encoded
        if not self.connected:
            self.metrics.outage_audio_dropped_ms += self._outage.append(
                message, duration_ms, self.outage_audio_ms)
        elif not self._send_directly(message):
            self._outbox_send.send_nowait(message)  # room checked above, nothing ran since
        self._account_audio(duration_ms, vad_events)
        return True

    def _encode_frame(self, frame: np.ndarray, rate: int) -> tuple[bytes, float, Any] | None:
        """The frame as an ``input_audio_buffer.append`` message in the session's format, its
        length in ms, and what the local VAD made of it. None (reported) if the Rust core
        refuses the frame: it runs in the loop, where an exception would end the session."""
        try:
            if self._echo is not None:
                frame = self._echo.clean(frame)
                if not frame.shape[0]:
                    return None  # short of a whole canceller frame: it waits for the next
            # One Uplink per rate and channel count: it mixes the channels down itself.
            channels = 1 if frame.ndim == 1 else frame.shape[1]
            uplink = self._uplinks.get((rate, channels))
            if uplink is None:
                uplink = _audio.Uplink(rate, format=self._input_format, channels=channels)
                self._uplinks[rate, channels] = uplink
            message = uplink.encode(frame)
            vad_events: Any = ()
            if self.local_vad is not None and self._local_vad_active():
                vad_events = self.local_vad.process(frame if frame.ndim == 1 else
                                                    mono_float(frame))
        except (ValueError, TypeError, OverflowError) as exc:
            self._local_error("input_frame_refused", f"a microphone frame could not be "
                              f"encoded and was dropped: {exc}")
            self._count_refused()
            return None
        return message, (frame.shape[0] * 1000.0) / rate, vad_events

    def _account_audio(self, duration_ms: float, vad_events: Any) -> None:
        self._appended_ms += duration_ms
        self._uncommitted_ms += duration_ms
        self._barge_in.on_local_audio(self._appended_ms)
        for vad_event in vad_events:
            kind = _vad_kind(vad_event)
            assert self._tg is not None
            if kind == "speech_started":
                self._local_speaking = True
                self._barge_in.on_local_speech(kind, vad_event, self._appended_ms)
            elif kind == "speech_stopped":
                self._local_speaking = False
                self._speech_end = time.perf_counter()
                # A false interruption (a cough over the reply) is not a turn to answer.
                if not self._barge_in.on_local_speech(kind, vad_event, self._appended_ms):
                    self._tg.start_soon(self._local_turn_end)

    def _send_directly(self, message: bytes) -> bool:
        """Write ``message`` now, skipping the writer task, when that keeps the order and the
        link can take it without waiting (otherwise it is queued, and the writer applies the
        backpressure). Order: only while the writer is parked on the empty outbox; a message
        just handed to it (it has not run yet) no longer counts it as waiting."""
        try_send = getattr(self._link, "try_send_text", None)
        if (try_send is None or self._supervisor.pending is not None
                or not self._outbox_send.statistics().tasks_waiting_receive
                or not try_send(message)):
            return False
        self._log_wire("client", message)
        return True

    async def _local_turn_end(self) -> None:
        if self._uncommitted_ms < _MIN_COMMIT_MS:
            return
        await self.commit_input_audio()
        # Frames after the turn's end (its trailing silence) belong to the next turn.
        await self.create_response(commit=False)

    async def commit_input_audio(self) -> None:
        """Commit the input buffer. Under 100 ms of audio (in the input format's clock) the
        server would refuse, so nothing is sent and an ``error`` event says why."""
        await self._flush_handoff()
        if self._uncommitted_ms < _MIN_COMMIT_MS:
            self._emit("error", {"error": {"type": "client_error",
                                           "code": "input_audio_buffer_commit_empty",
                                           "message": f"only {self._uncommitted_ms:.1f} ms of "
                                           "audio since the last commit; at least 100 ms needed"},
                                 "local": True, "benign": True})
            return
        self._uncommitted_ms = 0.0
        await self._send_event({"type": "input_audio_buffer.commit"})

    async def clear_input_audio(self) -> None:
        """Drop the audio appended and not yet committed (`input_audio_buffer.clear`)."""
        self._uncommitted_ms = 0.0
        await self._send_event({"type": "input_audio_buffer.clear"})

    # ---- responses ----

    @property
    def response_active(self) -> bool:
        """True from `create_response` (or the server's own turn) until the response is done."""
        return self._responses.busy

    async def create_response(self, *, wait: bool = True, commit: bool = True,
                              **params: Any) -> str | None:
        """Ask for a response in the default conversation; returns its id once it starts.
        One at a time: while one runs this waits for it to finish (``wait=False`` raises
        :class:`ResponseBusy` instead). Out-of-band responses (``conversation="none"``) do not
        wait. Returns None if the server started one on its own first (VAD), which is benign.

        In a manual-turn session (turn detection ``None``) audio appended since the last
        commit is committed first, right before the ``response.create`` (as the reference
        client's ``createResponse`` does), so the reply answers it; ``commit=False`` leaves
        the input buffer alone. Less than the 100 ms the server accepts in a commit stays in
        the buffer, and out-of-band responses never commit. A transcription session has no
        responses: ``RuntimeError``."""
        _transcripts.check_responses_allowed(self.intent)
        if params.get("conversation") == "none":
            event: dict[str, Any] = {"type": "response.create", "response": params}
            await self._send_event(event)
            return None

        async def commit_first() -> None:
            if commit and self._manual_turns():
                await self._flush_handoff()  # frames other threads handed over count too
                if self._uncommitted_ms >= _MIN_COMMIT_MS:
                    await self.commit_input_audio()

        return await self._responses.create(self._send_event, params, wait=wait,
                                            before_request=commit_first)

    async def clear_output_audio(self) -> None:
        """Stop the agent's audio being played out on a WebRTC or SIP call
        (``output_audio_buffer.clear``, after a ``response.cancel`` if a response is running;
        the server answers ``output_audio_buffer.cleared``). Only a call's sideband
        connection (``call_id=``, or a URL with ``call_id``) can: over a plain WebSocket
        session this client plays the audio itself and the server refuses the event, so this
        raises ``RuntimeError`` without sending anything; use :meth:`interrupt` there."""
        if "call_id" not in parse_qs(urlsplit(self.url or "").query):
            raise RuntimeError("clear_output_audio() needs a WebRTC or SIP call's sideband "
                               "connection (call_id=): over a WebSocket session the "
                               "audio plays here, so stop it with interrupt()")
        await self.cancel_response()
        await self._send_event({"type": "output_audio_buffer.clear"})

    async def cancel_response(self) -> None:
        """Cancel the active response (a no-op when none is active)."""
        if self._responses.busy:
            await self._send_event({"type": "response.cancel"})

    async def wait_for_response_done(self, timeout: float | None = None) -> None:
        """Wait until no response is running in the default conversation."""
        await self._responses.wait_idle(timeout)

    def report_playback(self, item_id: str, played_ms: float, content_index: int = 0) -> bool:
        """With ``local_playback=False``: the app's player has played ``played_ms`` of
        ``item_id``'s audio (in the output format's clock). Automatic barge-in truncates at
        the last position reported. Monotonic per item: a report going backwards is refused
        (returns False, counted in ``metrics.playback_reports_refused``) and the furthest
        position stays. Safe from any thread and cheap (no loop round trip)."""
        reports = self._barge_in.reports
        if reports is None:
            raise RuntimeError("report_playback needs RealtimeClient(local_playback=False); "
                               "with local playback the client knows the position itself")
        if reports.report(item_id, played_ms, content_index):
            return True
        self.metrics.playback_reports_refused = reports.refused
        return False

    async def interrupt(self, item_id: str | None = None, played_ms: float | None = None
                        ) -> dict[str, Any] | None:
        """Barge-in: stop playback, cancel the active response, and truncate the playing item
        to what was really heard (capped at what was received): ``item_id``/``played_ms`` if
        given (an explicit position wins, also with local playback), else what the local
        ``playback`` played or the remote player last reported. Audio still arriving for the
        cut response is dropped; with ``local_playback=False`` a ``playback.flush``
        notification tells the app's player to drop what it queued. Returns ``{"item_id",
        "content_index", "audio_end_ms"}`` or None if nothing was played."""
        check_position(item_id, played_ms)
        return await self._interrupt(server_cancels=False, item_id=item_id, played_ms=played_ms)

    async def _interrupt(self, *, server_cancels: bool, automatic: bool = False,
                         item_id: str | None = None, played_ms: float | None = None
                         ) -> dict[str, Any] | None:
        return await self._send_cut(self._cut_playback(item_id, played_ms),
                                    server_cancels=server_cancels, automatic=automatic)

    def _cut_playback(self, item_id: str | None = None, played_ms: float | None = None
                      ) -> tuple[tuple[str, int, float] | None, str | None]:
        """The cut's local half, at once (a barge-in decision calls it where it falls, before
        the next server event can start another reply): flush, mute, find the position.
        Returns that position and the response to cancel, if one is active."""
        cut = resolve_cut(self.playback.interrupt(), self._barge_in.reports, item_id, played_ms)
        self._barge_in.after_cut()
        # The next audio starts a new stream: no resampler tail from the cut one.
        self._downlink.reset()
        if self._responses.response_id is not None:
            self._muted_responses.append(self._responses.response_id)
        if cut is not None:
            self._muted_items.append(cut[0])
        if self._barge_in.reports is not None:
            self._emit("playback.flush", {"item_id": None if cut is None else cut[0]})
        self._audible_watch = None
        return cut, self._responses.response_id if self._responses.state == "active" else None

    async def _send_cut(self, local: tuple[tuple[str, int, float] | None, str | None], *,
                        server_cancels: bool, automatic: bool) -> dict[str, Any] | None:
        cut, active = local
        if active is not None and not server_cancels and self._responses.state == "active" \
                and self._responses.response_id == active:
            await self._send_event({"type": "response.cancel"})
        result: dict[str, Any] | None = None
        if cut is not None:
            item_id, content_index, played_ms = cut
            end_ms = min(int(played_ms), self.conversation.audio_ms_received(item_id))
            if end_ms > 0:
                await self._send_event({"type": "conversation.item.truncate", "item_id": item_id,
                                        "content_index": content_index, "audio_end_ms": end_ms})
                self.conversation.cut_transcript(item_id, end_ms)
                result = {"item_id": item_id, "content_index": content_index,
                          "audio_end_ms": end_ms}
        self._emit("conversation.interrupted", {
            **(result or {"item_id": None, "audio_end_ms": 0}), "automatic": automatic,
            "cut": True})
        return result

    # ---- items by id ----

    async def retrieve_item(self, item_id: str, *, timeout: float | None = 10.0
                            ) -> dict[str, Any]:
        """The server's copy of an item (``conversation.item.retrieve``), in the GA shape,
        with its audio as base64 where the server keeps it. Raises :class:`RequestRefused`
        with the server's error (an unknown id: ``item_retrieve_invalid_item_id``),
        :class:`realtalk.errors.ConnectionClosed` if the connection ends first, or
        :class:`realtalk.errors.Timeout`."""
        request = await self._item_request("conversation.item.retrieve",
                                           "conversation.item.retrieved", item_id, timeout)
        assert request.item is not None
        return request.item

    async def delete_item(self, item_id: str, *, timeout: float | None = 10.0) -> None:
        """Delete an item from the conversation (``conversation.item.delete``) and wait for the
        server's ``conversation.item.deleted`` (the client's ``conversation`` drops it then).
        Raises :class:`RequestRefused` with the server's error (an unknown id:
        ``item_delete_invalid_item_id``), :class:`realtalk.errors.ConnectionClosed` if the
        connection ends first, or :class:`realtalk.errors.Timeout`."""
        await self._item_request("conversation.item.delete", "conversation.item.deleted",
                                 item_id, timeout)

    async def _item_request(self, kind: str, answer: str, item_id: str,
                            timeout: float | None) -> _ItemRequest:
        if not isinstance(item_id, str) or not item_id:
            raise ValueError(f"item_id must be a non-empty string, got {item_id!r}")
        # After a reconnect the server knows a replayed item by its replay's id.
        wire_id = self._supervisor.replayed_ids.get(item_id, item_id)
        event_id = _new_event_id()
        request = _ItemRequest(answer, wire_id, event_id)
        self._item_requests.append(request)
        try:
            await self._send_event({"type": kind, "item_id": wire_id, "event_id": event_id})
            with anyio.fail_after(timeout):
                await request.answered.wait()
        except TimeoutError:
            raise Timeout(f"no answer to {kind} of {item_id} within {timeout} s") from None
        finally:
            with contextlib.suppress(ValueError):
                self._item_requests.remove(request)
        if request.error is not None:
            raise RequestRefused(request.error, f"{kind} of {item_id}")
        if request.lost is not None:
            raise ConnectionClosed(getattr(request.lost, "code", 1006), str(request.lost),
                                   message=f"the connection ended before the server answered "
                                   f"{kind} of {item_id}") from request.lost
        return request

    def _answer_item_request(self, kind: str, item_id: Any, item: Any = None) -> None:
        for request in self._item_requests:
            if request.kind == kind and request.item_id == item_id \
                    and not request.answered.is_set():
                request.item = dict(item) if isinstance(item, Mapping) else None
                request.answered.set()
                return

    def _fail_item_requests(self, error: BaseException | None) -> None:
        for request in self._item_requests:
            if not request.answered.is_set():
                request.lost = error or ConnectionClosed(1006, "connection lost")
                request.answered.set()

    # ---- waiting for items ----

    async def wait_for_next_item(self, timeout: float | None = None) -> Item:
        """Wait for the next item to appear in the conversation and return it."""
        return await self._wait_item(completed=False, timeout=timeout)

    async def wait_for_next_completed_item(self, timeout: float | None = None) -> Item:
        """Wait for the next item to be completed and return it."""
        return await self._wait_item(completed=True, timeout=timeout)

    async def _wait_item(self, *, completed: bool, timeout: float | None) -> Item:
        event = anyio.Event()
        box: list[Item] = []
        waiter = (event, completed, box)
        self._item_waiters.append(waiter)
        try:
            with anyio.fail_after(timeout):
                await event.wait()
        except TimeoutError:
            raise Timeout(f"no {'completed ' if completed else ''}item within {timeout} s") from None
        finally:
            with contextlib.suppress(ValueError):
                self._item_waiters.remove(waiter)
        return box[0]

    def _wake_item_waiters(self, item: Item, completed: bool) -> None:
        for event, wants_completed, box in list(self._item_waiters):
            if wants_completed == completed and not box:
                box.append(item)
                event.set()

    # ---- the connection supervisor ----

    def _on_connection_lost(self, error: BaseException | None) -> None:
        code = getattr(error, "code", None)
        self._emit("connection.lost", {"code": code, "reason": str(error) if error else ""})
        self._fail_item_requests(error)
        if self._responses.requested and any(
                d.event_id == self._responses.request_event_id for d in self._ledger.pending()):
            pass  # not started yet: the request goes out again and its caller keeps waiting
        elif self._responses.busy:
            self._local_error("response_lost", "the connection closed during response "
                              f"{self._responses.response_id}")
            self._responses.finish()
        for change in self.conversation.abandon_in_progress():
            self._publish(change)
        # Audio still queued for the old connection is kept for the new one.
        self._supervisor.drain_outbox_into_outage()

    def _fail_waiters(self) -> None:
        self._fail_item_requests(self._final_error)
        self._responses.finish()

    def _report_lost(self, delivery: Delivery, why: str) -> None:
        self.metrics.client_events_lost += 1
        self._local_error("client_event_lost",
                          f"{delivery.type} {delivery.event_id}"
                          + (f" (item {delivery.item_id})" if delivery.item_id else "")
                          + f" was written before the connection dropped and {why}: the "
                          "server may never have had it", **delivery.describe())
        if delivery.type == "response.create" and self._responses.requested \
                and delivery.event_id == self._responses.request_event_id:
            self._responses.finish()

    def _on_message(self, message: bytes, is_text: bool) -> None:
        if not is_text:
            self._local_error("binary_frame", "the server sent a binary frame; ignored")
            return
        self._log_wire("server", message)
        try:
            delta = self._downlink.decode(message)
            if delta is not None:
                if not (self.conversation.is_out_of_band(delta.response_id)
                        or delta.response_id in self._muted_responses
                        or delta.item_id in self._muted_items):
                    self._on_audio(delta.item_id, delta.content_index, delta.samples)
                if self._listening("response.output_audio.delta"):
                    # Parsed only when asked for: the fast path skips the JSON parse.
                    self._emit_server_event(self._parse(message))
                return
            event = self._parse(message)
            self._dispatch(event)
            self._emit_server_event(event)
        except Exception as exc:
            # The server's bytes are not ours to trust: whatever a frame does (bad JSON or
            # UTF-8, absurd nesting, a schema it breaks, a shape a handler trips on), it costs
            # that one event, reported, and the session goes on.
            self._invalid_server_event(message, exc)

    def _invalid_server_event(self, message: bytes, exc: BaseException) -> None:
        self.metrics.invalid_server_events += 1
        reason = f"{type(exc).__name__}: {exc}"[:300]
        self._local_error("invalid_server_event",
                          f"a server event could not be used and was skipped: {reason}",
                          bytes=len(message), reason=reason)

    def _on_audio(self, item_id: str, content_index: int, samples: np.ndarray) -> None:
        if self.local_playback:
            accepted = self.playback.push(item_id, content_index, samples)
            if accepted < len(samples):
                self.metrics.playback_dropped_samples += len(samples) - accepted
        change = self.conversation.append_audio(item_id, samples)
        self._on_first_delta(item_id)
        if change is not None and self._listening("conversation.updated"):
            self._emit("conversation.updated", {"item": change.item, "delta": change.delta})

    def _parse(self, message: str | bytes) -> dict[str, Any]:
        # One currency inside the client: validated dicts (ARCHITECTURE.md, "the client").
        return parse_server_event_dict(message, protocol=self.protocol)

    # ---- server events ----

    def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event.get("type", "")
        if kind == "error":
            self._on_error(event)
            return
        if kind in ("session.created", "session.updated"):
            if kind == "session.updated":
                self._ledger.confirm_session_update()
            self._on_session(event)
        elif kind == "response.created":
            response = event.get("response") or {}
            self._ledger.confirm_response(
                self._responses.request_event_id if self._responses.requested else None,
                out_of_band=is_out_of_band(response))
            self._on_response_created(event)
        elif kind in ("conversation.item.added", "conversation.item.created"):
            item = event.get("item")
            if isinstance(item, Mapping) and isinstance(item.get("id"), str):
                self._ledger.confirm_item(item["id"])
        elif kind == "response.done":
            self._on_response_done(event)
        elif kind == "conversation.item.retrieved":
            item = event.get("item")
            if isinstance(item, Mapping):
                self._answer_item_request(kind, item.get("id"), item)
        elif kind == "conversation.item.deleted":
            self._answer_item_request(kind, event.get("item_id"))
        elif kind == "input_audio_buffer.speech_started":
            self._turn = None
            if self._tg is not None:
                self._barge_in.on_speech_started(event)
        elif kind == "input_audio_buffer.speech_stopped":
            self._speech_end = time.perf_counter()
            self._barge_in.on_speech_stopped(event)
        elif kind == "input_audio_buffer.committed":
            self._uncommitted_ms = 0.0
        elif kind == "conversation.item.input_audio_transcription.completed":
            self.usage.add_transcription(event)
            self._barge_in.on_transcript(event)
        elif kind == "rate_limits.updated":
            self._rate_limits = [limit for limit in event.get("rate_limits") or ()
                                 if isinstance(limit, Mapping)]
        try:
            changes = self.conversation.apply(event)
        except (ValueError, TypeError) as exc:
            self._local_error("bad_server_event", f"{kind}: {exc}")
            return
        for change in changes:
            self._publish(change)
        if kind == "conversation.item.input_audio_transcription.failed":
            # Not a session failure, but the user's words are missing from the transcript:
            # surfaced, attributed to its item, never dropped.
            error = dict(event.get("error") or {})
            error.setdefault("type", "transcription_error")
            self._emit("error", {"error": error, "item_id": event.get("item_id"),
                                 "local": False, "benign": False})

    def _publish(self, change: Change) -> None:
        if change.appended:
            self._emit("conversation.item.appended", {"item": change.item})
            self._wake_item_waiters(change.item, completed=False)
        if change.delta is not None or not (change.appended or change.completed):
            self._emit("conversation.updated", {"item": change.item, "delta": change.delta})
        if change.completed:
            self._emit("conversation.item.completed", {"item": change.item})
            self._wake_item_waiters(change.item, completed=True)

    def _on_session(self, event: dict[str, Any]) -> None:
        session = event.get("session") or {}
        self._server_session = dict(session)
        # The formats this client asked for win: session.created carries the server's defaults
        # and arrives after our session.update was already sent, so audio appended meanwhile
        # is in the format the server will apply first. The server's word fills in only what
        # the config leaves unsaid.
        audio = session.get("audio") or {}
        asked = self._config.get("audio") or {}
        for direction in ("input", "output"):
            if (asked.get(direction) or {}).get("format") is None:
                self._set_format(direction, (audio.get(direction) or {}).get("format"))

    def _set_format(self, direction: str, format_: Any) -> None:
        name = _format_name(format_)
        if direction == "output" and name != self._output_format:
            self._output_format = name
            self._downlink = self._new_downlink(name)
        elif direction == "input" and name != self._input_format:
            self._input_format = name
            self._uplinks.clear()  # one Uplink per input rate and channels, for the current format

    def _on_error(self, event: dict[str, Any]) -> None:
        error = event.get("error") or {}
        code = error.get("code")
        answered = self._ledger.answer_error(error)
        for request in self._item_requests:
            if error.get("event_id") is not None and error.get("event_id") == request.event_id \
                    and not request.answered.is_set():
                request.error = dict(error)
                request.answered.set()
        # A replayed item the server already has: it got there, and only once.
        benign = code in BENIGN_ERROR_CODES or (answered is not None
                                                and answered.outcome == "confirmed")
        self._responses.on_error(error)
        self._emit("error", {"error": error, "local": False, "benign": benign})

    def _on_response_created(self, event: dict[str, Any]) -> None:
        response = event.get("response") or {}
        if is_out_of_band(response):
            return  # not part of the one-at-a-time rule
        requested = self._responses.requested_at if self._responses.requested else None
        self._responses.started(response.get("id"))
        turn = TurnMetrics(response_id=response.get("id"), _speech_end=self._speech_end,
                           _requested=requested)
        self._speech_end = None
        self._turn = turn
        self.metrics.turns.append(turn)

    def _on_response_done(self, event: dict[str, Any]) -> None:
        response = event.get("response") or {}
        self.usage.add_response(response)
        if is_out_of_band(response) or not self._responses.owns_done(response.get("id")):
            return
        calls = function_calls(response)
        self._responses.finish()
        if calls and self._tg is not None:
            turn = self._turn
            self._tg.start_soon(run_tool_calls, self, calls,
                                turn.tool_run_s if turn is not None else None, _new_item_id)

    # ---- metrics ----

    def _on_first_delta(self, item_id: str) -> None:
        turn = self._turn
        if turn is None or turn._first_delta is not None:
            return
        now = time.perf_counter()
        turn._first_delta = now
        turn._first_item = item_id
        if turn._speech_end is not None:
            turn.speech_end_to_first_delta_s = now - turn._speech_end
        if turn._requested is not None:
            turn.request_to_first_delta_s = now - turn._requested
        if self._telemetry is not None:
            self._telemetry.record(turn, "speech_end_to_first_delta_s",
                                   "request_to_first_delta_s")
        self._audible_watch = (item_id, now)
        self._audible_pending.set()

    async def _audible_watcher(self) -> None:
        # Polls the device's progress only between a turn's first delta and its first played
        # sample (usually tens of ms); otherwise it sleeps on an event.
        while True:
            await self._audible_pending.wait()
            self._audible_pending = anyio.Event()
            deadline = time.perf_counter() + 30.0
            while self._audible_watch is not None and time.perf_counter() < deadline:
                item_id, since = self._audible_watch
                if self._barge_in.heard_any(item_id):
                    if self._turn is not None:
                        self._turn.first_delta_to_first_audible_s = time.perf_counter() - since
                        if self._telemetry is not None:
                            self._telemetry.record(self._turn, "first_delta_to_first_audible_s")
                    self._audible_watch = None
                    break
                await anyio.sleep(0.002)


async def _await_handler(result: Awaitable[Any], client: RealtimeClient, name: str) -> None:
    try:
        await result
    except Exception as exc:
        if name != "error":
            client._emit("error", {"error": {"type": "handler_error",
                                             "message": f"{type(exc).__name__}: {exc}"},
                                   "local": True})


def _call_soon_threadsafe(token: Any) -> Callable[[Callable[[], object]], object]:
    """The running loop's own way to schedule a callback from another thread without waiting
    for it (``anyio.from_thread.run_sync`` waits for the result, and so blocks the caller
    while the loop is busy)."""
    native = token.native_token
    for name in ("call_soon_threadsafe", "run_sync_soon"):  # asyncio's loop, trio's token
        schedule = getattr(native, name, None)
        if schedule is not None:
            return schedule  # type: ignore[no-any-return]
    raise RuntimeError(f"no thread-safe scheduling on {type(native).__name__}")


_NATIVE_DTYPES = (np.dtype(np.float32), np.dtype(np.int16))


def _as_audio(samples: npt.ArrayLike) -> np.ndarray:
    """float32 or int16 samples, contiguous, from any numeric audio."""
    if type(samples) is np.ndarray and samples.ndim and samples.flags.c_contiguous \
            and samples.dtype in _NATIVE_DTYPES:
        return samples  # the common case, on the audio thread: no numpy call at all
    frame = np.asarray(samples)
    if frame.dtype == np.float32 or frame.dtype == np.int16:
        return np.ascontiguousarray(frame)
    if np.issubdtype(frame.dtype, np.floating):
        return np.ascontiguousarray(frame, dtype=np.float32)
    if np.issubdtype(frame.dtype, np.signedinteger):
        scale = float(np.iinfo(frame.dtype).max) + 1.0
        return (frame.astype(np.float64) / scale).astype(np.float32)
    if np.issubdtype(frame.dtype, np.unsignedinteger):
        middle = (float(np.iinfo(frame.dtype).max) + 1.0) / 2
        return ((frame.astype(np.float64) - middle) / middle).astype(np.float32)
    raise TypeError(f"audio samples must be numeric, got dtype {frame.dtype}")


def _check_event_name(name: str) -> None:
    """ValueError unless ``name`` is a server event type (GA name) or a client notification."""
    if name in NOTIFICATION_TYPES or name in _events.SERVER_EVENT_TYPES:
        return
    ga_name = SERVER_TYPES_FROM_BETA.get(name)
    if ga_name is not None:
        hint = f"; events have their GA names in every session: use {ga_name!r}"
    else:
        close = difflib.get_close_matches(
            name, [*NOTIFICATION_TYPES, *_events.SERVER_EVENT_TYPES], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"{name!r} is neither a server event type nor a client notification "
                     f"(see realtalk.events.SERVER_EVENT_TYPES and "
                     f"realtalk.client.NOTIFICATION_TYPES){hint}")


def _deep_merge(target: dict[str, Any], update: Mapping[str, Any]) -> None:
    """Merge ``update`` into ``target`` as copies: nested mappings become dicts of their own,
    so nothing the caller passed is shared with (or changed through) the client's config."""
    for key, value in update.items():
        if isinstance(value, Mapping):
            if not isinstance(target.get(key), dict):
                target[key] = {}
            _deep_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _format_name(format_: Any) -> str:
    if format_ is None:
        return "pcm16"
    if isinstance(format_, str):
        return {"pcm16": "pcm16", "g711_ulaw": "g711_ulaw", "g711_alaw": "g711_alaw"}.get(
            format_, _FORMATS.get(format_, "pcm16"))
    if isinstance(format_, Mapping):
        return _FORMATS.get(str(format_.get("type")), "pcm16")
    return "pcm16"


def _vad_kind(event: Any) -> str:
    if isinstance(event, Mapping):
        return str(event.get("type", ""))
    for attribute in ("type", "kind", "name"):
        value = getattr(event, attribute, None)
        if isinstance(value, str):
            return value
    if isinstance(event, tuple) and event and isinstance(event[0], str):
        return event[0]
    return str(event)


def _loads(message: str | bytes) -> Any:
    try:
        return msgspec.json.decode(message)
    except (msgspec.DecodeError, RecursionError):
        return {"type": None, "raw": message}
