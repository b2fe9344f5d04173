"""One relayed connection: the two pumps, the checks on each client event, the watchdog."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from itertools import count
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import anyio
import msgspec

from realtalk.errors import ConnectionClosed, ProtocolError
from realtalk.events import new_event_id, response_from_beta, session_from_beta
from realtalk.relay.policy import (
    TokenBucket,
    base64_decoded_size,
    encoded_audio_bytes,
    pinned_violation,
    system_item_path,
)
from realtalk.transport import WebSocket

if TYPE_CHECKING:
    from realtalk.relay.server import Relay

_CONFIG_EVENTS = frozenset({"session.update", "transcription_session.update",
                            "response.create"})
_INSPECTED_EVENTS = _CONFIG_EVENTS | {"conversation.item.create"}
_INPUT_BYTES_PER_S = {"audio/pcm": 48000, "audio/pcmu": 8000, "audio/pcma": 8000}
_BETA_INPUT_BYTES_PER_S = {"pcm16": 48000, "g711_ulaw": 8000, "g711_alaw": 8000}
_SENDABLE_CODES = frozenset(range(3000, 5000)) | {1000, 1001, 1002, 1003, 1007, 1008, 1009,
                                                  1010, 1011, 1012, 1013, 1014}


class _Envelope(msgspec.Struct):
    type: str
    event_id: Any = None
    audio: Any = None


_envelope = msgspec.json.Decoder(_Envelope)
_any_json = msgspec.json.Decoder()
_encode = msgspec.json.Encoder().encode
_ids = count(1)


def _error_event(
    code: str | None, message: str, *, param: str | None = None, event_id: Any = None,
    error_type: str = "invalid_request_error",
) -> bytes:
    return _encode({
        "type": "error",
        "event_id": new_event_id(),
        "error": {"type": error_type, "code": code, "message": message, "param": param,
                  "event_id": event_id if isinstance(event_id, str) else None},
    })


def _expiry_reason(seconds: float) -> str:
    if seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"Your session hit the maximum duration of {minutes} minute{'s' * (minutes != 1)}."
    return f"Your session hit the maximum duration of {seconds:g} second{'s' * (seconds != 1)}."


class _Detour(Exception):
    """Raised by a pump's message handler, which runs in the reader and cannot wait, for the
    part of its work that must: ``work()`` is awaited before the next message is handled."""

    def __init__(self, work: Callable[[], Awaitable[None]]) -> None:
        super().__init__()
        self.work = work


class _Ended(Exception):
    """A pump or the watchdog decided how the connection ends; the other tasks stop."""


@dataclass
class _Connection:
    relay: Relay
    client: WebSocket
    protocol: Literal["ga", "beta"] = "ga"
    subject: str | None = None
    subject_key: str = ""  # what per-subject limits count: the subject, else the token
    id: str = field(default_factory=lambda: f"c{next(_ids):x}")
    started: float = field(default_factory=anyio.current_time)
    last_activity: float = 0.0
    events_from_client: int = 0
    bytes_from_client: int = 0
    events_to_client: int = 0
    bytes_to_client: int = 0
    refused: int = 0
    close: str = ""
    input_bytes_per_s: int = 48000
    refusal_times: deque[float] = field(default_factory=deque)
    upstream: WebSocket | None = None
    token_expires_at: float | None = None  # anyio clock; set when the session should end then
    messages: TokenBucket | None = field(init=False)
    audio: TokenBucket | None = field(init=False)

    def __post_init__(self) -> None:
        policy = self.relay.policy
        now = self.started
        self.last_activity = now
        self.messages = (None if policy.max_messages_per_s is None
                         else TokenBucket(policy.max_messages_per_s, policy.burst_s, now))
        self.audio = (None if policy.max_audio_seconds_per_s is None
                      else TokenBucket(policy.max_audio_seconds_per_s, policy.burst_s, now))

    # -- downstream helpers --

    async def send_client(self, data: bytes, is_text: bool = True) -> None:
        """Send one message downstream, scrubbed: every downstream byte goes through here or
        through ``upstream_to_client``'s fast path, which scrubs the same way."""
        await self._send_scrubbed(self.relay._scrubber.data(data), is_text)

    async def _send_scrubbed(self, data: bytes, is_text: bool = True) -> None:
        if is_text:
            await self.client.send_text(data)
        else:
            await self.client.send_binary(data)
        self.count_to_client(1, len(data))

    async def close_client(self, code: int, reason: str) -> None:
        """Close the client's side; every downstream close reason goes through here."""
        await self.client.close(code, self.relay._scrubber.reason(reason))

    def count_to_client(self, events: int, size: int) -> None:
        self.events_to_client += events
        self.bytes_to_client += size
        stats = self.relay._stats
        stats.events_to_client += events
        stats.bytes_to_client += size

    # -- client -> upstream --

    async def refuse(self, code: str | None, message: str, *, param: str | None = None,
                     event_id: Any = None) -> None:
        self.refused += 1
        self.relay._stats.events_refused += 1
        policy = self.relay.policy
        now = anyio.current_time()
        times = self.refusal_times
        times.append(now)
        while times and times[0] <= now - policy.abuse_window_s:
            times.popleft()
        if len(times) > policy.max_refused_events:
            self.relay._stats.abuse_closes += 1
            await self.send_client(_error_event(
                "too_many_refused_events",
                f"More than {policy.max_refused_events} events were refused within "
                f"{policy.abuse_window_s:g} s; the relay closes this connection.",
            ))
            self.close = self.close or "relay 1008 (too many refused events)"
            await self.close_client(1008, "too many refused events")
            raise _Ended(self.close)
        await self.send_client(_error_event(code, message, param=param, event_id=event_id))

    def check_pinned(self, event_type: str, event: Mapping[str, Any]) -> tuple[str, str] | None:
        """(param, message) if the event changes what pinning covers (see RelayPolicy)."""
        policy = self.relay.policy
        if not policy.allow_system_items:
            param = system_item_path(event_type, event)
            if param is not None:
                return param, "System messages cannot be added through this relay."
        pinned = policy.pinned_paths
        if not pinned or event_type not in _CONFIG_EVENTS:
            return None
        if event_type in ("session.update", "transcription_session.update"):
            container, config = "session", event.get("session")
            if self.protocol == "beta" and isinstance(config, Mapping):
                kind = "transcription" if event_type.startswith("transcription") else "realtime"
                config = session_from_beta(config, kind=kind)
        else:
            container, config = "response", event.get("response")
            if self.protocol == "beta" and isinstance(config, Mapping):
                config = response_from_beta(config, is_request=True)
        path = pinned_violation(config, pinned)
        if path is None:
            return None
        param = ".".join((container, *path))
        return param, f"Parameter '{param}' is fixed by this relay and cannot be changed."

    async def client_to_upstream(self, upstream: WebSocket) -> NoReturn:
        """Forward the client's events as they arrive: each is checked and written upstream in
        the client's reader (``consume``), with no task switch, unless it is refused or the
        upstream socket cannot take it at once; then the pump awaits that (a _Detour) and goes
        on with the next."""

        def forward(data: bytes, is_text: bool) -> None:
            verdict = self._check(data, is_text)
            if verdict is not None:
                if not isinstance(verdict, bytes):
                    raise _Detour(verdict)
                data = verdict
            if not upstream.try_send_text(data):
                raise _Detour(partial(upstream.send_text, data))

        while True:
            try:
                await self.client.consume(forward)
            except _Detour as detour:
                try:
                    await detour.work()
                except ConnectionClosed:
                    if upstream.closed:  # the upstream pump reports how the upstream ended
                        await anyio.sleep_forever()
                    # else the client is gone: the next consume says how
            except ConnectionClosed as exc:
                self.close = self.close or f"client {exc.code} ({exc.reason})"
                await upstream.close(*_upstream_close(exc.code, exc.reason))
                raise _Ended(self.close) from None
            except ProtocolError as exc:  # over max_message_bytes (1009), bad UTF-8 ...
                if "too big" in str(exc):
                    self.relay._stats.oversize_closes += 1
                    self.close = self.close or "relay 1009 (client message too big)"
                else:
                    self.close = self.close or f"client broke the protocol ({exc})"
                await upstream.close(1000, "client connection failed")
                raise _Ended(self.close) from None

    def _check(
        self, data: bytes, is_text: bool
    ) -> Callable[[], Awaitable[None]] | bytes | None:
        """None if a client message may go upstream as it is, the bytes to send instead (the
        event as the relay read it, when it checked its content), or the refusal to send
        back."""
        policy = self.relay.policy
        stats = self.relay._stats
        messages, audio = self.messages, self.audio
        now = anyio.current_time()
        self.last_activity = now
        self.events_from_client += 1
        self.bytes_from_client += len(data)
        stats.events_from_client += 1
        stats.bytes_from_client += len(data)
        refuse = self.refuse
        if not is_text:
            return partial(refuse, "invalid_event", "Expected a text WebSocket message; binary "
                           "frames are not supported.")
        if not data.isascii():
            try:
                data.decode()
            except UnicodeDecodeError:  # as websockets would: the upstream never sees it
                return self.invalid_utf8
        try:
            envelope = _envelope.decode(data)
        except msgspec.ValidationError:
            return partial(refuse, "invalid_event", "The event is not an object with a string "
                           "'type' field.", param="type")
        except msgspec.DecodeError as exc:
            return partial(refuse, "invalid_json", f"Invalid event: failed to parse JSON value. "
                           f"{exc}")
        except RecursionError:
            return partial(refuse, "invalid_json", "Invalid event: nested too deeply.")
        event_type = envelope.type
        event_id = envelope.event_id
        if event_type not in policy.allowed_events:
            return partial(refuse, "event_not_allowed", f"Event type '{event_type}' is not "
                           "allowed by this relay.", param="type", event_id=event_id)
        if messages is not None and not messages.take(1.0, now):
            return partial(refuse, "rate_limit_exceeded", "Too many events: the relay allows "
                           f"{policy.max_messages_per_s:g} per second.", event_id=event_id)
        event: Mapping[str, Any] | None = None
        if event_type == "input_audio_buffer.append":
            size = base64_decoded_size(envelope.audio) if isinstance(envelope.audio, str) else 0
        else:
            # Audio may ride in any event (input_audio parts of items, response.create's
            # input), and pinning looks inside config events: decode those whole.
            size = 0
            if b'"audio"' in data or event_type in _INSPECTED_EVENTS:
                try:
                    event = _any_json.decode(data)
                except RecursionError:
                    return partial(refuse, "invalid_json", "Invalid event: nested too deeply.",
                                   event_id=event_id)
                size = encoded_audio_bytes(event)
        if size:
            seconds = size / self.input_bytes_per_s
            if audio is not None and not audio.take(seconds, now):
                return partial(refuse, "rate_limit_exceeded", "Too much audio: the relay allows "
                               f"{policy.max_audio_seconds_per_s:g} seconds of audio per "
                               "second.", param="audio", event_id=event_id)
            stats.audio_seconds_from_client += seconds
        if event is not None:
            violation = self.check_pinned(event_type, event)
            if violation is not None:
                return partial(refuse, "pinned_parameter", violation[1], param=violation[0],
                               event_id=event_id)
            if self.relay.policy.restricts_content and event_type in _INSPECTED_EVENTS:
                # What goes up is what was checked: a parser that reads a duplicated key or an
                # odd number differently upstream cannot see another event.
                return _encode(event)
        return None

    async def invalid_utf8(self) -> NoReturn:
        self.close = self.close or "relay 1007 (invalid UTF-8 from the client)"
        await self.close_client(1007, "invalid UTF-8 in a text frame")
        raise _Ended(self.close)

    # -- upstream -> client --

    def track_session(self, data: bytes) -> None:
        """Follow the session's input audio format (it sets how much audio a byte is)."""
        try:
            event = _any_json.decode(data)
        except msgspec.DecodeError:
            return
        if not isinstance(event, dict) or event.get("type") not in (
            "session.created", "session.updated", "transcription_session.updated"
        ):
            return
        session = event.get("session")
        if not isinstance(session, dict):
            return
        if self.protocol == "beta":
            rate = _BETA_INPUT_BYTES_PER_S.get(str(session.get("input_audio_format")))
        else:
            audio_config = session.get("audio")
            input_config = audio_config.get("input") if isinstance(audio_config, dict) else None
            fmt = input_config.get("format") if isinstance(input_config, dict) else None
            rate = None
            if isinstance(fmt, dict):
                rate = _INPUT_BYTES_PER_S.get(str(fmt.get("type")))
                if rate == 48000 and isinstance(fmt.get("rate"), int):
                    rate = 2 * fmt["rate"]
        if rate:
            self.input_bytes_per_s = rate

    async def upstream_to_client(self, upstream: WebSocket) -> NoReturn:
        """Forward the upstream's events as they arrive, like ``client_to_upstream``."""
        scrub = self.relay._scrubber.data
        client = self.client

        def forward(data: bytes, is_text: bool) -> None:
            self.last_activity = anyio.current_time()
            data = scrub(data)  # the key never goes downstream
            if b'"session.' in data:
                self.track_session(data)
            if is_text and client.try_send_text(data):
                self.count_to_client(1, len(data))
            else:
                raise _Detour(partial(self._send_scrubbed, data, is_text))

        while True:
            try:
                await upstream.consume(forward)
            except _Detour as detour:
                try:
                    await detour.work()
                except ConnectionClosed:
                    await anyio.sleep_forever()  # the client pump reports how the client ended
            except ConnectionClosed as exc:
                self.close = self.close or f"upstream {exc.code} ({exc.reason})"
                await self.close_client(*_downstream_close(exc.code, exc.reason))
                raise _Ended(self.close) from None
            except ProtocolError as exc:
                self.close = self.close or f"upstream broke the protocol ({exc})"
                await self.close_client(1011, "upstream connection failed")
                raise _Ended(self.close) from None

    async def watchdog(self) -> NoReturn:
        policy = self.relay.policy
        session_end = (math.inf if policy.max_session_s is None
                       else self.started + policy.max_session_s)
        token_end = math.inf if self.token_expires_at is None else self.token_expires_at
        while True:
            now = anyio.current_time()
            if now >= session_end:
                assert policy.max_session_s is not None
                self.relay._stats.expired_sessions += 1
                self.close = self.close or "relay 1001 (maximum session length)"
                await self.close_client(1001, _expiry_reason(policy.max_session_s))
                raise _Ended(self.close)
            if now >= token_end:
                self.relay._stats.expired_sessions += 1
                self.close = self.close or "relay 1001 (token expired)"
                await self.close_client(1001, "Your relay token expired.")
                raise _Ended(self.close)
            idle_end = math.inf
            if policy.idle_timeout_s is not None:
                idle_end = self.last_activity + policy.idle_timeout_s
                if now >= idle_end:
                    self.relay._stats.idle_closes += 1
                    self.close = self.close or "relay 1001 (idle timeout)"
                    await self.close_client(
                        1001, f"Idle timeout: no events for {policy.idle_timeout_s:g} s."
                    )
                    raise _Ended(self.close)
            await anyio.sleep(min(session_end, token_end, idle_end) - now)


def _upstream_close(code: int, reason: str) -> tuple[int, str]:
    """The close sent upstream when the client closed with ``code``."""
    if code in _SENDABLE_CODES:
        return code, reason
    return 1000, "" if code == 1005 else "client went away"


def _downstream_close(code: int, reason: str) -> tuple[int, str]:
    """The close sent to the client when the upstream closed with ``code``."""
    if code == 3000:  # the relay's own key was refused: nothing the client can fix
        return 1011, "upstream refused the relay's credentials"
    if code in _SENDABLE_CODES:
        return code, reason
    return 1011, "upstream connection lost"


