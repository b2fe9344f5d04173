"""``WebSocketOptions``: one frozen set of connection options, accepted by the client, the server
and the connection, with each field still usable as a keyword argument that overrides it."""

from __future__ import annotations

import dataclasses

import anyio
import pytest
from realtalk.errors import ConnectionClosed, ProtocolError
from realtalk.transport import (
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_SIZE,
    DEFAULT_PING_INTERVAL,
    WebSocket,
    WebSocketOptions,
    WebSocketServer,
    open_websocket,
)

pytestmark = pytest.mark.timeout(30)


async def idle(ws: WebSocket) -> None:
    async for _ in ws:
        pass


def test_defaults_are_the_documented_constants_and_the_options_are_frozen() -> None:
    options = WebSocketOptions()
    assert (options.max_size, options.ping_interval, options.max_queue, options.compression) == (
        DEFAULT_MAX_SIZE, DEFAULT_PING_INTERVAL, DEFAULT_MAX_QUEUE, "deflate")
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.max_size = 1  # type: ignore[misc]


def test_keyword_arguments_override_the_options_object() -> None:
    base = WebSocketOptions(max_queue=3, ping_interval=None, compression=None)
    server = WebSocketServer(idle, options=base, max_queue=5)
    assert server.options == WebSocketOptions(max_queue=5, ping_interval=None, compression=None)
    assert base.max_queue == 3  # the caller's object is untouched
    # The request body limit follows the resolved max_size unless given.
    assert WebSocketServer(idle, max_size=10)._max_request_body == 10


async def test_an_unknown_option_is_a_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match="max_sise"):
        WebSocketServer(idle, max_sise=10)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="max_sise"):  # before any dialling
        async with open_websocket("ws://127.0.0.1:9", max_sise=10):  # type: ignore[call-arg]
            pass


async def test_options_object_takes_effect_on_both_sides() -> None:
    """max_size from an options object fails an oversized message with 1009, as the keyword
    does (tests/test_transport.py), and the connection reports the options it runs with."""
    closed: list[int | None] = []
    handled = anyio.Event()
    small = WebSocketOptions(max_size=1000, ping_interval=None, compression=None)

    async def handler(ws: WebSocket) -> None:
        assert ws.options.compression is None
        await ws.send(b"x" * 2000)
        with pytest.raises(ConnectionClosed):
            await ws.receive()
        closed.append(ws.close_code)
        handled.set()

    async with WebSocketServer(handler, options=small, max_size=None) as server:
        async with open_websocket(server.url, options=small) as ws:
            assert ws.options is small
            assert ws.response is not None
            assert ws.response.header("Sec-WebSocket-Extensions") is None  # compression=None
            with anyio.fail_after(10), pytest.raises(ProtocolError, match="too big"):
                await ws.receive()
        with anyio.fail_after(10):
            await handled.wait()  # before leaving the block cancels the handler
    assert closed == [1009]
