"""The relay server: authentication, admission, the upstream session, logs and metrics."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import msgspec

from realtalk.connection import realtime_request
from realtalk.errors import ConnectionClosed, RealtalkError
from realtalk.events import serialize_client_event
from realtalk.relay.auth import (
    Authenticator,
    _client_token,
    _offered_subprotocols,
    _select_subprotocol,
)
from realtalk.relay.connection import (
    _any_json,
    _Connection,
    _downstream_close,
    _encode,
    _Ended,
    _error_event,
)
from realtalk.relay.policy import RelayPolicy
from realtalk.relay.scrub import RedactingLogFilter, Scrubber
from realtalk.relay.stats import RelayStats
from realtalk.relay.store import MemoryStore, SessionStore, StoreUnavailable
from realtalk.relay.tokens import InvalidToken, TokenClaims, _secret_bytes, verify_token
from realtalk.transport import (
    Compression,
    HTTPRequest,
    HTTPResponse,
    WebSocket,
    WebSocketServer,
    open_websocket,
)

logger = logging.getLogger("realtalk.relay")

_BETA_SUBPROTOCOL = "openai-beta.realtime-v1"
_INTENTS = frozenset({"realtime", "transcription"})
_FILTERED_LOGGERS = ("realtalk.relay", "realtalk.transport")
_instance = secrets.token_hex(6)  # names this process's sessions in a shared store


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:24]


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
    - ``store``: where sessions and single-use nonces are counted (:class:`MemoryStore` by
      default; a :class:`RedisStore` shares the limits across relay processes).
    - Before a client is authenticated: ``handshake_timeout`` bounds TLS + the upgrade request,
      and then the authentication (a slower ``authenticate`` closes 1011);
      ``max_pending_connections`` caps connections still sending their request (more get 503)
      and, apart, those being authenticated (more close 1013); bodies of plain HTTP requests
      are refused (413: ``/metrics`` and ``/healthz`` take none).
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
        store: SessionStore | None = None,
        handshake_timeout: float = 5.0,
        max_pending_connections: int = 256,
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
        self._scrubber = Scrubber(key)
        self._log_filter = RedactingLogFilter(self._scrubber)
        self._store: SessionStore = store if store is not None else MemoryStore()
        self._handshake_timeout = handshake_timeout
        self._max_pending_connections = max_pending_connections
        self._live: dict[str, _Connection] = {}  # admitted sessions, for lease renewal
        self._renewals: anyio.abc.TaskGroup | None = None
        self._authenticating = 0

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
            open_timeout=self._handshake_timeout,
            max_request_body=0,
            max_pending=self._max_pending_connections,
        )
        for name in _FILTERED_LOGGERS:
            logging.getLogger(name).addFilter(self._log_filter)
        try:
            await self._server.__aenter__()
        except BaseException:
            self._remove_log_filter()
            raise
        self.port = self._server.port
        lease_s = getattr(self._store, "lease_s", None)
        if lease_s:
            self._renewals = anyio.create_task_group()
            await self._renewals.__aenter__()
            self._renewals.start_soon(self._renew_leases, lease_s)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        try:
            if self._renewals is not None:  # entered last: left first
                self._renewals.cancel_scope.cancel()
                await self._renewals.__aexit__(None, None, None)
        finally:
            self._renewals = None
            try:
                await self._server.__aexit__(*exc_info)
            finally:
                self._server = None
                self._remove_log_filter()

    def _remove_log_filter(self) -> None:
        for name in _FILTERED_LOGGERS:
            logging.getLogger(name).removeFilter(self._log_filter)

    async def _renew_leases(self, lease_s: float) -> None:
        while True:
            await anyio.sleep(lease_s / 3)
            try:
                await self._store.renew(
                    (session, connection.subject_key)
                    for session, connection in list(self._live.items()))
            except StoreUnavailable as exc:  # running sessions go on; admission fails
                logger.warning("relay: could not renew session leases: %s", exc)

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

    async def _identify(self, token: str, request: HTTPRequest) -> TokenClaims | None:
        """Who the client is (None: refused). A custom authenticator's identity becomes the
        subject; its tokens never expire here nor are single-use (it decides that)."""
        if self._authenticate is not None:
            identity = await self._authenticate(token, request)
            if not identity:
                return None
            subject = str(identity) if identity is not True else None
            return TokenClaims(subject, math.inf, _token_digest(token))
        assert self._secret is not None
        try:
            claims = verify_token(self._secret, token)
        except InvalidToken:
            return None
        if self.policy.single_use_tokens and not await self._store.claim_nonce(
                claims.nonce, claims.expires_at):
            return None  # a replay: the same answer as an invalid token
        return claims

    async def _refuse(self, connection: _Connection, code: str | None, message: str,
                      close: int, reason: str, error_type: str = "invalid_request_error") -> None:
        try:
            await connection.send_client(_error_event(code, message, error_type=error_type))
        except ConnectionClosed:
            pass
        await connection.close_client(close, reason)

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
        stats = self._stats
        refuse = partial(self._refuse, connection)
        token = _client_token(request)
        if token is None:
            stats.auth_failures += 1
            connection.close = "relay 3000 (no credentials)"
            await refuse(None, "Missing bearer or basic authentication in header", 3000,
                         "invalid_request_error")
            return
        if self._authenticating >= self._max_pending_connections:
            stats.capacity_refusals += 1
            connection.close = "relay 1013 (too many clients authenticating)"
            await refuse("relay_at_capacity", "The relay is at capacity; try again later.", 1013,
                         "relay at capacity", error_type="server_error")
            return
        self._authenticating += 1
        try:
            with anyio.fail_after(self._handshake_timeout):  # a slow authenticator included
                claims = await self._identify(token, request)
        except StoreUnavailable as exc:
            await self._store_unavailable(connection, exc)
            return
        except Exception:
            logger.exception("the relay's authenticator failed or took longer than %g s",
                             self._handshake_timeout)
            connection.close = "relay 1011 (authenticator failed)"
            await refuse(None, "The relay could not check the credentials.", 1011,
                         "authentication unavailable", error_type="server_error")
            return
        finally:
            self._authenticating -= 1
        if claims is None:
            stats.auth_failures += 1
            connection.close = "relay 3000 (invalid or expired token)"
            await refuse("invalid_api_key", "Invalid or expired relay token.", 3000,
                         "invalid_request_error.invalid_api_key")
            return
        connection.subject = claims.subject
        connection.subject_key = claims.subject or f"token:{claims.nonce}"
        policy = self.policy
        offered = _offered_subprotocols(request)
        beta = (request.headers.get("OpenAI-Beta", "").replace(" ", "") == "realtime=v1"
                or _BETA_SUBPROTOCOL in offered)
        if beta and not policy.allow_beta:
            connection.close = "relay 4000 (beta refused)"
            await refuse("beta_api_shape_disabled", "This relay does not accept the Realtime "
                         "Beta API. Please use the GA API.", 4000,
                         "invalid_request_error.beta_api_shape_disabled")
            return
        requested_model = request.query.get("model")
        model = policy.model
        if requested_model is not None and policy.allowed_models:
            if requested_model not in policy.allowed_models:
                connection.close = "relay 4000 (model not allowed)"
                await refuse("invalid_model", f'Model "{requested_model}" is not available '
                             "through this relay.", 4000, "invalid_request_error.invalid_model")
                return
            model = requested_model
        intent = request.query.get("intent")
        if intent is not None and intent not in _INTENTS:
            connection.close = "relay 4000 (invalid intent)"
            await refuse("invalid_intent", f"Invalid intent: expected one of "
                         f"{', '.join(sorted(_INTENTS))}.", 4000,
                         "invalid_request_error.invalid_intent")
            return
        session = f"{_instance}:{connection.id}"
        try:
            admission = await self._store.admit(session, connection.subject_key,
                                                policy.max_sessions,
                                                policy.max_sessions_per_subject)
        except StoreUnavailable as exc:
            await self._store_unavailable(connection, exc)
            return
        if admission == "relay_full":
            stats.capacity_refusals += 1
            connection.close = "relay 1013 (at capacity)"
            await refuse("relay_at_capacity", "The relay is at capacity; try again later.", 1013,
                         "relay at capacity", error_type="server_error")
            return
        if admission == "subject_full":
            stats.subject_limit_refusals += 1
            connection.close = "relay 1008 (too many sessions for the subject)"
            await refuse("too_many_sessions", f"At most {policy.max_sessions_per_subject} "
                         "sessions may be open at once with these credentials.", 1008,
                         "too many sessions for these credentials")
            return
        if policy.session_ends_at_token_expiry and math.isfinite(claims.expires_at):
            connection.token_expires_at = (
                anyio.current_time() + claims.expires_at - time.time())
        connection.protocol = "beta" if beta else "ga"
        stats.sessions_total += 1
        stats.sessions_open += 1
        self._live[session] = connection
        try:
            await self._run(connection, model, intent)
        finally:
            stats.sessions_open -= 1
            del self._live[session]
            with anyio.CancelScope(shield=True):
                try:
                    await self._store.release(session, connection.subject_key)
                except StoreUnavailable as exc:  # the lease runs out instead
                    logger.warning("relay %s: could not release the session: %s",
                                   connection.id, exc)

    async def _store_unavailable(self, connection: _Connection, exc: StoreUnavailable) -> None:
        self._stats.store_failures += 1
        logger.error("relay %s: %s; refusing new sessions until it does", connection.id, exc)
        connection.close = "relay 1013 (session store unavailable)"
        await self._refuse(connection, "relay_unavailable", "The relay cannot admit sessions "
                           "right now; try again later.", 1013, "session store unavailable",
                           error_type="server_error")

    def _upstream_request(self, model: str, intent: str | None, protocol: str) -> tuple[
        str, dict[str, str]
    ]:
        """The upstream URL, built from the allowlisted parameters only (never the client's
        query string): the model the policy chose and a known intent."""
        url, headers = realtime_request(self.upstream, model=model, api_key=self._api_key,
                                        protocol=protocol)  # type: ignore[arg-type]
        if intent is not None:
            scheme, host, path, query, _ = urlsplit(url)
            params = [(name, value) for name, value in parse_qsl(query) if name != "intent"]
            url = urlunsplit((scheme, host, path, urlencode([*params, ("intent", intent)]), ""))
        return url, headers

    async def _run(self, connection: _Connection, model: str, intent: str | None) -> None:
        url, headers = self._upstream_request(model, intent, connection.protocol)
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
                await self._refuse(connection, "upstream_unavailable", "The relay could not "
                                   "reach the Realtime API.", 1011, "upstream unavailable",
                                   error_type="server_error")
            else:  # a side closed while the session was starting
                connection.close = connection.close or f"closed while starting ({exc.code})"
                await connection.close_client(1011, "upstream connection lost")

    async def _key_refused(self, connection: _Connection) -> None:
        self._stats.upstream_failures += 1
        logger.error("relay %s: the upstream refused the relay's API key", connection.id)
        await self._refuse(connection, "upstream_unavailable", "The relay could not open a "
                           "session with the Realtime API.", 1011,
                           "upstream refused the relay's credentials", error_type="server_error")

    async def _start_session(self, connection: _Connection, upstream: WebSocket) -> bool:
        """Forward the upstream's first event; apply the pinned session first. False if the
        upstream refused the session (the client has been closed)."""
        try:
            with anyio.fail_after(self._upstream_open_timeout):
                first, _ = await upstream.receive_raw()
        except TimeoutError:
            connection.close = "upstream sent no session.created"
            await self._refuse(connection, "upstream_unavailable", "The Realtime API did not "
                               "start the session.", 1011, "upstream unavailable",
                               error_type="server_error")
            return False
        except ConnectionClosed as exc:
            connection.close = f"upstream {exc.code} ({exc.reason})"
            if exc.code == 3000:
                await self._key_refused(connection)
            else:
                await connection.close_client(*_downstream_close(exc.code, exc.reason))
            return False
        try:
            event = _any_json.decode(first)
        except (msgspec.DecodeError, RecursionError):
            event = {}
        if not isinstance(event, dict):
            event = {}
        following: list[bytes] = []
        if event.get("type") == "error":
            error = event.get("error")
            if isinstance(error, dict) and error.get("code") == "invalid_api_key":
                # The relay's key, quoted masked: however long the close takes to follow.
                connection.close = "upstream refused the relay's API key"
                await self._key_refused(connection)
                return False
            # The API refuses a session with an error event and a close in the same
            # millisecond; a 3000 is about the relay's key, whose masked form the error quotes.
            try:
                with anyio.move_on_after(1.0):
                    following.append((await upstream.receive_raw()).data)
            except ConnectionClosed as exc:
                connection.close = f"upstream {exc.code} ({exc.reason})"
                if exc.code == 3000:
                    await self._key_refused(connection)
                else:  # the client's request (model, beta shape ...): the client should know
                    await connection.send_client(first)
                    await connection.close_client(*_downstream_close(exc.code, exc.reason))
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
                try:
                    reply = _any_json.decode(data)
                except (msgspec.DecodeError, RecursionError):
                    reply = None
                if not isinstance(reply, dict):
                    others.append(data)
                    continue
                if reply.get("type") in ("session.updated", "transcription_session.updated"):
                    created["session"] = reply.get("session")
                    return [_encode(created), *others]
                if reply.get("type") == "error":
                    connection.close = "relay 1011 (pinned session refused upstream)"
                    error = reply.get("error")
                    logger.error("relay %s: the upstream refused the pinned session: %s",
                                 connection.id,
                                 error.get("message") if isinstance(error, dict) else error)
                    await self._refuse(connection, "relay_misconfigured", "The relay's session "
                                       "settings were refused.", 1011, "relay misconfigured",
                                       error_type="server_error")
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
        await connection.close_client(1000, "")

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
        record["close"] = self._scrubber.text(str(record["close"]))
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
