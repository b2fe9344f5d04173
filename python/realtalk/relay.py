"""A Realtime relay: browsers and devices talk to the Realtime API through your server, which
holds the API key; clients only ever hold a short-lived relay token::

    token = issue_token(SECRET, ttl=600)                      # hand this to the browser
    async with Relay("wss://api.openai.com/v1/realtime", api_key=KEY, secret=SECRET) as relay:
        ...                                                   # clients connect to relay.url

The browser connects as it would to OpenAI, with the token in the subprotocol list
(``new WebSocket(url, ["realtime", "openai-insecure-api-key." + token])``); other clients send
``Authorization: Bearer <token>``. Each authenticated client gets its own upstream connection,
made with the relay's key; events flow both ways unchanged (no re-serialisation), checked
against a :class:`RelayPolicy`:

- unauthenticated: an ``error`` event and close 3000 before any upstream connection is made
  (as the API refuses a bad key); relay full: close 1013;
- an event type outside the allowlist, a ``session.update``/``response.create`` that changes a
  pinned field, a binary frame, a malformed event or one over a rate limit: an ``error`` event
  in the API's own shape (``error.event_id`` echoes the client's), the event is dropped and the
  session goes on; more than ``max_refused_events`` refusals within ``abuse_window_s``: close
  1008;
- a message over ``max_message_bytes``: close 1009 (the frame is never buffered);
- idle for ``idle_timeout_s``: close 1001; ``max_session_s`` reached: close 1001 with the
  API's own reason ("Your session hit the maximum duration of N minutes.");
- close codes and reasons propagate both ways. When a side vanishes without a close frame the
  other side is closed cleanly (client gone: upstream 1000; upstream gone: client 1011). An
  upstream 3000 concerns the relay's key, not the client: the client gets 1011 and a generic
  error, never the upstream's message (which quotes part of the key).

The key is never sent downstream (frames are also scrubbed of it), never logged and never in an
error. The client's token never goes upstream (the upstream request is built from scratch).

Observability: one INFO log line per connection on the ``realtalk.relay`` logger (id, subject,
duration, bytes and events each way, refusals, who closed and how; the same fields as a dict
in the record's ``relay`` attribute), :attr:`Relay.stats`, and Prometheus text at
``GET /metrics``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import math
import os
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import partial
from itertools import count
from typing import Any, Literal, NoReturn

import anyio
import msgspec

from realtalk.connection import realtime_request
from realtalk.errors import ConnectionClosed, ProtocolError, RealtalkError
from realtalk.events import (
    CLIENT_EVENT_TYPES,
    new_event_id,
    response_from_beta,
    serialize_client_event,
    session_from_beta,
)
from realtalk.transport import (
    DEFAULT_MAX_SIZE,
    Compression,
    HTTPRequest,
    HTTPResponse,
    WebSocket,
    WebSocketServer,
    open_websocket,
)

__all__ = [
    "DOCUMENTED_CLIENT_EVENTS",
    "Authenticator",
    "InvalidToken",
    "Relay",
    "RelayPolicy",
    "RelayStats",
    "TokenClaims",
    "issue_token",
    "run_relay",
    "verify_token",
]

logger = logging.getLogger("realtalk.relay")

DOCUMENTED_CLIENT_EVENTS = frozenset({*CLIENT_EVENT_TYPES, "transcription_session.update"})
"""Every documented client event type (GA names, plus the beta-only
``transcription_session.update``): the default allowlist."""

_KEY_SUBPROTOCOL = "openai-insecure-api-key."
_BETA_SUBPROTOCOL = "openai-beta.realtime-v1"
_INPUT_BYTES_PER_S = {"audio/pcm": 48000, "audio/pcmu": 8000, "audio/pcma": 8000}
_BETA_INPUT_BYTES_PER_S = {"pcm16": 48000, "g711_ulaw": 8000, "g711_alaw": 8000}
_SENDABLE_CODES = frozenset(range(3000, 5000)) | {1000, 1001, 1002, 1003, 1007, 1008, 1009,
                                                  1010, 1011, 1012, 1013, 1014}


# ---- relay tokens: HMAC-signed, expiring ------------------------------------------------------


class InvalidToken(RealtalkError):
    """A relay token was malformed, forged or expired; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid relay token: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified relay token says: its ``subject`` (or None) and ``expires_at`` (epoch
    seconds)."""

    subject: str | None
    expires_at: float


_TOKEN_PREFIX = "rt1."
_claims_encoder = msgspec.json.Encoder()


class _Claims(msgspec.Struct, forbid_unknown_fields=True):
    exp: int
    sub: str | None = None
    nonce: str = ""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _secret_bytes(secret: str | bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    if len(key) < 16:
        raise ValueError("the relay secret must be at least 16 bytes")
    return key


def _sign(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())


def issue_token(
    secret: str | bytes, ttl: float, *, subject: str | None = None, now: float | None = None
) -> str:
    """A relay token valid for ``ttl`` seconds, signed with ``secret`` (HMAC-SHA256, at least
    16 bytes). ``subject`` (a user id ...) is carried and shows in the relay's log line. The
    token uses only characters allowed in a WebSocket subprotocol, so browsers can send it as
    ``openai-insecure-api-key.<token>``."""
    if not ttl > 0:
        raise ValueError("ttl must be positive")
    issued = time.time() if now is None else now
    claims = _Claims(exp=math.ceil(issued + ttl), sub=subject, nonce=_b64(os.urandom(9)))
    payload = _b64(_claims_encoder.encode(claims))
    return f"{_TOKEN_PREFIX}{payload}.{_sign(_secret_bytes(secret), payload)}"


def verify_token(secret: str | bytes, token: str, *, now: float | None = None) -> TokenClaims:
    """Check a token made by :func:`issue_token`; :class:`InvalidToken` if it is malformed,
    not signed with ``secret`` or expired."""
    key = _secret_bytes(secret)
    if not token.startswith(_TOKEN_PREFIX):
        raise InvalidToken("malformed")
    payload, dot, signature = token[len(_TOKEN_PREFIX):].partition(".")
    if not dot or not payload:
        raise InvalidToken("malformed")
    if not hmac.compare_digest(_sign(key, payload).encode(), signature.encode()):
        raise InvalidToken("bad signature")
    try:
        claims = msgspec.json.decode(_unb64(payload), type=_Claims)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise InvalidToken("malformed") from None
    if claims.exp <= (time.time() if now is None else now):
        raise InvalidToken("expired")
    return TokenClaims(claims.sub, float(claims.exp))


# ---- policy ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RelayPolicy:
    """What clients may do through the relay (one per deployment).

    - ``allowed_events``: client event types forwarded (wire names); default every documented
      client event.
    - ``pinned_session``: a GA session config (``{"instructions": ..., "tools": [...],
      "audio": {"output": {"voice": "marin"}}}``) the relay applies when the session opens
      (the client's ``session.created`` already shows it) and that clients cannot change: a
      ``session.update`` or ``response.create`` that sets one of its fields to another value
      is refused as a whole (the API's own rule for invalid updates).
    - ``model``: the model asked of the upstream when its URL names none; ``allowed_models``:
      models a client may pick with ``?model=`` (others are refused with close 4000); empty:
      the client's choice is ignored.
    - ``max_message_bytes``: larger client messages close the connection with 1009.
    - ``max_messages_per_s`` and ``max_audio_seconds_per_s``: token buckets that hold
      ``burst_s`` seconds of their rate; an event over either is refused. None: no limit.
    - ``max_refused_events`` within ``abuse_window_s``: one more closes with 1008.
    - ``idle_timeout_s``: no event either way for this long closes with 1001.
    - ``max_session_s``: sessions end with 1001 at this age. ``max_sessions``: concurrent
      sessions; more are refused with 1013.
    - ``allowed_origins``: browsers' ``Origin`` values accepted (others get HTTP 403); None
      accepts any. ``allow_beta``: accept beta clients (``OpenAI-Beta: realtime=v1``).
    """

    allowed_events: Collection[str] = DOCUMENTED_CLIENT_EVENTS
    pinned_session: Mapping[str, Any] | None = None
    model: str = "gpt-realtime"
    allowed_models: Collection[str] = ()
    max_message_bytes: int = DEFAULT_MAX_SIZE
    max_messages_per_s: float | None = 100.0
    max_audio_seconds_per_s: float | None = 2.0
    burst_s: float = 2.0
    max_refused_events: int = 20
    abuse_window_s: float = 10.0
    idle_timeout_s: float | None = 300.0
    max_session_s: float | None = 3600.0
    max_sessions: int | None = 1000
    allowed_origins: Collection[str] | None = None
    allow_beta: bool = True

    def __post_init__(self) -> None:
        if self.max_message_bytes <= 0:
            raise ValueError("max_message_bytes must be positive")
        for name in ("max_messages_per_s", "max_audio_seconds_per_s", "idle_timeout_s",
                     "max_session_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None")
        if not self.burst_s > 0 or not self.abuse_window_s > 0:
            raise ValueError("burst_s and abuse_window_s must be positive")
        if self.max_refused_events < 0:
            raise ValueError("max_refused_events must be >= 0")
        object.__setattr__(self, "allowed_events", frozenset(self.allowed_events))
        object.__setattr__(self, "allowed_models", frozenset(self.allowed_models))
        if self.allowed_origins is not None:
            object.__setattr__(self, "allowed_origins", frozenset(self.allowed_origins))
        pinned = dict(self.pinned_session or {})
        pinned.pop("type", None)
        object.__setattr__(self, "_pinned_paths", _leaf_paths(pinned))

    @property
    def pinned_paths(self) -> dict[tuple[str, ...], Any]:
        """The pinned leaves of ``pinned_session``: path -> value."""
        return self._pinned_paths  # type: ignore[attr-defined, no-any-return]


def _leaf_paths(
    config: Mapping[str, Any], prefix: tuple[str, ...] = ()
) -> dict[tuple[str, ...], Any]:
    leaves: dict[tuple[str, ...], Any] = {}
    for key, value in config.items():
        path = (*prefix, key)
        if isinstance(value, Mapping) and value:
            leaves.update(_leaf_paths(value, path))
        else:
            leaves[path] = value
    return leaves


_MISSING = object()


def _pinned_violation(
    config: Any, pinned: Mapping[tuple[str, ...], Any]
) -> tuple[str, ...] | None:
    """The first pinned path that ``config`` (a session or response object) sets to a value
    other than the pinned one, or None."""
    if not isinstance(config, Mapping):
        return None
    for path, value in pinned.items():
        node: Any = config
        for depth, key in enumerate(path):
            if not isinstance(node, Mapping):
                # A scalar (null ...) where the pinned subtree lives replaces it.
                return path[:depth]
            node = node.get(key, _MISSING)
            if node is _MISSING:
                break
        else:
            if node != value:
                return path
    return None


class _TokenBucket:
    __slots__ = ("capacity", "level", "rate", "updated")

    def __init__(self, rate: float, burst_s: float, now: float) -> None:
        self.rate = rate
        self.capacity = rate * burst_s
        self.level = self.capacity
        self.updated = now

    def take(self, amount: float, now: float) -> bool:
        level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now
        if amount > level:
            self.level = level
            return False
        self.level = level - amount
        return True


# ---- authentication ---------------------------------------------------------------------------

Authenticator = Callable[[str, HTTPRequest], Awaitable[object]]
"""``async def authenticate(token, request) -> identity``: a truthy identity (a user id, a
claims object ...) accepts the client; None or False refuses it (close 3000). ``request`` is the
upgrade request (path, query, headers such as ``Origin``)."""


def _client_token(request: HTTPRequest) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    for value in request.headers.get_all("Sec-WebSocket-Protocol"):
        for offered in value.split(","):
            offered = offered.strip()
            if offered.startswith(_KEY_SUBPROTOCOL) and len(offered) > len(_KEY_SUBPROTOCOL):
                return offered[len(_KEY_SUBPROTOCOL):]
    return None


def _offered_subprotocols(request: HTTPRequest) -> list[str]:
    return [p.strip() for value in request.headers.get_all("Sec-WebSocket-Protocol")
            for p in value.split(",")]


def _select_subprotocol(request: HTTPRequest, offered: Sequence[str]) -> str | None:
    # Browsers fail a handshake that answers none of the offered subprotocols; never echo the
    # one that carries the token.
    return "realtime" if "realtime" in offered else None


# ---- counters ---------------------------------------------------------------------------------


@dataclass
class RelayStats:
    """Counters since the relay started (``connections_open``/``sessions_open`` are gauges)."""

    connections_total: int = 0
    connections_open: int = 0
    sessions_total: int = 0
    sessions_open: int = 0
    auth_failures: int = 0
    capacity_refusals: int = 0
    upstream_failures: int = 0
    events_from_client: int = 0
    bytes_from_client: int = 0
    events_to_client: int = 0
    bytes_to_client: int = 0
    events_refused: int = 0
    audio_seconds_from_client: float = 0.0
    abuse_closes: int = 0
    oversize_closes: int = 0
    idle_closes: int = 0
    expired_sessions: int = 0

    def prometheus(self) -> str:
        """The counters in the Prometheus text exposition format."""
        lines = []
        for item in fields(self):
            gauge = item.name.endswith("_open")
            suffix = "" if gauge or item.name.endswith("_total") else "_total"
            name = f"realtalk_relay_{item.name}{suffix}"
            lines.append(f"# TYPE {name} {'gauge' if gauge else 'counter'}")
            lines.append(f"{name} {getattr(self, item.name)}")
        return "\n".join(lines) + "\n"


# ---- one relayed connection -----------------------------------------------------------------


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
    messages: _TokenBucket | None = field(init=False)
    audio: _TokenBucket | None = field(init=False)

    def __post_init__(self) -> None:
        policy = self.relay.policy
        now = self.started
        self.last_activity = now
        self.messages = (None if policy.max_messages_per_s is None
                         else _TokenBucket(policy.max_messages_per_s, policy.burst_s, now))
        self.audio = (None if policy.max_audio_seconds_per_s is None
                      else _TokenBucket(policy.max_audio_seconds_per_s, policy.burst_s, now))

    # -- downstream helpers --

    async def send_client(self, data: bytes, is_text: bool = True) -> None:
        if is_text:
            await self.client.send_text(data)
        else:
            await self.client.send_binary(data)
        self.count_to_client(1, len(data))

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
            await self.client.close(1008, "too many refused events")
            raise _Ended(self.close)
        await self.send_client(_error_event(code, message, param=param, event_id=event_id))

    def check_pinned(self, event_type: str, data: bytes) -> tuple[str, str] | None:
        """(param, message) if the event changes a pinned field."""
        pinned = self.relay.policy.pinned_paths
        if not pinned:
            return None
        raw = _any_json.decode(data)
        if event_type in ("session.update", "transcription_session.update"):
            container, config = "session", raw.get("session")
            if self.protocol == "beta" and isinstance(config, Mapping):
                kind = "transcription" if event_type.startswith("transcription") else "realtime"
                config = session_from_beta(config, kind=kind)
        else:
            container, config = "response", raw.get("response")
            if self.protocol == "beta" and isinstance(config, Mapping):
                config = response_from_beta(config, is_request=True)
        path = _pinned_violation(config, pinned)
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
            refusal = self._check(data, is_text)
            if refusal is not None:
                raise _Detour(refusal)
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

    def _check(self, data: bytes, is_text: bool) -> Callable[[], Awaitable[None]] | None:
        """None if a client message may go upstream, else the refusal to send back."""
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
        try:
            envelope = _envelope.decode(data)
        except msgspec.ValidationError:
            return partial(refuse, "invalid_event", "The event is not an object with a string "
                           "'type' field.", param="type")
        except msgspec.DecodeError as exc:
            return partial(refuse, "invalid_json", f"Invalid event: failed to parse JSON value. "
                           f"{exc}")
        event_type = envelope.type
        if event_type not in policy.allowed_events:
            return partial(refuse, "event_not_allowed", f"Event type '{event_type}' is not "
                           "allowed by this relay.", param="type", event_id=envelope.event_id)
        if messages is not None and not messages.take(1.0, now):
            return partial(refuse, "rate_limit_exceeded", "Too many events: the relay allows "
                           f"{policy.max_messages_per_s:g} per second.",
                           event_id=envelope.event_id)
        if isinstance(envelope.audio, str):
            encoded = envelope.audio
            size = len(encoded) * 3 // 4 - encoded[-2:].count("=")
            seconds = size / self.input_bytes_per_s
            if audio is not None and not audio.take(seconds, now):
                return partial(refuse, "rate_limit_exceeded", "Too much audio: the relay allows "
                               f"{policy.max_audio_seconds_per_s:g} seconds of audio per "
                               "second.", param="audio", event_id=envelope.event_id)
            stats.audio_seconds_from_client += seconds
        elif event_type in ("session.update", "transcription_session.update",
                            "response.create"):
            violation = self.check_pinned(event_type, data)
            if violation is not None:
                return partial(refuse, "pinned_parameter", violation[1], param=violation[0],
                               event_id=envelope.event_id)
        return None

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
        key = self.relay._key_bytes
        client = self.client

        def forward(data: bytes, is_text: bool) -> None:
            self.last_activity = anyio.current_time()
            if key in data:  # defence in depth: the key never goes downstream
                data = data.replace(key, b"[redacted]")
            if b'"session.' in data:
                self.track_session(data)
            if is_text and client.try_send_text(data):
                self.count_to_client(1, len(data))
            else:
                raise _Detour(partial(self.send_client, data, is_text))

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
                await client.close(*_downstream_close(exc.code, exc.reason))
                raise _Ended(self.close) from None
            except ProtocolError as exc:
                self.close = self.close or f"upstream broke the protocol ({exc})"
                await client.close(1011, "upstream connection failed")
                raise _Ended(self.close) from None

    async def watchdog(self) -> NoReturn:
        policy = self.relay.policy
        session_end = (math.inf if policy.max_session_s is None
                       else self.started + policy.max_session_s)
        while True:
            now = anyio.current_time()
            if now >= session_end:
                assert policy.max_session_s is not None
                self.relay._stats.expired_sessions += 1
                self.close = self.close or "relay 1001 (maximum session length)"
                await self.client.close(1001, _expiry_reason(policy.max_session_s))
                raise _Ended(self.close)
            idle_end = math.inf
            if policy.idle_timeout_s is not None:
                idle_end = self.last_activity + policy.idle_timeout_s
                if now >= idle_end:
                    self.relay._stats.idle_closes += 1
                    self.close = self.close or "relay 1001 (idle timeout)"
                    await self.client.close(
                        1001, f"Idle timeout: no events for {policy.idle_timeout_s:g} s."
                    )
                    raise _Ended(self.close)
            await anyio.sleep(min(session_end, idle_end) - now)


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


# ---- the server -------------------------------------------------------------------------------


class _RedactCredentials(logging.Filter):
    """On the transport's logger: websockets logs handshake headers at DEBUG, which would put
    the relay's key (upstream ``Authorization``) and clients' tokens in the logs."""

    _PATTERNS = (re.compile(r"(?i)(bearer\s+)\S+"),
                 re.compile(r"(openai-insecure-api-key\.)[^\s,]+"),
                 re.compile(r"(?i)(api-key:\s*)\S+"))

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = message.replace(self.key, "[redacted]")
        for pattern in self._PATTERNS:
            redacted = pattern.sub(r"\1[redacted]", redacted)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True



class Relay:
    """The relay server for the duration of an ``async with`` block.

    - ``upstream``: the Realtime URL (``wss://api.openai.com/v1/realtime``, an Azure
      ``.../openai/v1/realtime``, a simulator's ``sim.url``); ``api_key`` is sent there as the
      API expects (default ``OPENAI_API_KEY``).
    - Client authentication (required): ``secret`` checks tokens made by :func:`issue_token`;
      ``authenticate`` is your own :data:`Authenticator` (it wins when both are given).
    - ``policy``: a :class:`RelayPolicy`.
    - ``host``/``port`` (0: any free port, see :attr:`port`), ``ssl_context`` (serve ``wss``),
      ``upstream_ssl_context``, ``compression`` (to clients) and ``upstream_compression``,
      ``ping_interval``, ``metrics_path`` (None: no ``/metrics``).
    """

    def __init__(
        self,
        upstream: str,
        *,
        api_key: str | None = None,
        secret: str | bytes | None = None,
        authenticate: Authenticator | None = None,
        policy: RelayPolicy | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: Any = None,
        upstream_ssl_context: Any = None,
        compression: Compression = "deflate",
        upstream_compression: Compression = "deflate",
        ping_interval: float | None = 20.0,
        upstream_open_timeout: float = 10.0,
        metrics_path: str | None = "/metrics",
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        if not key:
            raise ValueError("the relay needs an API key: pass api_key= or set OPENAI_API_KEY")
        if authenticate is None and secret is None:
            raise ValueError("client authentication is required: pass secret= or authenticate=")
        if secret is not None:
            _secret_bytes(secret)  # fail early on a weak secret
        self.upstream = upstream
        self.policy = policy or RelayPolicy()
        self.host = host
        self.port = port
        self._api_key = key
        self._key_bytes = key.encode()
        self._secret = secret
        self._authenticate = authenticate
        self._ssl_context = ssl_context
        self._upstream_ssl_context = upstream_ssl_context
        self._compression = compression
        self._upstream_compression = upstream_compression
        self._ping_interval = ping_interval
        self._upstream_open_timeout = upstream_open_timeout
        self._metrics_path = metrics_path
        self._stats = RelayStats()
        self._server: WebSocketServer | None = None
        self._redact = _RedactCredentials(key)

    def __repr__(self) -> str:  # no key, no secret
        return f"Relay(upstream={self.upstream!r}, port={self.port})"

    @property
    def url(self) -> str:
        """``ws://host:port/v1/realtime`` (``wss`` with TLS) of the running relay."""
        scheme = "wss" if self._ssl_context is not None else "ws"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/v1/realtime"

    @property
    def stats(self) -> RelayStats:
        """A snapshot of the counters."""
        return RelayStats(**vars(self._stats))

    async def __aenter__(self) -> Relay:
        self._server = WebSocketServer(
            self._handle,
            self.host,
            self.port,
            http_handler=self._http,
            process_request=self._check_request,
            select_subprotocol=_select_subprotocol,
            ssl_context=self._ssl_context,
            max_size=self.policy.max_message_bytes,
            ping_interval=self._ping_interval,
            compression=self._compression,
        )
        logging.getLogger("realtalk.transport").addFilter(self._redact)
        try:
            await self._server.__aenter__()
        except BaseException:
            logging.getLogger("realtalk.transport").removeFilter(self._redact)
            raise
        self.port = self._server.port
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        try:
            await self._server.__aexit__(*exc_info)
        finally:
            self._server = None
            logging.getLogger("realtalk.transport").removeFilter(self._redact)

    # -- HTTP --

    async def _http(self, request: HTTPRequest) -> HTTPResponse:
        if self._metrics_path is not None and request.path == self._metrics_path:
            if request.method != "GET":
                return HTTPResponse.text("Method not allowed.\n", 405)
            return HTTPResponse(
                200, [("Content-Type", "text/plain; version=0.0.4")],
                self._stats.prometheus().encode(),
            )
        if request.path == "/healthz":
            return HTTPResponse.text("ok\n")
        return HTTPResponse.text("Not found.\n", 404)

    async def _check_request(self, request: HTTPRequest) -> HTTPResponse | None:
        if not request.path.rstrip("/").endswith("/realtime"):
            return HTTPResponse.json(
                {"error": {"message": f"Invalid URL (GET {request.path})",
                           "type": "invalid_request_error", "param": None, "code": None}}, 404)
        origins = self.policy.allowed_origins
        origin = request.headers.get("Origin")
        if origins is not None and origin is not None and origin not in origins:
            return HTTPResponse.text("Origin not allowed.\n", 403)
        return None

    # -- WebSocket --

    async def _identify(self, token: str, request: HTTPRequest) -> tuple[bool, str | None]:
        if self._authenticate is not None:
            identity = await self._authenticate(token, request)
            return bool(identity), (str(identity) if identity not in (None, True) else None)
        assert self._secret is not None
        try:
            claims = verify_token(self._secret, token)
        except InvalidToken:
            return False, None
        return True, claims.subject

    async def _refuse(self, ws: WebSocket, code: str | None, message: str, close: int,
                      reason: str, error_type: str = "invalid_request_error") -> None:
        try:
            await ws.send_text(_error_event(code, message, error_type=error_type))
        except ConnectionClosed:
            pass
        await ws.close(close, reason)

    async def _handle(self, ws: WebSocket) -> None:
        request = ws.request
        assert request is not None
        stats = self._stats
        stats.connections_total += 1
        stats.connections_open += 1
        connection = _Connection(self, ws)
        try:
            await self._serve_client(connection, request)
        finally:
            stats.connections_open -= 1
            self._log(connection)

    async def _serve_client(self, connection: _Connection, request: HTTPRequest) -> None:
        ws = connection.client
        stats = self._stats
        token = _client_token(request)
        if token is None:
            stats.auth_failures += 1
            connection.close = "relay 3000 (no credentials)"
            await self._refuse(ws, None, "Missing bearer or basic authentication in header",
                               3000, "invalid_request_error")
            return
        try:
            accepted, connection.subject = await self._identify(token, request)
        except Exception:
            logger.exception("the relay's authenticator failed")
            connection.close = "relay 1011 (authenticator failed)"
            await self._refuse(ws, None, "The relay could not check the credentials.",
                               1011, "authentication unavailable", error_type="server_error")
            return
        if not accepted:
            stats.auth_failures += 1
            connection.close = "relay 3000 (invalid or expired token)"
            await self._refuse(ws, "invalid_api_key", "Invalid or expired relay token.",
                               3000, "invalid_request_error.invalid_api_key")
            return
        policy = self.policy
        offered = _offered_subprotocols(request)
        beta = (request.headers.get("OpenAI-Beta", "").replace(" ", "") == "realtime=v1"
                or _BETA_SUBPROTOCOL in offered)
        if beta and not policy.allow_beta:
            connection.close = "relay 4000 (beta refused)"
            await self._refuse(ws, "beta_api_shape_disabled", "This relay does not accept the "
                               "Realtime Beta API. Please use the GA API.", 4000,
                               "invalid_request_error.beta_api_shape_disabled")
            return
        requested_model = request.query.get("model")
        model = policy.model
        if requested_model is not None and policy.allowed_models:
            if requested_model not in policy.allowed_models:
                connection.close = "relay 4000 (model not allowed)"
                await self._refuse(ws, "invalid_model", f'Model "{requested_model}" is not '
                                   "available through this relay.", 4000,
                                   "invalid_request_error.invalid_model")
                return
            model = requested_model
        if policy.max_sessions is not None and stats.sessions_open >= policy.max_sessions:
            stats.capacity_refusals += 1
            connection.close = "relay 1013 (at capacity)"
            await self._refuse(ws, "relay_at_capacity", "The relay is at capacity; try again "
                               "later.", 1013, "relay at capacity", error_type="server_error")
            return
        connection.protocol = "beta" if beta else "ga"
        stats.sessions_total += 1
        stats.sessions_open += 1
        try:
            await self._run(connection, request, model)
        finally:
            stats.sessions_open -= 1

    def _upstream_request(self, request: HTTPRequest, model: str, protocol: str) -> tuple[
        str, dict[str, str]
    ]:
        url, headers = realtime_request(self.upstream, model=model, api_key=self._api_key,
                                        protocol=protocol)  # type: ignore[arg-type]
        intent = request.query.get("intent")
        if intent is not None:
            url += ("&" if "?" in url else "?") + f"intent={intent}"
        return url, headers

    async def _run(self, connection: _Connection, request: HTTPRequest, model: str) -> None:
        ws = connection.client
        url, headers = self._upstream_request(request, model, connection.protocol)
        try:
            async with open_websocket(
                url,
                headers=headers,
                ssl_context=self._upstream_ssl_context,
                max_size=None,
                open_timeout=self._upstream_open_timeout,
                compression=self._upstream_compression,
                ping_interval=self._ping_interval,
            ) as upstream:
                connection.upstream = upstream
                if await self._start_session(connection, upstream):
                    await self._pump(connection, upstream)
        except (RealtalkError, TimeoutError) as exc:
            if connection.upstream is None or not isinstance(exc, ConnectionClosed):
                self._stats.upstream_failures += 1
                # The status or the kind only: an upstream body may quote part of the key.
                detail = getattr(exc, "status", None) or type(exc).__name__
                connection.close = connection.close or f"upstream unavailable ({detail})"
                logger.warning("relay %s: upstream unavailable (%s)", connection.id, detail)
                await self._refuse(ws, "upstream_unavailable", "The relay could not reach the "
                                   "Realtime API.", 1011, "upstream unavailable",
                                   error_type="server_error")
            else:  # a side closed while the session was starting
                connection.close = connection.close or f"closed while starting ({exc.code})"
                await ws.close(1011, "upstream connection lost")

    async def _start_session(self, connection: _Connection, upstream: WebSocket) -> bool:
        """Forward the upstream's first event; apply the pinned session first. False if the
        upstream refused the session (the client has been closed)."""
        ws = connection.client
        try:
            with anyio.fail_after(self._upstream_open_timeout):
                first, _ = await upstream.receive_raw()
        except TimeoutError:
            connection.close = "upstream sent no session.created"
            await self._refuse(ws, "upstream_unavailable", "The Realtime API did not start the "
                               "session.", 1011, "upstream unavailable", error_type="server_error")
            return False
        except ConnectionClosed as exc:
            connection.close = f"upstream {exc.code} ({exc.reason})"
            await ws.close(*_downstream_close(exc.code, exc.reason))
            return False
        try:
            event = _any_json.decode(first)
        except msgspec.DecodeError:
            event = {}
        following: list[bytes] = []
        if event.get("type") == "error":
            # The API refuses a session with an error event and a close in the same
            # millisecond; a 3000 is about the relay's key, whose masked form the error quotes.
            try:
                with anyio.move_on_after(1.0):
                    following.append((await upstream.receive_raw()).data)
            except ConnectionClosed as exc:
                connection.close = f"upstream {exc.code} ({exc.reason})"
                if exc.code == 3000:
                    self._stats.upstream_failures += 1
                    logger.error("relay %s: the upstream refused the relay's API key",
                                 connection.id)
                    await self._refuse(ws, "upstream_unavailable", "The relay could not open a "
                                       "session with the Realtime API.", 1011,
                                       "upstream refused the relay's credentials",
                                       error_type="server_error")
                else:  # the client's request (model, beta shape ...): the client should know
                    await connection.send_client(first)
                    await ws.close(*_downstream_close(exc.code, exc.reason))
                return False
        pinned = self.policy.pinned_session
        if pinned and event.get("type") == "session.created":
            applied = await self._apply_pinned(connection, upstream, event, dict(pinned))
            if applied is None:
                return False
            first, following = applied[0], applied[1:]
        for data in (first, *following):
            connection.track_session(data)
            await connection.send_client(data)
        return True

    async def _apply_pinned(self, connection: _Connection, upstream: WebSocket,
                            created: dict[str, Any], pinned: dict[str, Any]) -> list[bytes] | None:
        """Apply the pinned session before the client sees the session: its session.created
        shows the effective config, and the update's own reply is not forwarded. Returns the
        events to forward (session.created first), None if the upstream refused the pins."""
        pinned.setdefault("type", "realtime")
        await upstream.send_text(serialize_client_event(
            {"type": "session.update", "session": pinned}, connection.protocol))
        others: list[bytes] = []
        with anyio.fail_after(self._upstream_open_timeout):
            while True:
                data, _ = await upstream.receive_raw()
                reply = _any_json.decode(data)
                if reply.get("type") in ("session.updated", "transcription_session.updated"):
                    created["session"] = reply.get("session")
                    return [_encode(created), *others]
                if reply.get("type") == "error":
                    connection.close = "relay 1011 (pinned session refused upstream)"
                    logger.error("relay %s: the upstream refused the pinned session: %s",
                                 connection.id, reply.get("error", {}).get("message"))
                    await self._refuse(connection.client, "relay_misconfigured", "The relay's "
                                       "session settings were refused.", 1011,
                                       "relay misconfigured", error_type="server_error")
                    return None
                others.append(data)

    async def _pump(self, connection: _Connection, upstream: WebSocket) -> None:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(connection.client_to_upstream, upstream)
                tg.start_soon(connection.upstream_to_client, upstream)
                tg.start_soon(connection.watchdog)
        except* _Ended:
            pass
        except* ConnectionClosed:
            # A send failed because that side closed meanwhile: close the other side too.
            connection.close = connection.close or "a side closed during a send"
        await upstream.close(1000, "")
        await connection.client.close(1000, "")

    def _log(self, connection: _Connection) -> None:
        record = {
            "id": connection.id,
            "subject": connection.subject,
            "protocol": connection.protocol,
            "duration_s": round(anyio.current_time() - connection.started, 3),
            "events_from_client": connection.events_from_client,
            "bytes_from_client": connection.bytes_from_client,
            "events_to_client": connection.events_to_client,
            "bytes_to_client": connection.bytes_to_client,
            "refused": connection.refused,
            "close": connection.close or "relay shutdown",
        }
        line = " ".join(f"{name}={_logfmt(value)}" for name, value in record.items())
        logger.info("relay connection %s", line, extra={"relay": record})


def _logfmt(value: object) -> str:
    text = "-" if value is None else str(value)
    if not text or any(c in text for c in ' ="'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


async def run_relay(
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    upstream: str,
    api_key: str | None = None,
    secret: str | bytes | None = None,
    authenticate: Authenticator | None = None,
    policy: RelayPolicy | None = None,
    ready: Callable[[Relay], Awaitable[None] | None] | None = None,
    **options: Any,
) -> None:
    """Run a :class:`Relay` until cancelled (the CLI's ``realtalk relay``). ``ready`` is called
    once it listens; ``options`` are :class:`Relay`'s."""
    async with Relay(upstream, api_key=api_key, secret=secret, authenticate=authenticate,
                     policy=policy, host=host, port=port, **options) as relay:
        logger.info("relay listening on %s, upstream %s", relay.url, upstream)
        if ready is not None:
            result = ready(relay)
            if result is not None:
                await result
        await anyio.sleep_forever()
