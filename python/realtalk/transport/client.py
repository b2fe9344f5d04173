"""The client side: :func:`open_websocket` dials, drives websockets' ``ClientProtocol``
through the opening handshake and hands the stream to a :class:`WebSocket`."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Unpack

import anyio
import anyio.abc
import h11
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from realtalk.errors import ConnectionClosed
from realtalk.transport.connection import WebSocket, run_connection
from realtalk.transport.errors import map_exceptions
from realtalk.transport.http11 import HTTPResponse, read_response_head, write_upgrade_request
from realtalk.transport.log import logger
from realtalk.transport.options import (
    RECEIVE_SIZE,
    OptionOverrides,
    WebSocketOptions,
    resolve_options,
)


def _client_ssl_context(ssl_context: ssl.SSLContext | None) -> ssl.SSLContext:
    return ssl_context if ssl_context is not None else ssl.create_default_context()


async def _read_handshake(
    stream: anyio.abc.ByteStream, protocol: ClientProtocol, parser: h11.Connection
) -> tuple[list[Any], bytes]:
    """Feed the stream to ``protocol`` until it yields the server's response or fails the
    handshake; return its events and the bytes that followed a 101 response's head. Those are
    kept from ``protocol``: the WebSocket's reader must see every frame from its first byte
    (see ``WebSocket._frames_of``). h11 (``parser``, which wrote the request) finds the end
    of the head."""
    received, end, at_eof = await read_response_head(stream, parser)
    if end >= 0 and received.startswith(b"HTTP/1.1 101 "):
        protocol.receive_data(received[:end])  # a 101 response has no body
        return protocol.events_received(), received[end:]
    data = received  # another status: websockets reads its body too
    while True:
        if data:
            protocol.receive_data(data)
        if at_eof:
            protocol.receive_eof()
        for chunk in protocol.data_to_send():
            if chunk:
                await stream.send(chunk)
        events = protocol.events_received()
        if events or protocol.handshake_exc is not None or protocol.state is State.CLOSED:
            return events, b""
        try:
            data = await stream.receive(RECEIVE_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            data, at_eof = b"", True


@asynccontextmanager
async def open_websocket(
    url: str,
    *,
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    subprotocols: Sequence[str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    options: WebSocketOptions | None = None,
    **overrides: Unpack[OptionOverrides],
) -> AsyncIterator[WebSocket]:
    """Open a WebSocket client connection to ``url`` (``ws://`` or ``wss://``) for the duration
    of the ``async with`` block, then close it (code 1000).

    - ``headers`` are added to the upgrade request (``Authorization``, ``OpenAI-Beta`` ...).
    - ``subprotocols`` are offered in order; :attr:`WebSocket.subprotocol` is the one chosen.
    - ``ssl_context`` for ``wss://``; default: the system trust store.
    - ``options``: a :class:`WebSocketOptions` (``max_size``, keepalive, timeouts,
      ``compression``, ``max_queue``); each of its fields may also be given as a keyword
      argument, which overrides ``options``.

    Raises ConnectError (DNS, refused, TLS), Timeout, HandshakeError (an HTTP status instead of
    101), ProtocolError (an invalid handshake answer).
    """
    options = resolve_options(options, overrides)
    with map_exceptions("opening handshake"):
        uri = parse_uri(url)
        with anyio.fail_after(options.open_timeout):
            if uri.secure:
                stream: anyio.abc.ByteStream = await anyio.connect_tcp(
                    uri.host,
                    uri.port,
                    tls=True,
                    ssl_context=_client_ssl_context(ssl_context),
                    tls_hostname=uri.host,
                    tls_standard_compatible=False,
                )
            else:
                stream = await anyio.connect_tcp(uri.host, uri.port)
            try:
                protocol = ClientProtocol(
                    uri,
                    subprotocols=[Subprotocol(name) for name in subprotocols or ()] or None,
                    extensions=enable_client_permessage_deflate(None)
                    if options.compression == "deflate"
                    else None,
                    max_size=options.max_size,
                    logger=logger,
                )
                request = protocol.connect()
                items = headers.items() if isinstance(headers, Mapping) else headers or ()
                for name, value in items:
                    if name in request.headers:
                        del request.headers[name]
                    request.headers[name] = value
                # h11 writes the request; websockets only logs it (credentials redacted).
                parser, request_bytes = write_upgrade_request(request.path, request.headers)
                protocol.send_request(request)
                protocol.data_to_send()
                await stream.send(request_bytes)
                events, after_head = await _read_handshake(stream, protocol, parser)
                if protocol.handshake_exc is not None:
                    raise protocol.handshake_exc
                if not events or not isinstance(events[0], Response):
                    raise ConnectionClosed(1006, "", message="connection lost during handshake")
            except BaseException:
                await anyio.aclose_forcefully(stream)
                raise
    raw_response: Response = events[0]
    ws = WebSocket(
        protocol,
        stream,
        request=None,
        response=HTTPResponse(
            raw_response.status_code, list(raw_response.headers.raw_items()), b""
        ),
        options=options,
    )
    async with run_connection(
        ws, after_head, code_on_error=1000, code_on_cancel=1000
    ) as connection:
        yield connection
