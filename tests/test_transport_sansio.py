"""Bytes-only tests of the transport's pure parts: HTTP serialisation checked by independent
parsers (the stdlib's http.client, websockets' own), the close-code mapping, the request-head
parser fed by websockets' client, and the bounded message queue."""

from __future__ import annotations

import http.client
import io

import anyio
import pytest
from realtalk.errors import (
    AuthenticationError,
    ConnectionClosed,
    InvalidRequestError,
    SessionExpired,
)
from realtalk.transport import HTTPResponse, RawMessage, close_error
from realtalk.transport.asyncio_fast_path import running_asyncio_loop as _running_asyncio_loop
from realtalk.transport.http11 import RefuseRequest as _RefuseRequest
from realtalk.transport.http11 import parse_request_head as _parse_request_head
from realtalk.transport.messages import MessageQueue as _MessageQueue
from websockets.client import ClientProtocol
from websockets.http11 import Response
from websockets.streams import StreamReader
from websockets.uri import parse_uri


class FakeSocket:
    def __init__(self, data: bytes) -> None:
        self._file = io.BytesIO(data)

    def makefile(self, mode: str) -> io.BytesIO:
        return self._file


def test_http_response_is_valid_for_the_stdlib_parser() -> None:
    response = HTTPResponse.json({"value": "ek_1", "n": [1, 2]}, 201, [("X-Trace", "abc")])
    parsed = http.client.HTTPResponse(FakeSocket(response.serialize()))  # type: ignore[arg-type]
    parsed.begin()
    assert (parsed.status, parsed.reason) == (201, "Created")
    assert parsed.getheader("Content-Type") == "application/json"
    assert parsed.getheader("X-Trace") == "abc"
    assert parsed.getheader("Connection") == "close"
    assert parsed.read() == b'{"value":"ek_1","n":[1,2]}'


def test_http_response_is_valid_for_websockets_client_parser() -> None:
    response = HTTPResponse.text("Missing bearer token.", 401)
    reader = StreamReader()
    reader.feed_data(response.serialize())
    reader.feed_eof()
    parser = Response.parse(reader.read_line, reader.read_exact, reader.read_to_eof)
    with pytest.raises(StopIteration) as done:
        next(parser)
    parsed = done.value.value
    assert parsed.status_code == 401
    assert parsed.body == b"Missing bearer token."
    assert parsed.headers["Content-Length"] == str(len(b"Missing bearer token."))


def test_framing_headers_given_by_a_hook_are_replaced() -> None:
    response = HTTPResponse(200, [("Content-Length", "999"), ("connection", "keep-alive")], b"ok")
    head = response.serialize().split(b"\r\n\r\n")[0].lower()
    assert head.count(b"content-length") == 1 and b"content-length: 2" in head
    assert head.count(b"connection") == 1 and b"connection: close" in head


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        (3000, "invalid_request_error.invalid_api_key", AuthenticationError),
        (4000, "invalid_request_error.invalid_model", InvalidRequestError),
        (1001, "Your session hit the maximum duration of 60 minutes.", SessionExpired),
        (1001, "Your session hit the maximum duration of 30 minutes.", SessionExpired),
        (1001, "going away", ConnectionClosed),
        (1000, "", ConnectionClosed),
        (1011, "keepalive ping timeout", ConnectionClosed),
        (1006, "", ConnectionClosed),
    ],
)
def test_close_error_mapping(code: int, reason: str, expected: type[ConnectionClosed]) -> None:
    error = close_error(code, reason)
    assert type(error) is expected
    assert (error.code, error.reason) == (code, reason)
    assert str(code) in str(error)


def test_request_head_parser_reads_what_websockets_client_writes() -> None:
    protocol = ClientProtocol(parse_uri("ws://example.test:8080/v1/realtime?model=m&x=%20y"))
    request = protocol.connect()
    request.headers["Authorization"] = "Bearer sk"
    request.headers["X-Dup"] = "1"
    request.headers["X-Dup"] = "2"
    method, target, headers = _parse_request_head(request.serialize())
    assert (method, target) == ("GET", "/v1/realtime?model=m&x=%20y")
    assert list(headers.raw_items()) == list(request.headers.raw_items())
    assert headers.get_all("x-dup") == ["1", "2"]


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /\r\n\r\n", 400),
        (b"GET / HTTP/2\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n : empty name\r\n\r\n", 400),
        (b"G\xffT / HTTP/1.1\r\n\r\n", 400),
    ],
)
def test_request_head_parser_refuses_malformed_heads(head: bytes, status: int) -> None:
    with pytest.raises(_RefuseRequest) as refused:
        _parse_request_head(head)
    assert refused.value.response.status == status


def new_queue(max_size: int) -> _MessageQueue:
    """A queue as a WebSocket makes it: futures on asyncio, anyio events on trio."""
    return _MessageQueue(max_size, _running_asyncio_loop())


async def test_message_queue_is_bounded_and_hands_over_in_order() -> None:
    queue = new_queue(2)
    assert queue.offer(RawMessage(b"1", True))
    assert queue.offer(RawMessage(b"2", False))
    assert not queue.offer(RawMessage(b"3", True))  # full: the reader must wait
    put_done = anyio.Event()

    async def put_third() -> None:
        await queue.put(RawMessage(b"3", True))
        put_done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(put_third)
        await anyio.wait_all_tasks_blocked()
        assert not put_done.is_set() and len(queue) == 2
        assert await queue.get() == RawMessage(b"1", True)
        await put_done.wait()
    assert [await queue.get(), await queue.get()] == [
        RawMessage(b"2", False),
        RawMessage(b"3", True),
    ]
    queue.end()
    assert await queue.get() is None


async def test_message_queue_end_delivers_what_is_queued_and_wakes_waiters() -> None:
    queue = new_queue(4)
    results: list[RawMessage | None] = []

    async def consumer() -> None:
        results.append(await queue.get())

    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer)
        tg.start_soon(consumer)
        await anyio.wait_all_tasks_blocked()
        queue.offer(RawMessage(b"last", True))
        queue.end()
    assert sorted(results, key=repr) == sorted([RawMessage(b"last", True), None], key=repr)


async def test_message_queue_discard_drops_messages_and_frees_a_blocked_reader() -> None:
    queue = new_queue(1)
    queue.offer(RawMessage(b"a", True))
    async with anyio.create_task_group() as tg:
        tg.start_soon(queue.put, RawMessage(b"b", True))
        await anyio.wait_all_tasks_blocked()
        queue.discard()
    assert len(queue) == 0
    assert queue.offer(RawMessage(b"c", True))  # accepted and dropped
    assert await queue.get() is None


async def test_a_cancelled_consumer_leaves_the_queue_to_the_others() -> None:
    queue = new_queue(4)
    results: list[RawMessage | None] = []

    async def consumer() -> None:
        results.append(await queue.get())

    async with anyio.create_task_group() as tg:
        for _ in range(20):  # consumers that give up leave nothing behind
            with anyio.move_on_after(0.001):
                await queue.get()
        assert not queue._getters
        tg.start_soon(consumer)
        async with anyio.create_task_group() as doomed:
            doomed.start_soon(consumer)
            await anyio.wait_all_tasks_blocked()
            doomed.cancel_scope.cancel()
        queue.offer(RawMessage(b"for the survivor", True))
    assert results == [RawMessage(b"for the survivor", True)]
