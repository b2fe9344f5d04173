"""HTTP/1.1 as the server's hooks see it (:class:`HTTPRequest`, :class:`HTTPResponse`) and the
reading of a request head and body off a stream."""

from __future__ import annotations

import email.utils
import http
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import anyio
import anyio.abc
import h11
import msgspec
from websockets.datastructures import Headers
from websockets.exceptions import InvalidHeader

from realtalk.errors import ProtocolError
from realtalk.transport.options import MAX_REQUEST_HEAD, RECEIVE_SIZE


@dataclass(frozen=True, slots=True)
class HTTPRequest:
    """An HTTP request received by the server: a WebSocket upgrade or a plain request.

    ``path`` excludes the query; ``query`` maps each parameter to its last value; ``headers`` is
    case-insensitive (``headers.get_all(name)`` lists repeated ones); ``body`` is empty for
    upgrades."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Headers
    body: bytes = b""

    def json(self) -> Any:
        """The body decoded as JSON; :class:`ProtocolError` if it is not JSON."""
        try:
            return msgspec.json.decode(self.body)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"request body is not JSON: {exc}") from exc


@dataclass(frozen=True, slots=True)
class HTTPResponse:
    """An HTTP response: what an ``http_handler`` or ``process_request`` hook returns, and the
    handshake response a client sees in :attr:`WebSocket.response`."""

    status: int
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""

    @classmethod
    def json(
        cls, obj: Any, status: int = 200, headers: Sequence[tuple[str, str]] = ()
    ) -> HTTPResponse:
        return cls(
            status, [("Content-Type", "application/json"), *headers], msgspec.json.encode(obj)
        )

    @classmethod
    def text(
        cls, text: str, status: int = 200, headers: Sequence[tuple[str, str]] = ()
    ) -> HTTPResponse:
        body = text.encode()
        return cls(status, [("Content-Type", "text/plain; charset=utf-8"), *headers], body)

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)

    def serialize(self) -> bytes:
        """The whole response as h11 writes it, always with ``Content-Length`` and
        ``Connection: close`` (framing headers a hook gave are replaced) and a ``Date``.

        A header name or value that is not valid HTTP (a line break, say) raises h11's
        ``LocalProtocolError`` instead of reaching the wire."""
        try:
            phrase = http.HTTPStatus(self.status).phrase
        except ValueError:
            phrase = "Status"
        headers = [(key, value) for key, value in self.headers
                   if key.lower() not in _FRAMING_HEADERS]
        if not any(key.lower() == "date" for key, _ in self.headers):
            headers.append(("Date", email.utils.formatdate(usegmt=True)))
        headers += [("Content-Length", str(len(self.body))), ("Connection", "close")]
        writer = _response_writer()
        head = writer.send(h11.Response(status_code=self.status, headers=headers,
                                        reason=phrase.encode("latin-1")))
        body = writer.send(h11.Data(data=self.body)) if self.body else b""
        return (head or b"") + (body or b"") + (writer.send(h11.EndOfMessage()) or b"")


_FRAMING_HEADERS = frozenset({"content-length", "connection", "transfer-encoding"})
# h11 writes a response only as the answer to a request it has read; a response here is
# written on its own (it may answer a request h11 refused), so it answers this stand-in.
_STAND_IN_REQUEST = b"GET / HTTP/1.1\r\nHost: realtalk\r\n\r\n"


def _response_writer() -> h11.Connection:
    writer = h11.Connection(h11.SERVER)
    writer.receive_data(_STAND_IN_REQUEST)
    writer.next_event()
    return writer


def split_target(target: str) -> tuple[str, dict[str, str]]:
    path, _, query = target.partition("?")
    return path, dict(parse_qsl(query, keep_blank_values=True))


# ---- reading a request off a stream (the server side) ----


class RefuseRequest(Exception):
    """The request cannot be served: answer with ``response`` and close."""

    def __init__(self, response: HTTPResponse) -> None:
        super().__init__(response.status)
        self.response = response


class ClientGone(Exception):
    """The client closed the connection before its request was complete."""


def refuse(status: int, text: str) -> RefuseRequest:
    return RefuseRequest(HTTPResponse.text(text + "\n", status))


_SUPPORTED_VERSIONS = (b"HTTP/1.1", b"HTTP/1.0")


def _refusal_of(error: h11.RemoteProtocolError, received: bytes | bytearray) -> RefuseRequest:
    """h11's verdict on a bad request as a response: its status hint (400, 431 for a head over
    the limit), except 505 for a well-formed request line of another protocol version."""
    request_line = received.split(b"\r\n", 1)[0].split(b" ")
    if len(request_line) == 3 and request_line[2] not in _SUPPORTED_VERSIONS:
        return refuse(505, "Only HTTP/1.1 is supported.")
    if error.error_status_hint == 431:
        return refuse(431, "Request head too large.")
    return refuse(error.error_status_hint, f"Invalid HTTP request: {error}.")


@dataclass(slots=True)
class RequestHead:
    """A request line and headers as h11 read them, and the bytes around them."""

    method: str
    target: str
    headers: Headers
    raw: bytes
    """The head as received (websockets reads an upgrade request again from these)."""
    rest: bytes
    """What followed the head in the same reads: body bytes, or an upgrade's first frames."""
    parser: h11.Connection


def _head_of(parser: h11.Connection, event: h11.Request, received: bytes) -> RequestHead:
    if b"HTTP/" + event.http_version not in _SUPPORTED_VERSIONS:
        raise refuse(505, "Only HTTP/1.1 is supported.")
    rest = parser.trailing_data[0]
    headers = Headers()
    try:
        for name, value in event.headers.raw_items():
            headers[name.decode("ascii")] = value.decode("latin-1")
    except InvalidHeader:  # websockets refuses a DEL (0x7F) that h11 lets through
        raise refuse(400, "Invalid HTTP header value.") from None
    return RequestHead(
        event.method.decode("ascii"),
        event.target.decode("ascii"),
        headers,
        received[: len(received) - len(rest)],
        rest,
        parser,
    )


def _next_request_event(parser: h11.Connection, received: bytes | bytearray) -> Any:
    try:
        return parser.next_event()
    except h11.RemoteProtocolError as error:
        raise _refusal_of(error, received) from None


async def read_request_head(stream: anyio.abc.ByteStream) -> RequestHead:
    """Read a request's line and headers with h11 (at most ``MAX_REQUEST_HEAD`` bytes);
    :class:`RefuseRequest` for a bad or oversized head, :class:`ClientGone` if the stream ends
    first."""
    parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
    received = bytearray()
    while (event := _next_request_event(parser, received)) is h11.NEED_DATA:
        try:
            data = await stream.receive(RECEIVE_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            raise ClientGone from None
        received += data
        parser.receive_data(data)
    if not isinstance(event, h11.Request):
        raise refuse(400, "Invalid HTTP request.")
    head = _head_of(parser, event, bytes(received))
    # h11 bounds a head still incomplete; one that completes in the read that crosses the
    # limit is bounded here, so the limit does not depend on how TCP cut the bytes.
    if len(head.raw) > MAX_REQUEST_HEAD:
        raise refuse(431, "Request head too large.")
    return head


def parse_request_head(head: bytes) -> tuple[str, str, Headers]:
    """(method, target, headers) of a complete request head; :class:`RefuseRequest` if h11
    finds it invalid or incomplete."""
    parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
    parser.receive_data(head)
    event = _next_request_event(parser, head)
    if not isinstance(event, h11.Request):
        raise refuse(400, "Incomplete HTTP request head.")
    request = _head_of(parser, event, head)
    return request.method, request.target, request.headers


async def read_body(
    stream: anyio.abc.ByteStream, head: RequestHead, max_size: int | None
) -> bytes:
    """The body of a non-upgrade request, read with h11; a ``Content-Length`` over ``max_size``
    is refused (413) before any of the body is read, a chunked body with 501."""
    headers = head.headers
    if "Transfer-Encoding" in headers:
        raise refuse(501, "Chunked request bodies are not supported; send Content-Length.")
    length = int(headers.get("Content-Length", "0"))  # h11 checked it is a number
    if max_size is not None and length > max_size:
        raise refuse(413, f"Request body over {max_size} bytes.")
    parser = head.parser
    body = bytearray()
    while True:
        event = _next_request_event(parser, b"")
        if isinstance(event, h11.Data):
            body += event.data
        elif event is h11.NEED_DATA:
            try:
                parser.receive_data(await stream.receive(min(RECEIVE_SIZE, length - len(body))))
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                raise ClientGone from None
        else:  # EndOfMessage
            return bytes(body)


def is_upgrade(method: str, headers: Headers) -> bool:
    return method == "GET" and any(
        "websocket" in value.lower() for value in headers.get_all("Upgrade")
    )


# ---- reading a handshake response off a stream (the client side) ----


def write_upgrade_request(path: str, headers: Headers) -> tuple[h11.Connection, bytes]:
    """The client's upgrade request (path and headers as websockets' ``ClientProtocol`` made
    them) written by h11, and the h11 connection that then reads the answer."""
    parser = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_REQUEST_HEAD)
    request = h11.Request(method="GET", target=path, headers=list(headers.raw_items()))
    return parser, parser.send(request) or b""


async def read_response_head(
    stream: anyio.abc.ByteStream, parser: h11.Connection
) -> tuple[bytes, int, bool]:
    """Read the answer to the request ``parser`` wrote, up to the end of its head, with h11:
    (the bytes received, the index just past the head or -1 when h11 finds no valid head or
    the stream ends first, whether the stream ended). websockets then reads the response
    again from these bytes for the WebSocket handshake's rules, and reports a bad one."""
    received = bytearray()
    while True:
        try:
            event = parser.next_event()
        except h11.RemoteProtocolError:
            return bytes(received), -1, False
        if event is not h11.NEED_DATA:
            rest = parser.trailing_data[0]
            return bytes(received), len(received) - len(rest), False
        try:
            data = await stream.receive(RECEIVE_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return bytes(received), -1, True
        received += data
        parser.receive_data(data)
