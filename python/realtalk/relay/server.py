"""The relay server: authentication, admission, the upstream session, logs and metrics."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any

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
from realtalk.relay.stats import RelayStats
from realtalk.relay.tokens import InvalidToken, _secret_bytes, verify_token
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
