"""HTTP/1.1 on h11: hostile requests to the server and unsafe headers on either side.

The oracle is RFC 9112 (HTTP/1.1 message syntax) as h11 enforces it and as the stdlib's
``http.client`` reads responses: every hostile request gets a status line and a short body,
never silence, and nothing a caller gives (a hook's header, a client header) can split a
message in two."""

from __future__ import annotations

import http.client
import io

import anyio
import pytest
from realtalk.transport import (
    MAX_REQUEST_HEAD,
    HTTPRequest,
    HTTPResponse,
    WebSocket,
    WebSocketServer,
    open_websocket,
)

pytestmark = pytest.mark.timeout(30)


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


async def exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, then read the answer until the server closes."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(data)
        answer = b""
        with anyio.fail_after(10):
            try:
                while True:
                    answer += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return answer


class _Socket:
    def __init__(self, data: bytes) -> None:
        self._file = io.BytesIO(data)

    def makefile(self, mode: str) -> io.BytesIO:
        return self._file


def parsed(answer: bytes) -> http.client.HTTPResponse:
    response = http.client.HTTPResponse(_Socket(answer))  # type: ignore[arg-type]
    response.begin()
    return response


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        # HTTP/1.1 requires Host (RFC 9112 3.2): a request without one is refused.
        (b"POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 400),
        # Two different lengths: which one frames the body is ambiguous (request smuggling).
        (b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
        (b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n", 400),
        # Obsolete line folding right after the request line.
        (b"GET /x HTTP/1.1\r\n folded: value\r\nHost: a\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\nHost: a\r\nBad Name: v\r\n\r\n", 400),
        (b"GET /x HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400),  # a target must be ASCII
        # h11 lets a DEL through in a value, websockets' Headers does not: still a 400, not a
        # connection dropped without an answer.
        (b"GET /x HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 400),
        # Over the head limit, however the reads cut it (here the head completes in the read
        # that crosses the limit).
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"y" * MAX_REQUEST_HEAD + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"y" * (2 * MAX_REQUEST_HEAD), 431),
    ],
)
async def test_hostile_requests_get_a_status_and_the_server_survives(
    request_bytes: bytes, status: int
) -> None:
    async def http_handler(request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse.text("served")

    async with WebSocketServer(echo, http_handler=http_handler) as server:
        answer = await exchange(server.port, request_bytes)
        response = parsed(answer)
        assert response.status == status, answer[:200]
        assert response.getheader("Connection") == "close"
        assert response.read()  # a short reason, never an empty answer
        async with open_websocket(server.url) as ws:  # nothing broke
            await ws.send("still fine")
            assert await ws.receive() == "still fine"


async def test_a_request_with_a_body_and_an_upgrade_in_one_read_reads_only_its_body() -> None:
    """Bytes after a request's body are not part of it (no keep-alive: they are dropped)."""
    bodies: list[bytes] = []

    async def http_handler(request: HTTPRequest) -> HTTPResponse:
        bodies.append(request.body)
        return HTTPResponse.text("ok")

    async with WebSocketServer(echo, http_handler=http_handler) as server:
        answer = await exchange(
            server.port,
            b"POST /t HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n",
        )
    assert parsed(answer).status == 200
    assert bodies == [b"abc"]


@pytest.mark.parametrize("value", ["a\r\nSet-Cookie: stolen=1", "a\nX-Injected: 1", "a\rb"])
async def test_a_hook_header_with_a_line_break_becomes_a_500_not_a_split_response(
    value: str,
) -> None:
    async def http_handler(request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse.text("hi", headers=[("X-Note", value)])

    async with WebSocketServer(echo, http_handler=http_handler) as server:
        answer = await exchange(server.port, b"GET /h HTTP/1.1\r\nHost: a\r\n\r\n")
    assert parsed(answer).status == 500
    assert b"stolen" not in answer and b"X-Injected" not in answer


def test_serialize_refuses_a_header_that_would_split_the_response() -> None:
    import h11

    with pytest.raises(h11.LocalProtocolError):
        HTTPResponse(200, [("X-A", "1\r\nX-B: 2")], b"").serialize()
