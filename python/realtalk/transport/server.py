"""The server side: :class:`WebSocketServer` accepts TCP (or TLS) connections, reads each
request, answers plain HTTP requests through a hook and upgrades WebSocket ones with
websockets' ``ServerProtocol``; :func:`serve` runs one until cancelled."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn, Self, Unpack

import anyio
import anyio.abc
import h11
from anyio.streams.tls import TLSStream
from websockets.extensions.permessage_deflate import enable_server_permessage_deflate
from websockets.http11 import Request
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from realtalk.errors import ConnectionClosed, ProtocolError
from realtalk.transport.connection import WebSocket, run_connection
from realtalk.transport.errors import map_exceptions
from realtalk.transport.http11 import (
    ClientGone,
    HTTPRequest,
    HTTPResponse,
    RefuseRequest,
    is_upgrade,
    read_body,
    read_request_head,
    refuse,
    split_target,
)
from realtalk.transport.log import logger
from realtalk.transport.options import OptionOverrides, WebSocketOptions, resolve_options

Handler = Callable[[WebSocket], Awaitable[None]]
"""``async def handler(ws: WebSocket) -> None``: runs for one accepted connection; when it
returns, the connection is closed with 1000 (1011 if it raised, 1001 if the server shut down)."""
HTTPHandler = Callable[[HTTPRequest], Awaitable[HTTPResponse]]
"""``async def http_handler(request) -> HTTPResponse``: answers a request that is not an upgrade."""
ProcessRequest = Callable[[HTTPRequest], Awaitable[HTTPResponse | None]]
"""``async def process_request(request) -> HTTPResponse | None``: sees each upgrade request
first; a response refuses the upgrade with it (401, 404 ...), None lets it proceed."""
SelectSubprotocol = Callable[[HTTPRequest, Sequence[str]], str | None]
"""``select_subprotocol(request, offered) -> chosen | None``: picks one of the client's
subprotocols (None: answer without one)."""


async def _call_hook(
    hook: Callable[[HTTPRequest], Awaitable[HTTPResponse | Any]], request: HTTPRequest
) -> Any:
    """Run an HTTP hook; a failing hook answers 400 (a ProtocolError: the request was bad) or
    500, instead of dropping the connection without a word."""
    try:
        return await hook(request)
    except ProtocolError as exc:
        return HTTPResponse.text(f"{exc}\n", 400)
    except Exception:
        logger.exception("HTTP hook failed on %s %s", request.method, request.path)
        return HTTPResponse.text("Internal server error.\n", 500)


async def _send_response(stream: anyio.abc.ByteStream, response: HTTPResponse) -> None:
    """Send a hook's response; one h11 refuses to write (a header with a line break, say)
    becomes a 500 rather than bytes that could split the response."""
    try:
        data = response.serialize()
    except h11.LocalProtocolError as exc:
        logger.error("HTTP hook returned an invalid response: %s", exc)
        data = HTTPResponse.text("Internal server error.\n", 500).serialize()
    await stream.send(data)


class WebSocketServer:
    """A WebSocket (and plain HTTP) server on ``host``:``port`` for the duration of an
    ``async with`` block::

        async with WebSocketServer(handler) as server:
            url = f"ws://127.0.0.1:{server.port}/v1/realtime"

    Each TCP connection runs in its own task with its own task group; leaving the block stops
    listening and closes every connection (code 1001), so nothing outlives it.

    - ``handler(ws)``: called for each accepted WebSocket; ``ws.request`` holds the upgrade
      request. It may send an error event then ``await ws.close(code, reason)``.
    - ``http_handler(request) -> HTTPResponse``: answers requests that are not upgrades (any
      method, with a ``Content-Length`` body up to ``max_size``). Without it they get 426.
    - ``process_request(request) -> HTTPResponse | None``: refuse an upgrade with a status
      before accepting it (None accepts).
    - ``select_subprotocol(request, offered) -> str | None``.
    - ``ssl_context``: serve TLS (``wss://``) with this server context.
    - ``options`` (or its fields as keyword arguments): as for :func:`open_websocket`;
      ``open_timeout`` bounds TLS + request head.
    - ``max_request_body``: larger bodies of non-upgrade requests get 413 before any of the
      body is read (None: ``max_size``). ``max_pending``: connections still sending their
      request (TLS, head, body) at once; more get 503 at once (None: no cap).
    """

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        http_handler: HTTPHandler | None = None,
        process_request: ProcessRequest | None = None,
        select_subprotocol: SelectSubprotocol | None = None,
        ssl_context: ssl.SSLContext | None = None,
        options: WebSocketOptions | None = None,
        max_request_body: int | None = None,
        max_pending: int | None = None,
        **overrides: Unpack[OptionOverrides],
    ) -> None:
        options = resolve_options(options, overrides)
        self.host = host
        self.port = port
        """The listening port (the one the system chose when ``port=0``) once entered."""
        self._handler = handler
        self._http_handler = http_handler
        self._process_request = process_request
        self._select_subprotocol = select_subprotocol
        self._ssl_context = ssl_context
        self.options = options
        """The options every connection of this server runs with."""
        self._max_request_body = (
            options.max_size if max_request_body is None else max_request_body
        )
        self._max_pending = max_pending
        self._pending = 0
        self._listener: anyio.abc.Listener[anyio.abc.SocketStream] | None = None
        self._task_group: anyio.abc.TaskGroup | None = None

    @property
    def url(self) -> str:
        """``ws://host:port`` (``wss://`` with TLS) of this server."""
        scheme = "wss" if self._ssl_context is not None else "ws"
        return f"{scheme}://{self.host}:{self.port}"

    async def __aenter__(self) -> Self:
        with map_exceptions("listening"):
            listener = await anyio.create_tcp_listener(local_host=self.host, local_port=self.port)
        self._listener = listener
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(listener.serve, self._serve_connection, self._task_group)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task_group is not None and self._listener is not None
        self._task_group.cancel_scope.cancel()
        try:
            # The body's exception is not handed to the task group: it propagates unwrapped.
            await self._task_group.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                await self._listener.aclose()

    async def _serve_connection(self, stream: anyio.abc.ByteStream) -> None:
        try:
            await self._handle_connection(stream)
        except ConnectionClosed as exc:
            logger.debug("connection ended: %s", exc)
        except (ClientGone, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            logger.debug("client went away before the exchange completed")
        except ssl.SSLError as exc:
            logger.debug("TLS handshake failed: %s", exc)
        except TimeoutError:
            logger.debug("client too slow to send its request")
        except Exception:
            logger.exception("connection handler failed")
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(stream)

    @contextmanager
    def _counted_as_pending(self) -> Iterator[None]:
        self._pending += 1
        try:
            yield
        finally:
            self._pending -= 1

    async def _handle_connection(self, stream: anyio.abc.ByteStream) -> None:
        upgrade = False
        if self._max_pending is not None and self._pending >= self._max_pending:
            await stream.send(refuse(503, "Too many pending connections.").response.serialize())
            return
        with self._counted_as_pending(), anyio.fail_after(self.options.open_timeout):
            if self._ssl_context is not None:
                stream = await TLSStream.wrap(
                    stream,
                    server_side=True,
                    ssl_context=self._ssl_context,
                    standard_compatible=False,
                )
            try:
                head = await read_request_head(stream)
                path, query = split_target(head.target)
                upgrade = is_upgrade(head.method, head.headers)
                body = b"" if upgrade else await read_body(stream, head, self._max_request_body)
            except RefuseRequest as refusal:
                await stream.send(refusal.response.serialize())
                return
        request = HTTPRequest(head.method, path, query, head.headers, body)
        if not upgrade:
            if self._http_handler is None:
                response = HTTPResponse.text(
                    "This server speaks WebSocket: send an upgrade request.\n",
                    426,
                    [("Upgrade", "websocket")],
                )
            else:
                response = await _call_hook(self._http_handler, request)
            await _send_response(stream, response)
            return
        if self._process_request is not None:
            rejection = await _call_hook(self._process_request, request)
            if rejection is not None:
                await _send_response(stream, rejection)
                return
        await self._upgrade(stream, request, head.raw, head.rest)

    async def _upgrade(
        self, stream: anyio.abc.ByteStream, request: HTTPRequest, head: bytes, after_head: bytes
    ) -> None:
        select = self._select_subprotocol

        def select_subprotocol(
            _protocol: ServerProtocol, offered: Sequence[Subprotocol]
        ) -> Subprotocol | None:
            assert select is not None
            chosen = select(request, list(offered))
            return None if chosen is None else Subprotocol(chosen)

        protocol = ServerProtocol(
            extensions=enable_server_permessage_deflate(None)
            if self.options.compression == "deflate"
            else None,
            select_subprotocol=select_subprotocol if select is not None else None,
            max_size=self.options.max_size,
            logger=logger,
        )
        protocol.receive_data(head)  # the frames after it are the reader's (see _frames_of)
        events = protocol.events_received()
        if not events or not isinstance(events[0], Request):
            for chunk in protocol.data_to_send():
                if chunk:
                    await stream.send(chunk)
            return
        response = protocol.accept(events[0])
        protocol.send_response(response)
        for chunk in protocol.data_to_send():
            if chunk:
                await stream.send(chunk)
        if response.status_code != 101:
            return
        ws = WebSocket(
            protocol,
            stream,
            request=request,
            response=None,
            options=self.options,
        )
        async with run_connection(ws, after_head, code_on_error=1011, code_on_cancel=1001):
            await self._handler(ws)


async def serve(
    handler: Handler,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    **options: Any,
) -> NoReturn:
    """Run a :class:`WebSocketServer` until cancelled: ``port = await tg.start(serve, handler)``
    reports the listening port once it accepts connections. ``options`` are those of
    :class:`WebSocketServer`."""
    async with WebSocketServer(handler, host, port, **options) as server:
        task_status.started(server.port)
        await anyio.sleep_forever()
    raise AssertionError("unreachable")
