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
import msgspec
from websockets.datastructures import Headers

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
        try:
            phrase = http.HTTPStatus(self.status).phrase
        except ValueError:
            phrase = "Status"
        lines = [f"HTTP/1.1 {self.status} {phrase}"]
        skipped = {"content-length", "connection", "transfer-encoding"}
        lines += [f"{key}: {value}" for key, value in self.headers if key.lower() not in skipped]
        if not any(key.lower() == "date" for key, _ in self.headers):
            lines.append(f"Date: {email.utils.formatdate(usegmt=True)}")
        lines += [f"Content-Length: {len(self.body)}", "Connection: close", "", ""]
        return "\r\n".join(lines).encode("latin-1") + self.body


def split_target(target: str) -> tuple[str, dict[str, str]]:
    path, _, query = target.partition("?")
    return path, dict(parse_qsl(query, keep_blank_values=True))


# ---- the connection ----


class RefuseRequest(Exception):
    def __init__(self, response: HTTPResponse) -> None:
        super().__init__(response.status)
        self.response = response


class ClientGone(Exception):
    pass


def refuse(status: int, text: str) -> RefuseRequest:
    return RefuseRequest(HTTPResponse.text(text + "\n", status))


async def receive_head(stream: anyio.abc.ByteStream) -> tuple[bytes, int, bool]:
    """Receive until the blank line that ends an HTTP head, more than ``MAX_REQUEST_HEAD``
    bytes, or the end of the stream: (the bytes received, the index just past the blank line
    or -1, whether the stream ended)."""
    buffer = bytearray()
    while (end := buffer.find(b"\r\n\r\n")) < 0 and len(buffer) <= MAX_REQUEST_HEAD:
        try:
            buffer += await stream.receive(RECEIVE_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return bytes(buffer), -1, True
    return bytes(buffer), end + 4 if end >= 0 else -1, False


async def read_request_head(stream: anyio.abc.ByteStream) -> tuple[bytes, bytes]:
    """Read up to the blank line ending the request head; return (head, bytes after it)."""
    received, end, at_eof = await receive_head(stream)
    if at_eof:
        raise ClientGone
    if end < 0:
        raise refuse(431, "Request head too large.")
    return received[:end], received[end:]


def parse_request_head(head: bytes) -> tuple[str, str, Headers]:
    request_line, *header_lines = head[:-4].split(b"\r\n")
    try:
        method, target, version = request_line.decode("ascii").split(" ")
    except (UnicodeDecodeError, ValueError):
        raise refuse(400, "Invalid HTTP request line.") from None
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise refuse(505, "Only HTTP/1.1 is supported.")
    headers = Headers()
    for line in header_lines:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise refuse(400, "Invalid HTTP header line.")
        try:
            headers[name.decode("ascii")] = value.strip().decode("latin-1")
        except UnicodeDecodeError:
            raise refuse(400, "Invalid HTTP header name.") from None
    return method, target, headers


async def read_body(
    stream: anyio.abc.ByteStream, headers: Headers, already: bytes, max_size: int | None
) -> bytes:
    if "Transfer-Encoding" in headers:
        raise refuse(501, "Chunked request bodies are not supported; send Content-Length.")
    try:
        length = int(headers.get("Content-Length", "0"))
    except ValueError:
        raise refuse(400, "Invalid Content-Length.") from None
    if length < 0:
        raise refuse(400, "Invalid Content-Length.")
    if max_size is not None and length > max_size:
        raise refuse(413, f"Request body over {max_size} bytes.")
    body = bytearray(already[:length])
    while len(body) < length:
        try:
            body += await stream.receive(min(RECEIVE_SIZE, length - len(body)))
        except (anyio.EndOfStream, anyio.BrokenResourceError) as exc:
            raise ClientGone from exc
    return bytes(body)


def is_upgrade(method: str, headers: Headers) -> bool:
    return method == "GET" and any(
        "websocket" in value.lower() for value in headers.get_all("Upgrade")
    )
