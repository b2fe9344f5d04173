"""Loopback tests of realtalk.transport: our client against our server, and against raw peers
built from websockets' Sans-I/O ServerProtocol that misbehave on purpose. Every test runs on
asyncio and trio."""

from __future__ import annotations

import http.client
import json
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import logging

import pytest
from conftest import UVLOOP
from realtalk.errors import (
    AuthenticationError,
    ConnectError,
    ConnectionClosed,
    HandshakeError,
    InvalidRequestError,
    KeepaliveTimeout,
    ProtocolError,
    SessionExpired,
    Timeout,
)
from realtalk.transport import (
    DEFAULT_MAX_SIZE,
    HTTPRequest,
    HTTPResponse,
    RawMessage,
    WebSocket,
    WebSocketServer,
    open_websocket,
    serve,
)
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

pytestmark = pytest.mark.timeout(30)


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


# ---- a raw peer: websockets' Sans-I/O server driven by hand, to misbehave on purpose ----

PeerBehaviour = Callable[[anyio.abc.SocketStream, ServerProtocol], Awaitable[None]]


async def flush(stream: anyio.abc.ByteStream, protocol: ServerProtocol) -> None:
    for chunk in protocol.data_to_send():
        if chunk:
            await stream.send(chunk)


@asynccontextmanager
async def raw_peer(behaviour: PeerBehaviour, *, handshake: bool = True) -> AsyncIterator[str]:
    """A server on loopback that accepts the upgrade (unless ``handshake`` is False) and then
    runs ``behaviour(stream, protocol)``. Yields its ws:// URL."""

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            protocol = ServerProtocol(max_size=None)
            if handshake:
                events: list[Any] = []
                while not events:
                    protocol.receive_data(await stream.receive())
                    events = protocol.events_received()
                protocol.send_response(protocol.accept(events[0]))
                await flush(stream, protocol)
            await behaviour(stream, protocol)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield f"ws://127.0.0.1:{port}/"
        tg.cancel_scope.cancel()


# ---- handshake ----


async def test_echo_text_binary_and_raw() -> None:
    async with WebSocketServer(echo) as server:
        async with open_websocket(server.url) as ws:
            await ws.send("héllo")
            assert await ws.receive() == "héllo"
            await ws.send(b"\x00\xffbinary")
            assert await ws.receive() == b"\x00\xffbinary"
            await ws.send_text(b'{"type":"x"}')
            assert await ws.receive_raw() == RawMessage(b'{"type":"x"}', True)
            await ws.send_binary(b"\x01")
            assert await ws.receive_raw() == RawMessage(b"\x01", False)
        assert ws.close_code == 1000
        assert ws.closed


async def test_send_texts_delivers_a_burst_in_order() -> None:
    async def burst(ws: WebSocket) -> None:
        await ws.send_texts(
            [f"event {index}" if index % 2 else f"event {index}".encode() for index in range(500)]
        )

    async with WebSocketServer(burst) as server:
        async with open_websocket(server.url) as ws:
            received = [await ws.receive() for _ in range(500)]
    assert received == [f"event {index}" for index in range(500)]


async def test_request_and_response_visible_to_both_sides() -> None:
    seen: list[HTTPRequest | None] = []

    async def handler(ws: WebSocket) -> None:
        seen.append(ws.request)
        await ws.send(ws.subprotocol or "none")

    def pick(request: HTTPRequest, offered: list[str]) -> str | None:
        return "realtime" if "realtime" in offered else None

    async with WebSocketServer(handler, select_subprotocol=pick) as server:
        async with open_websocket(
            f"{server.url}/v1/realtime?model=gpt-realtime&x=1",
            headers={"Authorization": "Bearer sk-test", "OpenAI-Beta": "realtime=v1"},
            subprotocols=["realtime", "openai-insecure-api-key.ek_123"],
        ) as ws:
            assert await ws.receive() == "realtime"
            assert ws.subprotocol == "realtime"
            assert ws.response is not None and ws.response.status == 101
            assert ws.response.header("upgrade") == "websocket"
            assert "permessage-deflate" in (ws.response.header("Sec-WebSocket-Extensions") or "")
    request = seen[0]
    assert request is not None
    assert (request.method, request.path) == ("GET", "/v1/realtime")
    assert request.query == {"model": "gpt-realtime", "x": "1"}
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.headers["OpenAI-Beta"] == "realtime=v1"
    offered = request.headers["Sec-WebSocket-Protocol"]
    assert offered == "realtime, openai-insecure-api-key.ek_123"


async def test_without_compression_no_extension_is_negotiated() -> None:
    async with WebSocketServer(echo) as server:
        async with open_websocket(server.url, compression=None) as ws:
            assert ws.response is not None
            assert ws.response.header("Sec-WebSocket-Extensions") is None
            await ws.send("x" * 100_000)
            assert await ws.receive() == "x" * 100_000


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_upgrade_refused_with_status(status: int) -> None:
    async def refuse(request: HTTPRequest) -> HTTPResponse | None:
        if request.headers.get("Authorization") == "Bearer good":
            return None
        return HTTPResponse.json({"error": {"message": "nope"}}, status)

    async with WebSocketServer(echo, process_request=refuse) as server:
        with pytest.raises(HandshakeError) as caught:
            async with open_websocket(server.url):
                pass
        assert caught.value.status == status
        assert json.loads(caught.value.body) == {"error": {"message": "nope"}}
        async with open_websocket(server.url, headers={"Authorization": "Bearer good"}) as ws:
            await ws.send("ok")
            assert await ws.receive() == "ok"


async def test_serve_with_task_status_reports_port() -> None:
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve, echo)
        async with open_websocket(f"ws://127.0.0.1:{port}") as ws:
            await ws.send("x")
            assert await ws.receive() == "x"
        tg.cancel_scope.cancel()


async def test_connection_refused_is_connect_error() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    with pytest.raises(ConnectError):
        async with open_websocket(f"ws://127.0.0.1:{port}"):
            pass


async def test_bad_url_is_connect_error() -> None:
    with pytest.raises(ConnectError):
        async with open_websocket("http://127.0.0.1:1/"):
            pass


async def test_open_timeout_when_server_never_answers() -> None:
    async def silent(stream: anyio.abc.SocketStream, protocol: ServerProtocol) -> None:
        await anyio.sleep_forever()

    async with raw_peer(silent, handshake=False) as url:
        with anyio.fail_after(5):
            with pytest.raises(Timeout):
                async with open_websocket(url, open_timeout=0.2):
                    pass


async def test_garbage_instead_of_handshake_is_protocol_error() -> None:
    async def garbage(stream: anyio.abc.SocketStream, protocol: ServerProtocol) -> None:
        await stream.receive()
        await stream.send(b"\x00\x01garbage that is not HTTP\r\n\r\n")

    async with raw_peer(garbage, handshake=False) as url:
        with pytest.raises(ProtocolError):
            async with open_websocket(url):
                pass


# ---- plain HTTP on the same port ----


def http_exchange(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


async def test_plain_http_post_with_json_body() -> None:
    received: list[HTTPRequest] = []

    async def http_handler(request: HTTPRequest) -> HTTPResponse:
        received.append(request)
        payload = request.json()
        return HTTPResponse.json({"value": "ek_test", "echo": payload}, 200)

    body = json.dumps({"session": {"type": "realtime", "model": "gpt-realtime"}}).encode()
    async with WebSocketServer(echo, http_handler=http_handler) as server:
        status, headers, answer = await anyio.to_thread.run_sync(
            lambda: http_exchange(
                server.port,
                "POST",
                "/v1/realtime/client_secrets?x=y",
                body,
                {"Content-Type": "application/json", "Authorization": "Bearer sk"},
            )
        )
        # The WebSocket side still works on the same server.
        async with open_websocket(server.url) as ws:
            await ws.send("still here")
            assert await ws.receive() == "still here"
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(answer) == {"value": "ek_test", "echo": json.loads(body)}
    request = received[0]
    assert (request.method, request.path, dict(request.query)) == (
        "POST",
        "/v1/realtime/client_secrets",
        {"x": "y"},
    )
    assert request.headers["authorization"] == "Bearer sk"
    assert request.body == body


async def test_failing_http_hooks_answer_400_or_500(caplog: pytest.LogCaptureFixture) -> None:
    async def http_handler(request: HTTPRequest) -> HTTPResponse:
        if request.path == "/json":
            request.json()  # the body is not JSON: ProtocolError
        raise RuntimeError("bug in the hook")

    async def process_request(request: HTTPRequest) -> HTTPResponse | None:
        raise RuntimeError("bug in the upgrade hook")

    async with WebSocketServer(
        echo, http_handler=http_handler, process_request=process_request
    ) as server:
        bad_json, _, message = await anyio.to_thread.run_sync(
            lambda: http_exchange(server.port, "POST", "/json", b"{nope")
        )
        crashed, _, _ = await anyio.to_thread.run_sync(
            lambda: http_exchange(server.port, "POST", "/other", b"{}")
        )
        with pytest.raises(HandshakeError) as caught:
            async with open_websocket(server.url):
                pass
    assert bad_json == 400 and b"not JSON" in message
    assert crashed == 500
    assert caught.value.status == 500
    assert "bug in the hook" in caplog.text


async def test_plain_http_without_handler_gets_426_and_bad_requests_get_4xx() -> None:
    async with WebSocketServer(echo, max_size=1000) as server:
        status, headers, _ = await anyio.to_thread.run_sync(
            lambda: http_exchange(server.port, "GET", "/")
        )
        assert status == 426
        assert headers["Upgrade"] == "websocket"
        too_big, _, _ = await anyio.to_thread.run_sync(
            lambda: http_exchange(server.port, "POST", "/", b"x" * 2000)
        )
        assert too_big == 413

        async def raw_request(data: bytes) -> bytes:
            async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
                await stream.send(data)
                answer = b""
                try:
                    while True:
                        answer += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return answer

        assert (await raw_request(b"GET / SPDY/3\r\n\r\n")).startswith(b"HTTP/1.1 505 ")
        assert (await raw_request(b"garbage\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
        chunked = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        assert (await raw_request(chunked)).startswith(b"HTTP/1.1 501 ")
        # Garbage did not hurt the server.
        async with open_websocket(server.url) as ws:
            await ws.send("fine")
            assert await ws.receive() == "fine"


# ---- messages: large, fragmented, over the limit ----


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_large_messages_round_trip(compression: Any) -> None:
    # zlib on incompressible data is slow: keep the deflate case smaller.
    size = 10 * 2**20 if compression is None else 2 * 2**20
    text = os.urandom(size // 2).hex()
    blob = os.urandom(size)
    async with WebSocketServer(echo, compression=compression) as server:
        async with open_websocket(server.url, compression=compression) as ws:
            await ws.send(text)
            assert await ws.receive() == text
            await ws.send(blob)
            assert await ws.receive() == blob


async def test_message_over_max_size_fails_the_connection_with_1009() -> None:
    closed: list[int | None] = []

    async def handler(ws: WebSocket) -> None:
        await ws.send(b"x" * 2000)
        with pytest.raises(ConnectionClosed):
            await ws.receive()
        closed.append(ws.close_code)

    async with WebSocketServer(handler) as server:
        async with open_websocket(server.url, max_size=1000) as ws:
            with pytest.raises(ProtocolError, match="too big"):
                await ws.receive()
    assert closed == [1009]
    assert DEFAULT_MAX_SIZE == 16 * 2**20


async def test_fragmented_messages_with_interleaved_ping_are_reassembled() -> None:
    pongs: list[bytes] = []

    async def fragments(stream: anyio.abc.SocketStream, protocol: ServerProtocol) -> None:
        protocol.send_text(b"frag", fin=False)
        protocol.send_ping(b"mid")
        protocol.send_continuation("mént".encode(), fin=False)
        protocol.send_continuation(b"ed", fin=True)
        protocol.send_binary(b"\x00" * 70_000, fin=False)
        protocol.send_continuation(b"\x01" * 70_000, fin=True)
        await flush(stream, protocol)
        while not pongs:
            protocol.receive_data(await stream.receive())
            pongs.extend(
                bytes(e.data) for e in protocol.events_received() if e.opcode is Opcode.PONG
            )
        await anyio.sleep_forever()

    async with raw_peer(fragments) as url:
        async with open_websocket(url, close_timeout=0.1) as ws:
            assert await ws.receive() == "fragménted"
            assert await ws.receive() == b"\x00" * 70_000 + b"\x01" * 70_000
    assert pongs == [b"mid"]


async def test_invalid_utf8_text_frame() -> None:
    async def bad_text(stream: anyio.abc.SocketStream, protocol: ServerProtocol) -> None:
        protocol.send_text(b"\xff\xfe not utf-8")
        protocol.send_text(b"\xc3\x28")
        await flush(stream, protocol)
        with anyio.move_on_after(5):
            while protocol.close_rcvd is None:
                protocol.receive_data(await stream.receive())
        assert protocol.close_rcvd is not None and protocol.close_rcvd.code == 1007

    async with raw_peer(bad_text) as url:
        async with open_websocket(url, close_timeout=1) as ws:
            # The raw form hands the bytes over untouched; the decoding form refuses them.
            assert await ws.receive_raw() == RawMessage(b"\xff\xfe not utf-8", True)
            with pytest.raises(ProtocolError, match="UTF-8"):
                await ws.receive()


async def test_concurrent_senders_do_not_interleave_frames() -> None:
    async with WebSocketServer(echo) as server:
        async with open_websocket(server.url) as ws:

            async def sender(tag: int) -> None:
                for index in range(20):
                    await ws.send(f"{tag}:{index}:" + "y" * 50_000)

            async with anyio.create_task_group() as tg:
                for tag in range(5):
                    tg.start_soon(sender, tag)
                received = [await ws.receive() for _ in range(100)]
    seen: dict[str, list[int]] = {}
    for message in received:
        assert isinstance(message, str)
        tag, index, filler = message.split(":")
        assert filler == "y" * 50_000
        seen.setdefault(tag, []).append(int(index))
    assert seen == {str(tag): list(range(20)) for tag in range(5)}


# ---- ping / pong and keepalive ----


async def test_ping_measures_a_round_trip() -> None:
    async with WebSocketServer(echo) as server:
        async with open_websocket(server.url) as ws:
            rtt = await ws.ping()
            assert 0 <= rtt < 5
            assert 0 <= await ws.ping(b"custom") < 5


async def test_server_answers_pings_and_keepalive_keeps_an_idle_link_open() -> None:
    async with WebSocketServer(echo, ping_interval=0.05, ping_timeout=0.5) as server:
        async with open_websocket(server.url, ping_interval=0.05, ping_timeout=0.5) as ws:
            await anyio.sleep(0.5)
            await ws.send("alive")
            assert await ws.receive() == "alive"


async def test_keepalive_detects_a_peer_that_stops_answering() -> None:
    async def mute(stream: anyio.abc.SocketStream, protocol: ServerProtocol) -> None:
        await anyio.sleep_forever()  # reads nothing, answers nothing, keeps TCP open

    async with raw_peer(mute) as url:
        with anyio.fail_after(5):
            async with open_websocket(url, ping_interval=0.1, ping_timeout=0.3) as ws:
                start = anyio.current_time()
                with pytest.raises(KeepaliveTimeout) as caught:
                    await ws.receive()
                elapsed = anyio.current_time() - start
    assert caught.value.code == 1006
    assert isinstance(caught.value, Timeout)
    assert 0.3 <= elapsed < 3


async def test_keepalive_detects_a_dead_peer_while_a_send_is_blocked() -> None:
    async def mute(stream: anyio.abc.SocketStream, protocol: ServerProtocol) -> None:
        await anyio.sleep_forever()  # never reads: our writes back up into the socket buffers

    outcome: list[BaseException] = []
    async with raw_peer(mute) as url:
        with anyio.fail_after(10):
            async with open_websocket(
                url, compression=None, ping_interval=0.2, ping_timeout=0.3, close_timeout=0.2
            ) as ws:

                async def flood() -> None:
                    try:
                        while True:
                            await ws.send(b"x" * 2**20)
                    except ConnectionClosed as exc:
                        outcome.append(exc)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(flood)
                    with pytest.raises(KeepaliveTimeout):
                        await ws.receive()
    assert len(outcome) == 1 and isinstance(outcome[0], KeepaliveTimeout)


# ---- close codes ----

EXPIRY = "Your session hit the maximum duration of 60 minutes."


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        (1000, "", ConnectionClosed),
        (1001, EXPIRY, SessionExpired),
        (1001, "server restart", ConnectionClosed),
        (3000, "invalid_request_error.invalid_api_key", AuthenticationError),
        (4000, "invalid_request_error.beta_api_shape_disabled", InvalidRequestError),
        (1011, "internal error", ConnectionClosed),
    ],
)
async def test_server_close_codes_map_to_exceptions(
    code: int, reason: str, expected: type[ConnectionClosed]
) -> None:
    error_event = json.dumps({"type": "error", "error": {"code": "x", "message": "y"}})

    async def handler(ws: WebSocket) -> None:
        await ws.send(error_event)
        await ws.close(code, reason)

    async with WebSocketServer(handler) as server:
        async with open_websocket(server.url) as ws:
            assert await ws.receive() == error_event  # the event before the close arrives
            with pytest.raises(ConnectionClosed) as caught:
                await ws.receive()
            assert type(caught.value) is expected
            assert (caught.value.code, caught.value.reason) == (code, reason)
            assert (ws.close_code, ws.close_reason) == (code, reason)
            with pytest.raises(expected):
                await ws.send("too late")


@pytest.mark.parametrize(("code", "reason"), [(1000, ""), (1001, "bye")])
async def test_iteration_ends_quietly_on_normal_close(code: int, reason: str) -> None:
    async def handler(ws: WebSocket) -> None:
        for index in range(3):
            await ws.send(str(index))
        await ws.close(code, reason)

    async with WebSocketServer(handler) as server:
        async with open_websocket(server.url) as ws:
            assert [message async for message in ws] == ["0", "1", "2"]


async def test_iteration_raises_on_session_expiry() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.send("last")
        await ws.close(1001, EXPIRY)

    async with WebSocketServer(handler) as server:
        async with open_websocket(server.url) as ws:
            messages = []
            with pytest.raises(SessionExpired):
                async for message in ws:
                    messages.append(message)
            assert messages == ["last"]


async def test_handler_exception_closes_with_1011() -> None:
    async def handler(ws: WebSocket) -> None:
        raise RuntimeError("handler bug")

    async with WebSocketServer(handler) as server:
        async with open_websocket(server.url) as ws:
            with pytest.raises(ConnectionClosed) as caught:
                await ws.receive()
    assert caught.value.code == 1011


async def test_server_shutdown_closes_connections_with_1001() -> None:
    server_scope = anyio.CancelScope()

    async def run_server(*, task_status: anyio.abc.TaskStatus[int]) -> None:
        with server_scope:
            await serve(echo, task_status=task_status)

    async with anyio.create_task_group() as tg:
        port = await tg.start(run_server)
        async with open_websocket(f"ws://127.0.0.1:{port}") as ws:
            await ws.send("x")
            assert await ws.receive() == "x"
            server_scope.cancel()
            with pytest.raises(ConnectionClosed) as caught:
                await ws.receive()
    assert caught.value.code == 1001


async def test_abnormal_closure_without_close_frame() -> None:
    async def vanish(stream: anyio.abc.SocketStream, protocol: ServerProtocol) -> None:
        protocol.send_text(b"bye")
        await flush(stream, protocol)
        await stream.aclose()  # TCP closes with no close frame

    async with raw_peer(vanish) as url:
        async with open_websocket(url) as ws:
            assert await ws.receive() == "bye"
            with pytest.raises(ConnectionClosed) as caught:
                await ws.receive()
    assert type(caught.value) is ConnectionClosed
    assert caught.value.code == 1006


async def test_peer_sending_garbage_bytes() -> None:
    async def garbage(stream: anyio.abc.SocketStream, protocol: ServerProtocol) -> None:
        await stream.send(b"\x8f\xff" + os.urandom(64))  # reserved opcode, bogus length
        with anyio.move_on_after(5):
            while True:
                data = await stream.receive()
                protocol.receive_data(data)
                for frame in protocol.events_received():
                    if frame.opcode is Opcode.CLOSE:
                        assert Close.parse(frame.data).code == 1002
                        return

    async with raw_peer(garbage) as url:
        async with open_websocket(url, close_timeout=1) as ws:
            with pytest.raises(ProtocolError, match="1002"):
                await ws.receive()


async def test_client_sending_garbage_does_not_hurt_the_server() -> None:
    async with WebSocketServer(echo) as server:
        async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
            protocol = ServerProtocol()  # borrowed only to build a valid upgrade request
            del protocol
            key = "dGhlIHNhbXBsZSBub25jZQ=="
            await stream.send(
                b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            answer = await stream.receive()
            assert answer.startswith(b"HTTP/1.1 101 ")
            await stream.send(b"\x81\x05hello")  # unmasked client frame: a protocol error
            rest = b""
            with anyio.fail_after(5):
                try:
                    while True:
                        rest += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    pass
            frame = Frame(Opcode.CLOSE, rest[2:])
            assert rest[0] == 0x88 and Close.parse(frame.data).code == 1002
        async with open_websocket(server.url) as ws:
            await ws.send("ok")
            assert await ws.receive() == "ok"


async def test_frames_in_the_same_write_as_the_101_response_are_received() -> None:
    """The reader must see every frame from its first byte, also those that came with the
    handshake's answer, one of them cut by the end of that write."""

    async def eager(stream: anyio.abc.SocketStream, protocol: ServerProtocol) -> None:
        events: list[Any] = []
        while not events:
            protocol.receive_data(await stream.receive())
            events = protocol.events_received()
        protocol.send_response(protocol.accept(events[0]))
        protocol.send_text(b"first")
        protocol.send_text(b"second" * 100)
        data = b"".join(protocol.data_to_send())
        await stream.send(data[:-250])
        await anyio.sleep(0.05)
        await stream.send(data[-250:])
        await anyio.sleep(5)

    async with raw_peer(eager, handshake=False) as url:
        async with open_websocket(url, close_timeout=0.5) as ws:
            with anyio.fail_after(5):
                assert await ws.receive() == "first"
                assert await ws.receive() == "second" * 100


async def test_frames_sent_right_behind_the_upgrade_request_are_received() -> None:
    async with WebSocketServer(echo) as server:
        async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
            client = ClientProtocol(parse_uri(server.url))
            client.send_request(client.connect())
            frames = [Frame(Opcode.TEXT, data) for data in (b"pipelined", b"x" * 300)]
            await stream.send(
                b"".join(client.data_to_send())
                + b"".join(frame.serialize(mask=True, extensions=[]) for frame in frames)
            )
            messages: list[bytes] = []
            with anyio.fail_after(5):
                while len(messages) < 2:
                    client.receive_data(await stream.receive())
                    messages += [
                        bytes(frame.data)
                        for frame in client.events_received()
                        if isinstance(frame, Frame)
                    ]
            assert messages == [b"pipelined", b"x" * 300]


async def test_close_is_idempotent_and_sending_after_close_raises() -> None:
    async with WebSocketServer(echo) as server:
        async with open_websocket(server.url) as ws:
            await ws.close()
            await ws.close()
            assert ws.close_code == 1000
            with pytest.raises(ConnectionClosed) as caught:
                await ws.send("x")
            assert caught.value.code == 1000


async def test_bad_arguments_raise_clear_errors() -> None:
    async with WebSocketServer(echo) as server:
        async with open_websocket(server.url) as ws:
            with pytest.raises(ValueError, match="close code"):
                await ws.close(1005)
            with pytest.raises(ValueError, match="close code"):
                await ws.close(5000)
            with pytest.raises(ValueError, match="123 bytes"):
                await ws.close(1000, "x" * 124)
            with pytest.raises(TypeError, match="str or bytes"):
                await ws.send({"type": "dict"})  # type: ignore[arg-type]
            await ws.send("still open")
            assert await ws.receive() == "still open"


async def test_body_exception_propagates_unwrapped() -> None:
    async with WebSocketServer(echo) as server:
        with pytest.raises(ZeroDivisionError):
            async with open_websocket(server.url):
                1 / 0  # noqa: B018


# ---- flow control ----


async def test_slow_consumer_keeps_memory_bounded_and_survives_keepalive() -> None:
    message = os.urandom(32 * 1024)
    total = 1000  # 32 MiB offered
    progress = {"sent": 0}

    async def producer(ws: WebSocket) -> None:
        for index in range(total):
            await ws.send(index.to_bytes(4, "big") + message)
            progress["sent"] = index + 1
        await ws.close()

    async with WebSocketServer(producer, compression=None) as server:
        async with open_websocket(
            server.url, compression=None, max_queue=8, ping_interval=0.05, ping_timeout=0.2
        ) as ws:
            await anyio.sleep(0.6)  # the consumer is busy; keepalive must not blame the peer
            in_flight = progress["sent"]
            # What the producer got rid of sits in our queue and the kernels' socket buffers.
            assert in_flight < total
            assert in_flight * len(message) < 24 * 2**20
            indices = []
            async for received in ws:
                assert isinstance(received, bytes) and received[4:] == message
                indices.append(int.from_bytes(received[:4], "big"))
    assert indices == list(range(total))


async def test_sender_is_held_back_by_a_peer_that_does_not_read() -> None:
    release = anyio.Event()

    async def lazy(ws: WebSocket) -> None:
        await release.wait()
        async for _ in ws:
            pass

    async with WebSocketServer(lazy, compression=None, max_queue=4) as server:
        async with open_websocket(server.url, compression=None) as ws:
            chunk = os.urandom(64 * 1024)
            sent = 0
            with anyio.move_on_after(0.5):
                for _ in range(2000):  # 128 MiB if nothing pushed back
                    await ws.send(chunk)
                    sent += 1
            assert sent * len(chunk) < 32 * 2**20
            release.set()


# ---- TLS ----


async def test_tls_with_a_trusted_ca() -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    async with WebSocketServer(echo, ssl_context=server_context) as server:
        assert server.url.startswith("wss://")
        async with open_websocket(server.url, ssl_context=client_context) as ws:
            await ws.send("secure")
            assert await ws.receive() == "secure"
            big = os.urandom(2 * 2**20)
            await ws.send(big)
            assert await ws.receive() == big
        assert ws.close_code == 1000
        # The system trust store does not know this CA.
        with pytest.raises(ConnectError, match="(?i)certificate"):
            async with open_websocket(server.url):
                pass


async def test_tls_server_close_code_reaches_client() -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    async def handler(ws: WebSocket) -> None:
        await ws.close(3000, "invalid_request_error.invalid_api_key")

    async with WebSocketServer(handler, host="localhost", ssl_context=server_context) as server:
        async with open_websocket(
            f"wss://localhost:{server.port}", ssl_context=client_context
        ) as ws:
            with anyio.fail_after(5):
                with pytest.raises(AuthenticationError):
                    await ws.receive()


async def test_debug_logs_never_show_keys_or_tokens(caplog: pytest.LogCaptureFixture) -> None:
    # websockets logs each handshake header at DEBUG through our logger.
    async def echo(ws: WebSocket) -> None:
        await ws.send(await ws.receive())

    caplog.set_level(logging.DEBUG, logger="realtalk.transport")
    async with WebSocketServer(echo, select_subprotocol=lambda request, offered: "realtime") \
            as server:
        async with open_websocket(
            server.url, headers={"Authorization": "Bearer sk-secret-123", "api-key": "az-secret"},
            subprotocols=["realtime", "openai-insecure-api-key.ek_secret456"],
        ) as ws:
            await ws.send("ping")
            assert await ws.receive() == "ping"
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "Authorization: Bearer [redacted]" in text  # the header is still logged, not its value
    for secret in ("sk-secret-123", "az-secret", "ek_secret456"):
        assert secret not in text

# ---- consume: messages handed to a handler inside the reader task ----


async def test_consume_delivers_queued_then_live_messages_in_order_then_raises_close() -> None:
    total = 300
    ready = anyio.Event()

    async def producer(ws: WebSocket) -> None:
        await ws.send_texts([f"early {index}" for index in range(5)])
        await ready.wait()
        for index in range(total):
            if index % 3:
                await ws.send(f"live {index}")
            else:
                await ws.send(index.to_bytes(2, "big"))
        await ws.close(4000, "done")

    async with WebSocketServer(producer, compression=None) as server:
        async with open_websocket(server.url, compression=None, max_queue=4) as ws:
            assert await ws.receive() == "early 0"
            await anyio.sleep(0.1)  # the other early messages wait in the queue
            seen: list[tuple[bytes, bool]] = []
            ready.set()
            with pytest.raises(InvalidRequestError):
                await ws.consume(lambda data, is_text: seen.append((data, is_text)))
    expected = [(f"early {index}".encode(), True) for index in range(1, 5)] + [
        (f"live {index}".encode(), True) if index % 3 else (index.to_bytes(2, "big"), False)
        for index in range(total)
    ]
    assert seen == expected


async def test_consume_picks_up_a_full_queue_and_a_reader_waiting_for_room() -> None:
    total = 50

    async def producer(ws: WebSocket) -> None:
        for index in range(total):
            await ws.send(str(index))
        await ws.close()

    async with WebSocketServer(producer, compression=None) as server:
        async with open_websocket(server.url, compression=None, max_queue=2) as ws:
            await anyio.sleep(0.2)  # queue full, the reader blocked on the third message
            seen: list[int] = []
            with pytest.raises(ConnectionClosed) as caught:
                await ws.consume(lambda data, _: seen.append(int(data)))
            assert caught.value.code == 1000
    assert seen == list(range(total))


async def test_consume_handler_error_is_raised_and_later_messages_still_arrive() -> None:
    release = anyio.Event()

    async def producer(ws: WebSocket) -> None:
        await ws.send("first")
        await ws.send("bad")
        await release.wait()
        await ws.send("after")
        async for _ in ws:
            pass

    async with WebSocketServer(producer, compression=None) as server:
        async with open_websocket(server.url, compression=None) as ws:
            seen: list[bytes] = []

            def handler(data: bytes, _: bool) -> None:
                if data == b"bad":
                    raise ValueError("handler refused it")
                seen.append(data)

            with pytest.raises(ValueError, match="handler refused it"):
                await ws.consume(handler)
            release.set()
            assert await ws.receive() == "after"
            assert seen == [b"first"]


async def test_consume_cancelled_hands_the_rest_to_receive_with_backpressure() -> None:
    """After consume stops, later messages queue for the receive methods: bounded (the peer is
    held back while nobody reads), in order, none lost at the hand-over."""
    message = os.urandom(32 * 1024)
    total = 1000
    progress = {"sent": 0}

    async def producer(ws: WebSocket) -> None:
        for index in range(total):
            await ws.send(index.to_bytes(4, "big") + message)
            progress["sent"] = index + 1
        await ws.close()

    async with WebSocketServer(producer, compression=None) as server:
        async with open_websocket(server.url, compression=None, max_queue=8) as ws:
            indices: list[int] = []
            with anyio.CancelScope() as scope:

                def handler(data: bytes, _: bool) -> None:
                    indices.append(int.from_bytes(data[:4], "big"))
                    if len(indices) == 10:
                        scope.cancel()

                await ws.consume(handler)
            # (messages in the same read as the tenth may still reach the handler)
            await anyio.sleep(0.3)  # nobody reads now
            assert len(indices) >= 10
            assert progress["sent"] < total
            assert progress["sent"] * len(message) < 24 * 2**20
            async for received in ws:
                indices.append(int.from_bytes(received[:4], "big"))
    assert indices == list(range(total))


async def test_consume_twice_at_once_is_refused() -> None:
    async with WebSocketServer(echo) as server:
        async with open_websocket(server.url) as ws, anyio.create_task_group() as tg:
            tg.start_soon(ws.consume, lambda data, is_text: None)
            await anyio.sleep(0.05)
            with pytest.raises(RuntimeError, match="already has a consumer"):
                await ws.consume(lambda data, is_text: None)
            tg.cancel_scope.cancel()


# ---- try_send_text: a send without awaiting, when nothing would be overtaken ----


async def test_try_send_text_keeps_order_with_awaited_sends(anyio_backend_name: str) -> None:
    async with WebSocketServer(echo, compression=None) as server:
        async with open_websocket(server.url, compression=None) as ws:
            expected: list[str] = []
            immediate = 0
            for index in range(200):
                text = f"message {index}"
                expected.append(text)
                if index % 5 == 0:
                    await ws.send_text(text)
                elif ws.try_send_text(text.encode()):
                    immediate += 1
                else:
                    await ws.send_text(text)
                if index % 7 == 0:
                    await anyio.sleep(0)
            received = [await ws.receive() for _ in expected]
    assert received == expected
    # asyncio's plain TCP stream writes at once; elsewhere the caller always awaits.
    assert (immediate > 0) == (anyio_backend_name == "asyncio")


async def test_try_send_text_refuses_once_the_peer_stops_reading() -> None:
    release = anyio.Event()

    async def lazy(ws: WebSocket) -> None:
        await release.wait()
        async for _ in ws:
            pass

    async with WebSocketServer(lazy, compression=None) as server:
        async with open_websocket(server.url, compression=None) as ws:
            chunk = b"x" * (64 * 1024)
            written = 0
            for _ in range(2000):  # 128 MiB if nothing pushed back
                if not ws.try_send_text(chunk):
                    break
                written += 1
                await anyio.sleep(0)
            assert written * len(chunk) < 32 * 2**20
            release.set()


async def test_try_send_text_after_close_sends_nothing() -> None:
    async with WebSocketServer(echo) as server:
        async with open_websocket(server.url) as ws:
            await ws.close()
            assert not ws.try_send_text(b"late")


# ---- the asyncio fast path: the reader works in the event loop's data callback ----


async def test_the_reader_reads_from_the_loop_callback_on_asyncio_plain_tcp(
    anyio_backend_name: str,
) -> None:
    # A canary on anyio's private stream attributes: if an anyio release renames them the fast
    # path silently turns off, and this test says so.
    async with WebSocketServer(echo) as server:
        async with open_websocket(server.url) as ws:
            await ws.send("hello")
            assert await ws.receive() == "hello"
            assert (ws._push is not None) == (anyio_backend_name == "asyncio")


@pytest.mark.parametrize("anyio_backend", [UVLOOP])
async def test_on_uvloop_the_reader_reads_from_the_loop_callback_too() -> None:
    # uvloop's transports have asyncio's methods without deriving from its classes.
    import asyncio

    assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
    sizes = [0, 1, 125, 126, 65_535, 65_536, 3 * 2**20]  # every header form, reads cut in two
    async with WebSocketServer(echo) as server:
        async with open_websocket(server.url) as ws:
            for size in sizes:
                await ws.send(bytes(i % 251 for i in range(size)))
            assert [len(await ws.receive()) for _ in sizes] == sizes
            assert ws._push is not None and ws._write_now is not None
            assert await ws.ping() >= 0
            received: list[bytes] = []

            def handler(data: bytes, is_text: bool) -> None:
                received.append(data)
                if len(received) == 3:
                    raise EOFError

            for text in ("a", "b", "c"):
                await ws.send(text)
            with pytest.raises(EOFError):
                await ws.consume(handler)
            assert received == [b"a", b"b", b"c"]
        assert ws.close_code == 1000


async def test_a_consume_handler_may_use_anyio_and_start_tasks() -> None:
    # On asyncio the handler runs in a loop callback, outside any task: anyio must still know
    # which loop it is on. (As under asyncio.run: no runner has told sniffio the library.)
    sniffio = pytest.importorskip("sniffio")
    sniffio.current_async_library_cvar.set(None)
    results: list[str] = []
    async with WebSocketServer(echo) as server:
        async with open_websocket(server.url) as ws, anyio.create_task_group() as tg:

            async def record(text: str) -> None:
                await anyio.sleep(0)
                results.append(text)

            def handler(data: bytes, is_text: bool) -> None:
                assert anyio.current_time() > 0
                tg.start_soon(record, data.decode())

            tg.start_soon(ws.consume, handler)
            for index in range(20):
                await ws.send(f"m{index}")
            with anyio.fail_after(5):
                while len(results) < 20:
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    assert sorted(results) == sorted(f"m{index}" for index in range(20))


async def test_messages_sent_right_after_the_handshake_are_all_received() -> None:
    # They may arrive before the fast path takes over the socket: none may be lost.
    async def burst(ws: WebSocket) -> None:
        await ws.send_texts([f"early {index}" for index in range(500)])
        async for _ in ws:
            pass

    async with WebSocketServer(burst, compression=None) as server:
        for _ in range(5):
            async with open_websocket(server.url, compression=None) as ws:
                received = [await ws.receive() for _ in range(500)]
                assert received == [f"early {index}" for index in range(500)]


async def test_abort_drops_the_connection_without_a_close_handshake() -> None:
    peer_saw: list[ConnectionClosed] = []

    async def record(ws: WebSocket) -> None:
        try:
            await ws.receive()
        except ConnectionClosed as exc:
            peer_saw.append(exc)

    async with WebSocketServer(record) as server:
        async with open_websocket(server.url) as ws:
            ws.abort("giving up")
            with pytest.raises(ConnectionClosed, match="giving up") as raised:
                await ws.receive()
            assert raised.value.code == 1006
            with pytest.raises(ConnectionClosed):
                await ws.send("too late")
        with anyio.fail_after(5):
            while not peer_saw:
                await anyio.sleep(0.01)
    assert peer_saw[0].code == 1006
