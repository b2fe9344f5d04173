"""WebSocket client and server on anyio byte streams, driven by websockets' Sans-I/O protocol.

Runs unchanged on asyncio and trio. The protocol objects of the ``websockets`` library
(``ClientProtocol``, ``ServerProtocol``) do the handshake, the framing, masking,
permessage-deflate and the close handshake; this module does the I/O around them. The one
exception is the hot path: a whole unfragmented data message in one read is cut out of the
bytes here and never goes through websockets' per-frame parser (see
:meth:`WebSocket._frames_of`), and with no extension in use data frames are written here too
(:func:`_data_frame`); websockets still sees every other frame and owns the protocol's state.

- one reader task per connection (in the connection's own task group) feeds received bytes to the
  protocol, answers pings and close frames, and delivers whole messages into a bounded queue
  (``max_queue`` messages). A slow consumer fills the queue, the reader stops reading, TCP flow
  control stops the peer: memory stays flat. On asyncio with a plain TCP stream the reader does
  its work in the event loop's data callback instead (see :func:`_push_receiver`): a message then
  costs one wake-up of the loop fewer, or two fewer with :meth:`WebSocket.consume`;
- every send goes through one lock and awaits the socket write, so a slow peer slows the sender
  down instead of growing a buffer;
- keepalive pings every ``ping_interval`` seconds; a peer that does not answer within
  ``ping_timeout`` seconds is declared dead and the connection ends with :class:`KeepaliveTimeout`
  (a time during which the reader is blocked by a slow consumer does not count against the peer);
- the close handshake is bounded by ``close_timeout``; after it the TCP connection is dropped.

Errors reach the caller as :mod:`realtalk.errors` exceptions, translated in one place
(:func:`map_exceptions` and :func:`close_error`):

==========================================  ===========================================
what happened                               exception
==========================================  ===========================================
close code 3000                             :class:`~realtalk.errors.AuthenticationError`
close code 4000                             :class:`~realtalk.errors.InvalidRequestError`
close 1001 "...maximum duration..."         :class:`~realtalk.errors.SessionExpired`
any other close frame                       :class:`~realtalk.errors.ConnectionClosed`
no close frame (peer vanished)              ``ConnectionClosed(1006)``
keepalive pong missing                      :class:`~realtalk.errors.KeepaliveTimeout`
HTTP status instead of 101                  ``HandshakeError(status, body)``
peer broke the WebSocket protocol           :class:`~realtalk.errors.ProtocolError`
DNS, refused, TLS failure while dialling    :class:`~realtalk.errors.ConnectError`
open deadline passed                        :class:`~realtalk.errors.Timeout`
==========================================  ===========================================
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import logging
import math
import os
import ssl
from collections import deque
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, NoReturn, Self, TypeGuard
from urllib.parse import parse_qsl

import anyio
import anyio.abc
import msgspec
from anyio.streams.tls import TLSStream
from websockets.client import ClientProtocol
from websockets.datastructures import Headers
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI, PayloadTooBig
from websockets.exceptions import ProtocolError as WebSocketsProtocolError
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    enable_client_permessage_deflate,
    enable_server_permessage_deflate,
)
from websockets.frames import OK_CLOSE_CODES, CloseCode, Frame, Opcode, apply_mask
from websockets.http11 import Request, Response
from websockets.protocol import Protocol, Side, State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

try:
    import sniffio as _sniffio
except ImportError:  # anyio then detects asyncio from the running loop, even in callbacks
    _sniffio = None

from realtalk._timer_thread import sleep_off_loop
from realtalk.errors import (
    AuthenticationError,
    ConnectError,
    ConnectionClosed,
    HandshakeError,
    InvalidRequestError,
    KeepaliveTimeout,
    ProtocolError,
    RealtalkError,
    SessionExpired,
    Timeout,
)

__all__ = [
    "DEFAULT_MAX_SIZE",
    "HTTPRequest",
    "HTTPResponse",
    "RawMessage",
    "WebSocket",
    "WebSocketServer",
    "close_error",
    "is_clean_close",
    "map_exceptions",
    "open_websocket",
    "serve",
]

logger = logging.getLogger("realtalk.transport")


class _RedactCredentials(logging.Filter):
    """websockets logs every handshake header at DEBUG ("> %s: %s"): keys and tokens must not
    reach a log, whoever turns DEBUG on."""

    SECRET_HEADERS = frozenset({"authorization", "api-key", "sec-websocket-protocol"})

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (isinstance(args, tuple) and len(args) == 2 and str(record.msg).endswith("%s: %s")
                and str(args[0]).lower() in self.SECRET_HEADERS):
            name, value = args
            if str(name).lower() == "sec-websocket-protocol":  # browser auth rides here
                value = ", ".join(
                    part.split(".", 1)[0] + ".[redacted]" if "." in part else part
                    for part in str(value).split(", "))
            else:
                value = str(value).split(" ", 1)[0] + " [redacted]" if " " in str(value) \
                    else "[redacted]"
            record.args = (name, value)
        return True


logger.addFilter(_RedactCredentials())


def is_clean_close(exc: ConnectionClosed) -> bool:
    """Whether a close ends ``async for`` quietly: 1000, 1001 or 1005, and not one of the
    subclasses that say something went wrong (a 1001 session expiry still raises)."""
    return type(exc) is ConnectionClosed and exc.code in OK_CLOSE_CODES

DEFAULT_MAX_SIZE = 16 * 2**20
"""Largest incoming message accepted (16 MiB): above the API's 15 MiB audio append limit."""
DEFAULT_PING_INTERVAL = 20.0
DEFAULT_PING_TIMEOUT = 20.0
DEFAULT_OPEN_TIMEOUT = 10.0
DEFAULT_CLOSE_TIMEOUT = 10.0
DEFAULT_MAX_QUEUE = 32
MAX_REQUEST_HEAD = 64 * 1024
_RECEIVE_SIZE = 65536
_SESSION_EXPIRED_MARKER = "maximum duration"
_SENDABLE_CLOSE_CODES = frozenset((1000, 1001, 1002, 1003, *range(1007, 1015)))
_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONT = Opcode.CONT
_PONG = Opcode.PONG
_OPEN = State.OPEN

Compression = Literal["deflate"] | None


# ---- exception mapping (the one place where foreign errors become realtalk errors) ----


def close_error(code: int, reason: str) -> ConnectionClosed:
    """The exception that describes a connection closed with ``code`` and ``reason``."""
    if code == 3000:
        return AuthenticationError(code, reason)
    if code == 4000:
        return InvalidRequestError(code, reason)
    if code == 1001 and _SESSION_EXPIRED_MARKER in reason.lower():
        return SessionExpired(code, reason)
    return ConnectionClosed(code, reason)


def _translate(exc: BaseException, during: str) -> RealtalkError | None:
    if isinstance(exc, RealtalkError):
        return None
    if isinstance(exc, TimeoutError):
        return Timeout(f"{during} timed out")
    if isinstance(exc, InvalidStatus):
        response = exc.response
        return HandshakeError(response.status_code, bytes(response.body).decode(errors="replace"))
    if isinstance(exc, InvalidHandshake):
        cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
        return ProtocolError(f"invalid handshake answer during {during}: {exc}{cause}")
    if isinstance(exc, InvalidURI):
        return ConnectError(f"invalid WebSocket URL: {exc}")
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return ConnectError(f"TLS failed during {during}: {exc}")
    if isinstance(exc, anyio.EndOfStream | anyio.BrokenResourceError | anyio.ClosedResourceError):
        return ConnectionClosed(1006, "", message=f"connection lost during {during}")
    if isinstance(exc, OSError):
        return ConnectError(f"{during} failed: {exc.strerror or exc}")
    if isinstance(exc, EOFError):
        return ConnectionClosed(1006, "", message=f"connection lost during {during}")
    return None


@contextmanager
def map_exceptions(during: str) -> Iterator[None]:
    """Re-raise anyio, ssl, OS and websockets errors as realtalk errors, chained to the original.

    ``during`` names the operation for the message (``"opening handshake"`` ...)."""
    try:
        yield
    except Exception as exc:
        mapped = _translate(exc, during)
        if mapped is None:
            raise
        raise mapped from exc


# ---- HTTP request and response as the server's hooks see them ----


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


def _split_target(target: str) -> tuple[str, dict[str, str]]:
    path, _, query = target.partition("?")
    return path, dict(parse_qsl(query, keep_blank_values=True))


# ---- the connection ----


class RawMessage(NamedTuple):
    """A message as received, without decoding: ``data`` is the payload (UTF-8 for text) and
    ``is_text`` tells a text frame (True) from a binary frame (False)."""

    data: bytes
    is_text: bool


class _MessageQueue:
    """The bounded hand-off from the reader task to the consumers.

    Unlike a memory object stream it wakes a waiting consumer without an extra trip through the
    event loop, which matters when messages trickle in one per TCP segment. ``put`` waits while
    ``max_size`` messages are queued; ``get`` returns a queued message without yielding.

    Given the running asyncio ``loop``, a waiting consumer awaits a bare future of its own (an
    anyio.Event wraps an asyncio.Event that wraps futures: three layers to resume per message);
    elsewhere it waits on an anyio.Event."""

    __slots__ = (
        "_getters",
        "_items",
        "_loop",
        "_max_size",
        "_not_empty",
        "_not_full",
        "discarding",
        "ended",
        "on_room",
    )

    def __init__(self, max_size: int, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._items: deque[RawMessage] = deque()
        self._max_size = max(1, max_size)
        self._loop = loop
        self._getters: list[asyncio.Future[None]] = []
        self._not_empty: anyio.Event | None = None
        self._not_full: anyio.Event | None = None
        self.on_room: Callable[[], None] | None = None
        """Called once when a consumer takes a message from a full queue (then cleared)."""
        self.ended = False
        """No message will be added any more (the reader finished)."""
        self.discarding = False
        """Closed locally: queued and future messages are dropped."""

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, message: RawMessage) -> None:
        while len(self._items) >= self._max_size and not self.discarding:
            self._not_full = space = anyio.Event()
            await space.wait()
        self.offer(message)

    def offer(self, message: RawMessage) -> bool:
        """Queue ``message`` if there is room (or drop it when discarding); False if full."""
        if len(self._items) >= self._max_size and not self.discarding:
            return False
        self.push(message)
        return True

    def push(self, message: RawMessage) -> bool:
        """Queue ``message`` even beyond ``max_size`` (or drop it when discarding); True if
        the queue is now full, so the caller should stop reading until ``on_room`` is called."""
        items = self._items
        if self.discarding:
            return False
        items.append(message)
        self._wake_getters()
        return len(items) >= self._max_size

    def take(self) -> RawMessage:
        """The oldest queued message (the queue must not be empty)."""
        message = self._items.popleft()
        self._made_room()
        return message

    def _made_room(self) -> None:
        waiter = self._not_full
        if waiter is not None:
            self._not_full = None
            waiter.set()
        on_room = self.on_room
        if on_room is not None and len(self._items) < self._max_size:
            self.on_room = None
            on_room()

    async def get(self) -> RawMessage | None:
        """The next message, or None once the queue has ended (or discards) and is empty."""
        items = self._items
        while not items:
            if self.ended or self.discarding:
                return None
            loop = self._loop
            if loop is None:
                waiter = self._not_empty
                if waiter is None:
                    self._not_empty = waiter = anyio.Event()
                await waiter.wait()
                continue
            getter = loop.create_future()
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                if getter in self._getters:
                    self._getters.remove(getter)
                raise
        return self.take()

    def _wake_getters(self) -> None:
        waiter = self._not_empty
        if waiter is not None:
            self._not_empty = None
            waiter.set()
        getters = self._getters
        if getters:
            for getter in getters:
                if not getter.done():
                    getter.set_result(None)
            getters.clear()

    def end(self) -> None:
        self.ended = True
        self._wake_all()

    def discard(self) -> None:
        self.discarding = True
        self._items.clear()
        self._wake_all()

    def _wake_all(self) -> None:
        self._wake_getters()
        if self._not_full is not None:
            self._not_full.set()
            self._not_full = None
        on_room, self.on_room = self.on_room, None
        if on_room is not None:
            on_room()


_MAX_HEADER = 14


def _data_frame(first_byte: int, data: bytes, mask: bool) -> bytes:
    """A whole unfragmented frame with no extension in use, as websockets' Frame.serialize
    writes it, without building a Frame (``first_byte``: 0x81 text, 0x82 binary)."""
    length = len(data)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        head = bytes((first_byte, mask_bit | length))
    elif length < 65536:
        head = bytes((first_byte, mask_bit | 126)) + length.to_bytes(2)
    else:
        head = bytes((first_byte, mask_bit | 127)) + length.to_bytes(8)
    if mask:
        key = os.urandom(4)
        return head + key + apply_mask(data, key)
    return head + data


def _running_asyncio_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # trio
        return None


def _frame_extent(data: bytes, pos: int) -> tuple[int, int, bool] | None:
    """(header size, payload length, masked) of the frame starting at ``data[pos]``, or None
    when its header is not all there."""
    available = len(data) - pos
    if available < 2:
        return None
    second = data[pos + 1]
    length = second & 0x7F
    head = 2
    if length == 126:
        head = 4
        length = int.from_bytes(data[pos + 2 : pos + 4])
    elif length == 127:
        head = 10
        length = int.from_bytes(data[pos + 2 : pos + 10])
    masked = second >= 0x80
    if masked:
        head += 4
    if available < head:
        return None
    return head, length, masked


class WebSocket:
    """One open WebSocket connection, client or server side. Obtain one from
    :func:`open_websocket` or as the argument of a :func:`serve` handler; never construct it.

    Sending: :meth:`send` (``str`` -> text frame, ``bytes`` -> binary frame), :meth:`send_text`
    (also takes already-encoded UTF-8 ``bytes``: no decode/encode round trip),
    :meth:`send_binary`, :meth:`send_texts` (a burst in one write). Each send returns once the
    frame is handed to the socket, so a slow peer applies backpressure (nothing queues up in
    memory). Sends may be called from several tasks; frames never interleave. Cancelling a send
    that is half way through writing a frame drops the connection (the stream could not carry
    another frame).

    Receiving: :meth:`receive` (text -> ``str``, binary -> ``bytes``), :meth:`receive_raw` (a
    :class:`RawMessage`, text left as UTF-8 ``bytes``, for the hot path), ``async for message in
    ws`` (like :meth:`receive`; ends quietly after a normal close (1000, 1001 other than session
    expiry, 1005) and raises otherwise). Once the connection is closed, every receive and send
    raises the closing exception (see the module's table).

    Closing: :meth:`close`; :attr:`close_code` and :attr:`close_reason` once closed. Also
    :meth:`ping` (round-trip time), :attr:`subprotocol`, :attr:`request` (server side: the
    upgrade request), :attr:`response` (client side: the 101 response and its headers).
    """

    def __init__(
        self,
        protocol: Protocol,
        stream: anyio.abc.ByteStream,
        *,
        request: HTTPRequest | None,
        response: HTTPResponse | None,
        ping_interval: float | None,
        ping_timeout: float | None,
        close_timeout: float,
        max_queue: int,
    ) -> None:
        self._protocol = protocol
        self._stream = stream
        self.request = request
        """Server side: the upgrade request (path, query, headers). None on the client."""
        self.response = response
        """Client side: the server's handshake response (status 101 and its headers)."""
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._close_timeout = close_timeout
        self._send_lock = anyio.Lock(fast_acquire=True)
        self._write_now = _immediate_writer(stream)
        self._pending_writes: list[bytes] = []
        self._incoming = _MessageQueue(max_queue, _running_asyncio_loop())
        # Shielded: the reader must outlive a cancelled body long enough to finish the close
        # handshake; close() and _abort() end it, with a deadline.
        self._reader_scope = anyio.CancelScope(shield=True)
        self._reader_done = anyio.Event()
        self._reader_blocked_by_consumer = False
        self._receive_count = 0  # reads from the socket, the keepalive's sign of life
        self._pings: dict[bytes, anyio.Event] = {}
        self._fragments: list[bytes] = []
        self._fragments_are_text = False
        # The frame splitter (see _frames_of): a frame header cut by the end of a read, and how
        # many more bytes belong to a frame websockets' parser is in the middle of.
        self._cut_header = b""
        self._parser_owed = 0
        self._parser_fed = False  # websockets' protocol took bytes: it may have writes, a close
        self._masked = protocol.side is Side.SERVER  # a server receives masked frames
        # With no extension (compression) agreed, data frames are written here (_data_frame)
        self._plain_frames = not protocol.extensions
        # With permessage-deflate alone, whole compressed messages are inflated here too
        deflate = [e for e in protocol.extensions if isinstance(e, PerMessageDeflate)]
        self._inflater = deflate[0] if len(deflate) == len(protocol.extensions) == 1 else None
        limits = [n for n in (protocol.max_message_size, protocol.max_fragment_size) if n]
        self._fast_max = min(limits, default=math.inf)
        self._failure: RealtalkError | None = None
        # The asyncio fast path: set while the event loop's data callback does the reading
        self._push: _PushReceiver | None = None
        self._reader_wake = anyio.Event()
        # consume(): the handler the reader calls in place of queueing, and how it ended
        self._sink: Callable[[bytes, bool], object] | None = None
        self._sink_ended: anyio.Event | None = None
        self._sink_error: Exception | None = None

    # -- public properties --

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol agreed in the handshake, if any."""
        return self._protocol.subprotocol

    @property
    def close_code(self) -> int | None:
        """The peer's close code once the connection is closed (1006 if none came), else None."""
        if not self._reader_done.is_set():
            return None
        return self._protocol.close_code

    @property
    def close_reason(self) -> str | None:
        """The peer's close reason once the connection is closed, else None."""
        if not self._reader_done.is_set():
            return None
        return self._protocol.close_reason

    @property
    def closed(self) -> bool:
        return self._reader_done.is_set()

    # -- receiving --

    async def receive_raw(self) -> RawMessage:
        """The next message without decoding text: ``RawMessage(data, is_text)``.

        Text payloads are returned exactly as received; they are not checked to be valid UTF-8
        (the JSON parser that consumes them checks). A message already queued is returned
        without yielding to the event loop."""
        message = await self._incoming.get()
        if message is None:
            raise await self._closing_exception()
        return message

    async def receive(self) -> str | bytes:
        """The next message: ``str`` for a text frame, ``bytes`` for a binary frame. A text frame
        that is not valid UTF-8 fails the connection (close 1007) and raises ProtocolError."""
        data, is_text = await self.receive_raw()
        if not is_text:
            return data
        try:
            return data.decode()
        except UnicodeDecodeError as exc:
            await self._fail(1007, "invalid UTF-8 in a text frame")
            raise ProtocolError(f"text frame is not valid UTF-8: {exc.reason}") from exc

    async def consume(self, handler: Callable[[bytes, bool], object]) -> NoReturn:
        """Call ``handler(data, is_text)`` for every message, in order, until the connection
        ends; then raise the closing exception (as :meth:`receive_raw` would).

        The reader calls ``handler`` as each message arrives: no hand-off to another task and
        no queue, so a message costs one wake-up of the event loop instead of two (on asyncio
        over plain TCP the handler runs in the loop's data callback, outside any task: anyio
        calls such as ``start_soon`` work there, context variables of the caller are not
        seen). The
        handler must not block (it is synchronous; start tasks for slow work); while it runs
        the reader reads nothing more, so backpressure holds. An exception from ``handler`` stops
        the delivery and is raised here (later messages queue up for the receive methods as
        usual); so does cancelling this call. One consumer at a time."""
        if self._sink is not None:
            raise RuntimeError("this WebSocket already has a consumer")
        incoming = self._incoming
        while len(incoming):  # messages queued before this call go first
            handler(*incoming.take())
        ended = anyio.Event()
        if not self._reader_done.is_set():
            self._sink, self._sink_ended, self._sink_error = handler, ended, None
            try:
                await ended.wait()
            finally:
                self._sink = self._sink_ended = None
            if self._sink_error is not None:
                error, self._sink_error = self._sink_error, None
                raise error
        while len(incoming):  # queued while a blocked reader was waiting for room
            handler(*incoming.take())
        raise await self._closing_exception()

    def _deliver_to_sink(
        self, sink: Callable[[bytes, bool], object], message: RawMessage | None
    ) -> None:
        """Hand ``message`` (and anything still queued ahead of it) to the consumer."""
        incoming = self._incoming
        if incoming.discarding:
            return
        try:
            while len(incoming):
                sink(*incoming.take())
            if message is not None:
                sink(*message)
        except Exception as exc:
            self._sink_error = exc
            self._end_sink()

    def _end_sink(self) -> None:
        ended = self._sink_ended
        self._sink = self._sink_ended = None
        if ended is not None:
            ended.set()

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[str | bytes]:
        while True:
            try:
                message = await self.receive()
            except ConnectionClosed as exc:
                if is_clean_close(exc):
                    return
                raise
            yield message

    # -- sending --

    async def send(self, message: str | bytes) -> None:
        """Send ``str`` as a text frame, ``bytes``/``bytearray``/``memoryview`` as binary."""
        if isinstance(message, str):
            await self._send_frame(_TEXT, message.encode())
        elif isinstance(message, bytes | bytearray | memoryview):
            await self._send_frame(_BINARY, message)
        else:
            raise TypeError(f"a WebSocket message is str or bytes, not {type(message).__name__}")

    async def send_text(self, data: str | bytes) -> None:
        """Send a text frame. ``bytes`` must already be UTF-8 (not re-checked): this is the
        path for JSON that a serializer produced as bytes."""
        await self._send_frame(_TEXT, data.encode() if isinstance(data, str) else data)

    async def send_binary(self, data: bytes) -> None:
        """Send a binary frame."""
        await self._send_frame(_BINARY, data)

    async def _send_frame(self, opcode: Opcode, data: bytes) -> None:
        protocol = self._protocol
        async with self._send_lock:
            is_open = protocol.state is State.OPEN
            if is_open:
                if self._plain_frames:
                    first_byte = 0x81 if opcode is _TEXT else 0x82
                    self._pending_writes.append(_data_frame(first_byte, data, not self._masked))
                elif opcode is _TEXT:
                    protocol.send_text(data)
                else:
                    protocol.send_binary(data)
            if await self._drain() and is_open:
                return
        raise await self._closing_exception()

    def try_send_text(self, data: bytes) -> bool:
        """Send a text frame (UTF-8 ``bytes``, not re-checked) at once, without awaiting, if
        that is possible without overtaking or buffering: no other send in progress, nothing
        waiting to be written, and the socket accepting data (under asyncio's write buffer
        limit). Returns False otherwise (nothing was sent; use :meth:`send_text`). Saves the
        caller a task switch when it is not already in a coroutine that may wait."""
        write = self._write_now
        protocol = self._protocol
        if (
            write is None
            or self._send_lock.locked()
            or self._pending_writes
            or protocol.state is not State.OPEN
            or not write(None)
        ):
            return False
        if self._plain_frames:
            write(_data_frame(0x81, data, not self._masked))
            return True
        protocol.send_text(data)
        chunks = protocol.data_to_send()
        write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        return True

    async def send_texts(self, messages: Iterable[str | bytes]) -> None:
        """Send several text frames in one socket write (``bytes`` must already be UTF-8): a
        burst of events costs one system call instead of one per event."""
        protocol = self._protocol
        async with self._send_lock:
            is_open = protocol.state is State.OPEN
            if is_open:
                plain, mask = self._plain_frames, not self._masked
                for message in messages:
                    data = message.encode() if isinstance(message, str) else message
                    if plain:
                        self._pending_writes.append(_data_frame(0x81, data, mask))
                    else:
                        protocol.send_text(data)
            if await self._drain() and is_open:
                return
        raise await self._closing_exception()

    async def ping(self, data: bytes | None = None) -> float:
        """Send a ping and wait for its pong; return the round trip in seconds. Wrap it in
        ``anyio.fail_after`` to bound the wait."""
        payload = os.urandom(4) if data is None else bytes(data)
        waiter = anyio.Event()
        sent_at = anyio.current_time()
        if not await self._send_ping(payload, waiter):
            raise await self._closing_exception()
        await waiter.wait()
        if payload in self._pings:  # woken by the end of the connection, not by a pong
            raise await self._closing_exception()
        return anyio.current_time() - sent_at

    async def _send_ping(self, payload: bytes, waiter: anyio.Event) -> bool:
        async with self._send_lock:
            if self._protocol.state is not State.OPEN:
                await self._drain()  # what the reader left to the lock's holder
                return False
            self._pings[payload] = waiter
            self._protocol.send_ping(payload)
            return await self._drain()

    # -- closing --

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection with ``code`` and ``reason`` and wait (at most ``close_timeout``)
        for the peer's close frame and the end of the TCP connection. Messages not yet received
        are discarded. Idempotent; safe to call while other tasks send or receive.

        ``code`` is 1000-1003, 1007-1014 or an application code 3000-4999; ``reason`` at most
        123 bytes of UTF-8 (a close frame's limit)."""
        if not (code in _SENDABLE_CLOSE_CODES or 3000 <= code <= 4999):
            raise ValueError(f"{code} is not a close code that may be sent")
        if len(reason.encode()) > 123:
            raise ValueError("a close reason is at most 123 bytes of UTF-8")
        with anyio.CancelScope(shield=True):
            await self._close(code, reason)

    async def _close(self, code: int, reason: str) -> None:
        self._incoming.discard()
        deadline = anyio.current_time() + self._close_timeout
        with anyio.CancelScope(deadline=deadline):
            if self._protocol.state is State.OPEN:
                async with self._send_lock:
                    if self._protocol.state is State.OPEN:
                        self._protocol.send_close(code, reason)
                        self._reader_scope.deadline = deadline
                    await self._drain()
            await self._reader_done.wait()
        if not self._reader_done.is_set():
            self._reader_scope.cancel()
            await self._reader_done.wait()

    async def _fail(self, code: int, reason: str) -> None:
        """Fail the connection after a local protocol violation check (bad UTF-8)."""
        self._incoming.discard()
        with anyio.CancelScope(shield=True):
            async with self._send_lock:
                if self._protocol.state is State.OPEN:
                    self._protocol.fail(code, reason)
                    self._reader_scope.deadline = anyio.current_time() + self._close_timeout
                await self._drain()

    def abort(self, why: str = "connection aborted locally") -> None:
        """Drop the TCP connection at once, without a close handshake: the peer sees an
        abnormal closure (1006), and every later receive and send here raises
        ``ConnectionClosed(1006, message=why)``. For giving up on a peer and for fault
        injection; :meth:`close` is the orderly way."""
        self._abort(ConnectionClosed(1006, "", message=why))

    def _abort(self, failure: RealtalkError | None) -> None:
        """Drop the connection at once: the reader stops and closes the stream."""
        if self._failure is None:
            self._failure = failure
        self._reader_scope.cancel()

    async def _closing_exception(self) -> RealtalkError:
        """Wait for the reader to finish (bounded by close_timeout, since a closing connection
        gets a deadline) and return the exception that describes how the connection ended."""
        if not self._reader_done.is_set():
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(self._close_timeout):
                    await self._reader_done.wait()
                if not self._reader_done.is_set():
                    self._reader_scope.cancel()
                    await self._reader_done.wait()
        if self._failure is not None:
            return self._failure
        protocol = self._protocol
        received = protocol.close_rcvd
        if received is not None:
            return close_error(received.code, received.reason)
        parser_exc = protocol.parser_exc
        sent = protocol.close_sent
        if sent is not None and parser_exc is not None and not isinstance(parser_exc, EOFError):
            what = "message too big" if isinstance(parser_exc, PayloadTooBig) else str(parser_exc)
            error: RealtalkError = ProtocolError(
                f"the peer broke the WebSocket protocol ({what}); closed with {sent.code}"
            )
            error.__cause__ = parser_exc
            return error
        return ConnectionClosed(1006, "", message="connection closed abnormally (no close frame)")

    # -- I/O internals --

    async def _drain(self) -> bool:
        """Write everything the protocol has queued; False if the stream broke (the reader is
        then stopped). Call with the send lock held; loops until nothing is left, so writes the
        reader queued meanwhile go out too. Consecutive frames go out in one write.

        Every holder of the lock calls it before letting go, whether it sent a frame or found
        the connection closing: the reader leaves its writes (a close's answer, the end of the
        stream) to the holder, and a close left unwritten would wait for its deadline."""
        protocol = self._protocol
        stream = self._stream
        try:
            while True:
                writes = self._pending_writes
                if writes:
                    self._pending_writes = []
                    writes.extend(protocol.data_to_send())
                else:
                    writes = protocol.data_to_send()
                    if not writes:
                        return True
                if len(writes) == 1 and writes[0]:
                    await stream.send(writes[0])
                    continue
                batch: list[bytes] = []
                for chunk in writes:
                    if chunk:
                        batch.append(chunk)
                        continue
                    if batch:
                        await stream.send(b"".join(batch))
                        batch = []
                    await self._send_eof()
                if batch:
                    await stream.send(b"".join(batch))
        except anyio.get_cancelled_exc_class():
            # A frame may be half written: the stream cannot carry another one. (While closing,
            # this is the close deadline passing: the close's own outcome describes it.)
            failure = None
            if protocol.state is State.OPEN:
                failure = ConnectionClosed(1006, "", message="a send was cancelled mid-frame")
            self._abort(failure)
            raise
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError, ssl.SSLError):
            self._reader_scope.cancel()
            return False

    async def _send_eof(self) -> None:
        if isinstance(self._stream, TLSStream):
            # TLS has no half-close; the closing side drops the connection instead.
            await self._stream.aclose()
            return
        try:
            await self._stream.send_eof()
        except (NotImplementedError, anyio.BrokenResourceError, OSError):
            await self._stream.aclose()

    async def _flush_from_reader(self) -> None:
        self._pending_writes.extend(self._protocol.data_to_send())
        # A task holding the lock drains in a loop and will pick these writes up.
        if self._pending_writes and not self._send_lock.locked():
            async with self._send_lock:
                await self._drain()

    async def _run_reader(self, initial_data: bytes = b"") -> None:
        protocol = self._protocol
        stream = self._stream
        try:
            with self._reader_scope:
                if initial_data:  # bytes that came in the same read as the handshake
                    events = self._frames_of(initial_data)
                    await self._flush_from_reader()
                    await self._process_events(events)
                self._push = _push_receiver(stream, self._receive_pushed, self._end_pushed)
                if self._push is None:
                    await self._read_stream()
                else:
                    await self._serve_pushed(self._push)
        except Exception as exc:  # a bug must not take the task group down with it
            logger.exception("WebSocket reader failed")
            if self._failure is None:
                self._failure = ConnectionClosed(1006, "", message=f"reader failed: {exc!r}")
        finally:
            if self._push is not None:
                self._push.stop()
            with anyio.CancelScope(shield=True):
                protocol.receive_eof()
                protocol.data_to_send()
                await anyio.aclose_forcefully(stream)
            self._incoming.end()
            self._reader_done.set()
            self._end_sink()
            for waiter in self._pings.values():
                waiter.set()

    async def _read_stream(self) -> None:
        protocol = self._protocol
        while True:
            try:
                data = await self._stream.receive(_RECEIVE_SIZE)
            except (
                anyio.EndOfStream,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
                OSError,
                ssl.SSLError,
            ):
                return
            self._receive_count += 1
            events = self._frames_of(data)
            await self._flush_from_reader()
            await self._process_events(events)
            self._arm_close_deadline()

    def _arm_close_deadline(self) -> None:
        """Once the close handshake is under way, the reader waits at most close_timeout."""
        if self._protocol.close_expected() and math.isinf(self._reader_scope.deadline):
            self._reader_scope.deadline = anyio.current_time() + self._close_timeout

    async def _serve_pushed(self, push: _PushReceiver) -> None:
        """The fast path: the data callback does the reading; this task writes what it could
        not (answers to pings and closes go through the send lock) until the stream ends."""
        push.start()
        while True:
            await self._reader_wake.wait()
            self._reader_wake = anyio.Event()
            await self._flush_from_reader()
            if push.ended:
                return

    def _receive_pushed(self, data: bytes) -> None:
        """The fast path's reader: called by the event loop with each chunk received."""
        try:
            self._receive_count += 1
            events = self._frames_of(data)
            parser_fed = self._parser_fed
            if parser_fed:
                self._parser_fed = False
                writes = self._protocol.data_to_send()
                if writes:
                    self._pending_writes.extend(writes)
                    self._reader_wake.set()
            incoming = self._incoming
            for frame in events:
                message = frame if frame.__class__ is RawMessage else self._message_of(frame)
                if message is None:
                    continue
                sink = self._sink
                if sink is not None:
                    self._deliver_to_sink(sink, message)
                elif incoming.push(message) and self._push is not None:
                    # Stop reading until a consumer makes room: TCP flow control does the rest.
                    self._reader_blocked_by_consumer = True
                    incoming.on_room = self._resume_pushed
                    self._push.pause()
            if parser_fed:
                self._arm_close_deadline()
        except Exception as exc:  # a bug must not surface in the event loop's callback
            logger.exception("WebSocket reader failed")
            if self._failure is None:
                self._failure = ConnectionClosed(1006, "", message=f"reader failed: {exc!r}")
            self._end_pushed()

    def _resume_pushed(self) -> None:
        self._reader_blocked_by_consumer = False
        if self._push is not None:
            self._push.resume()
        sink = self._sink
        if sink is not None:  # a consumer arrived while the queue was full
            self._deliver_to_sink(sink, None)

    def _end_pushed(self) -> None:
        """The fast path's end of stream (EOF, connection lost or a failure)."""
        if self._push is not None:
            self._push.ended = True
        self._reader_wake.set()

    def _frames_of(self, data: bytes) -> list[Any]:
        """Feed received bytes to the protocol; return what they complete, in order: each a
        :class:`RawMessage` or one of websockets' frames.

        websockets' parser (a generator per frame, a Frame object, a check per field) costs more
        than the rest of receiving a small event. So the common frame, a whole unfragmented text
        or binary message in one read, is cut out here and becomes a RawMessage at once. Every
        other frame (control frames, fragments, compressed or oversized frames, anything
        malformed, frames cut by the end of a read) goes to websockets, whole or, when cut, with
        the count of its bytes still to come, so that its parser only ever stops between frames
        and judges everything this path does not take. Before the connection is open, and once
        it is closing, everything goes to websockets."""
        protocol = self._protocol
        events: list[Any] = []
        if self._cut_header:  # websockets has begun a frame whose header was cut: learn its size
            header = self._cut_header + data[:_MAX_HEADER]
            extent = _frame_extent(header, 0)
            if extent is None:
                self._cut_header = header
                return self._feed_parser(data)
            self._parser_owed = extent[0] + extent[1] - len(self._cut_header)
            self._cut_header = b""
        owed = self._parser_owed
        if owed:  # the rest of a frame websockets' parser is in the middle of
            if len(data) <= owed:
                self._parser_owed = owed - len(data)
                return self._feed_parser(data)
            events = self._feed_parser(data[:owed])
            self._parser_owed = 0
            data = data[owed:]
        pos = 0
        end = len(data)
        masked = self._masked
        while pos < end:
            if protocol.state is not _OPEN:
                events += self._feed_parser(data[pos:] if pos else data)
                break
            extent = _frame_extent(data, pos)
            if extent is None:
                self._cut_header = data[pos:]
                events += self._feed_parser(self._cut_header)
                break
            head, length, is_masked = extent
            size = head + length
            first = data[pos]
            compressed = first & 0x40  # RSV1: permessage-deflate
            if (
                (first & 0xBF == 0x81 or first & 0xBF == 0x82)  # FIN, text or binary, no RSV2/3
                and (not compressed or self._inflater is not None)
                and size <= end - pos
                and is_masked is masked
                and length <= self._fast_max
                and protocol.current_size is None  # not inside a fragmented message
            ):
                payload = data[pos + head : pos + size]
                if is_masked:
                    payload = apply_mask(payload, data[pos + head - 4 : pos + head])
                is_text = first & 0x0F == 1
                if not compressed:
                    events.append(RawMessage(payload, is_text))
                elif (message := self._inflate(payload, is_text)) is not None:
                    events.append(message)
            elif size <= end - pos:
                events += self._feed_parser(data[pos : pos + size])
            else:
                events += self._feed_parser(data[pos:] if pos else data)
                self._parser_owed = size - (end - pos)
                break
            pos += size
        return events

    def _feed_parser(self, data: bytes) -> list[Any]:
        """Hand bytes to websockets' parser; return the frames (events) it completed."""
        self._parser_fed = True
        self._protocol.receive_data(data)
        return self._protocol.events_received()

    def _inflate(self, payload: bytes, is_text: bool) -> RawMessage | None:
        """A whole compressed message, through websockets' own permessage-deflate decoder (the
        compression context stays its); a failure fails the connection as websockets' parser
        would (1009 for a message inflating past the size limit, 1002 for a corrupt one)."""
        assert self._inflater is not None
        protocol = self._protocol
        frame = Frame(_TEXT if is_text else _BINARY, payload, rsv1=True)
        limit = None if math.isinf(self._fast_max) else int(self._fast_max)
        try:
            frame = self._inflater.decode(frame, max_size=limit)
        except PayloadTooBig as exc:
            self._parser_fed = True  # (the close frame to write)
            exc.set_current_size(None)  # (no fragmented message was in progress)
            protocol.fail(CloseCode.MESSAGE_TOO_BIG, str(exc))
            protocol.parser_exc = exc
            return None
        except WebSocketsProtocolError as exc:
            self._parser_fed = True
            protocol.fail(CloseCode.PROTOCOL_ERROR, str(exc))
            protocol.parser_exc = exc
            return None
        return RawMessage(bytes(frame.data), is_text)

    def _message_of(self, frame: Any) -> RawMessage | None:
        """The message ``frame`` (a RawMessage or a websockets frame) completes, if any;
        answers pongs on the way."""
        if frame.__class__ is RawMessage:
            return frame
        opcode = frame.opcode
        if opcode is _TEXT or opcode is _BINARY:
            if frame.fin:
                return RawMessage(bytes(frame.data), opcode is _TEXT)
            self._fragments = [frame.data]
            self._fragments_are_text = opcode is _TEXT
            return None
        if opcode is _CONT:
            self._fragments.append(frame.data)
            if not frame.fin:
                return None
            message = RawMessage(b"".join(self._fragments), self._fragments_are_text)
            self._fragments = []
            return message
        if opcode is _PONG:
            self._acknowledge_pong(bytes(frame.data))
        return None  # PING and CLOSE: the protocol already queued the answer

    async def _process_events(self, events: Sequence[Any]) -> None:
        incoming = self._incoming
        for frame in events:
            message = self._message_of(frame)
            if message is None:
                continue
            sink = self._sink
            if sink is not None:
                self._deliver_to_sink(sink, message)
            elif not incoming.offer(message):
                self._reader_blocked_by_consumer = True
                try:
                    await incoming.put(message)
                finally:
                    self._reader_blocked_by_consumer = False
                sink = self._sink
                if sink is not None:  # a consumer arrived while the queue was full
                    self._deliver_to_sink(sink, None)

    def _acknowledge_pong(self, payload: bytes) -> None:
        if payload not in self._pings:
            return
        # A pong acknowledges its ping and every ping sent before it.
        while self._pings:
            key = next(iter(self._pings))
            self._pings.pop(key).set()
            if key == payload:
                return

    async def _run_keepalive(self) -> None:
        """Ping every ``ping_interval`` s. The peer is declared dead when ``ping_timeout`` s pass
        with neither its pong nor any other byte from it: behind a large backlog (a slow
        consumer here, or a peer streaming faster than we read) the pong is late but the data
        in front of it proves the peer alive."""
        assert self._ping_interval is not None
        timeout = self._ping_timeout
        while True:
            await sleep_off_loop(self._ping_interval)
            payload = os.urandom(4)
            waiter = anyio.Event()
            progress = self._receive_count
            async with anyio.create_task_group() as tg:
                # Sending may block too (a peer that stopped reading): it is watched alike.
                tg.start_soon(self._send_ping, payload, waiter)
                while True:
                    with anyio.move_on_after(math.inf if timeout is None else timeout):
                        await waiter.wait()
                    if waiter.is_set() or self._protocol.state is not State.OPEN:
                        break
                    if self._receive_count != progress or self._reader_blocked_by_consumer:
                        progress = self._receive_count
                        continue
                    self._declare_unresponsive()
                    tg.cancel_scope.cancel()
                    return
            if self._protocol.state is not State.OPEN:
                return

    def _declare_unresponsive(self) -> None:
        # Replaces a "send cancelled" failure the interrupted ping may have recorded.
        self._failure = KeepaliveTimeout(
            1006, "", message=f"no pong within {self._ping_timeout} s: the peer is unresponsive"
        )
        self._reader_scope.cancel()


def _is_transport(transport: object) -> TypeGuard[asyncio.Transport]:
    """An asyncio transport, or uvloop's (which has their methods without deriving from them)."""
    return isinstance(transport, asyncio.Transport) or all(
        callable(getattr(transport, name, None))
        for name in ("write", "is_closing", "pause_reading", "resume_reading", "set_protocol")
    )


def _immediate_writer(stream: anyio.abc.ByteStream) -> Callable[[bytes | None], bool] | None:
    """A synchronous writer for a plain TCP stream on asyncio: ``write(None)`` tells whether
    the transport accepts data now, ``write(data)`` hands data to it. anyio's own ``send`` does
    the same write and then yields to the event loop once more; there is no public way to skip
    that, so this relies on the attributes of anyio's asyncio socket stream and is None (callers
    fall back to the awaiting path) when they are not there: TLS, trio, another anyio."""
    transport = getattr(stream, "_transport", None)
    protocol: Any = getattr(stream, "_protocol", None)
    if not _is_transport(transport) or not isinstance(
        getattr(protocol, "write_event", None), asyncio.Event
    ):
        return None

    def write(data: bytes | None) -> bool:
        # (pause_writing replaces the event: look it up each time)
        if not protocol.write_event.is_set() or transport.is_closing():
            return False  # above the high-water mark (backpressure) or going away
        if data is not None:
            transport.write(data)
        return True

    return write


class _PushReceiver(asyncio.Protocol):
    """Takes the place of anyio's protocol on an asyncio transport so that received bytes go
    straight to ``on_data`` from the event loop's callback. anyio's ``receive`` wakes the task
    that awaits it through one more turn of the loop, and pauses and resumes the socket around
    every read; a WebSocket reader needs neither. (A plain protocol, not a BufferedProtocol:
    asyncio's buffered read path plus the copy out of the buffer cost more per paced event than
    the fresh ``bytes`` a plain read returns.) Writing stays with anyio's stream (this forwards
    the flow-control and connection-lost calls to anyio's protocol)."""

    def __init__(
        self,
        transport: asyncio.Transport,
        stream_protocol: Any,
        on_data: Callable[[bytes], None],
        on_end: Callable[[], None],
    ) -> None:
        self._transport = transport
        self._stream_protocol = stream_protocol
        self._on_data = on_data
        self._on_end = on_end
        self.ended = False
        self._active = False

    def start(self) -> None:
        stream_protocol = self._stream_protocol
        self._transport.set_protocol(self)
        self._active = True
        pending = stream_protocol.read_queue  # bytes anyio received but nobody read yet
        while pending and self._active:
            self._on_data(pending.popleft())
        stream_protocol.read_event.clear()
        if stream_protocol.is_at_eof or stream_protocol.exception is not None:
            self.eof_received()
        elif self._active and not self.ended and not self._transport.is_closing():
            self._transport.resume_reading()

    def stop(self) -> None:
        """No more callbacks to ``on_data`` (the reader is closing the stream)."""
        self._active = False

    def pause(self) -> None:
        if not self._transport.is_closing():
            self._transport.pause_reading()

    def resume(self) -> None:
        if self._active and not self._transport.is_closing():
            self._transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self._active:
            # A loop callback runs outside any task, where sniffio (which anyio asks) cannot
            # tell the loop is asyncio: say so, once per callback context (the loop reuses it).
            if _sniffio is not None and _sniffio.current_async_library_cvar.get() is None:
                _sniffio.current_async_library_cvar.set("asyncio")
            self._on_data(data)

    def eof_received(self) -> bool:
        self._stream_protocol.is_at_eof = True
        self._on_end()
        return True  # keep the transport: the reader still sends its close frame, then closes

    def connection_lost(self, exc: Exception | None) -> None:
        self._stream_protocol.connection_lost(exc)
        self._on_end()

    def pause_writing(self) -> None:
        self._stream_protocol.pause_writing()

    def resume_writing(self) -> None:
        self._stream_protocol.resume_writing()


def _push_receiver(
    stream: anyio.abc.ByteStream, on_data: Callable[[bytes], None], on_end: Callable[[], None]
) -> _PushReceiver | None:
    """The fast path's receiver for a plain TCP stream on asyncio, or None where it does not
    apply (trio, TLS, another anyio whose stream is built differently): callers then read with
    ``stream.receive`` as usual. Like :func:`_immediate_writer` it relies on the attributes of
    anyio's asyncio socket stream; tests/test_transport.py asserts it is in use on asyncio."""
    transport = getattr(stream, "_transport", None)
    protocol: Any = getattr(stream, "_protocol", None)
    if (
        not _is_transport(transport)
        or not isinstance(getattr(protocol, "read_queue", None), deque)
        or not isinstance(getattr(protocol, "read_event", None), asyncio.Event)
        or not hasattr(protocol, "is_at_eof")
        or not hasattr(transport, "set_protocol")
    ):
        return None
    return _PushReceiver(transport, protocol, on_data, on_end)


@asynccontextmanager
async def _run_connection(
    ws: WebSocket, initial_data: bytes, *, code_on_error: int, code_on_cancel: int
) -> AsyncIterator[WebSocket]:
    """Run the reader (and keepalive) of ``ws`` in its own task group around the caller's body,
    then close with 1000 (``code_on_error`` if the body raised, ``code_on_cancel`` if it was
    cancelled). The body's exception propagates unchanged, not wrapped in an ExceptionGroup."""
    body_exc: BaseException | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(ws._run_reader, initial_data)
        if ws._ping_interval is not None:
            tg.start_soon(ws._run_keepalive)
        try:
            yield ws
        except BaseException as exc:  # noqa: BLE001  # re-raised below, outside the task group
            body_exc = exc
        finally:
            if body_exc is None or isinstance(body_exc, ConnectionClosed):
                code = 1000
            elif isinstance(body_exc, anyio.get_cancelled_exc_class()):
                code = code_on_cancel
            else:
                code = code_on_error
            await ws.close(code)
            tg.cancel_scope.cancel()
    if body_exc is not None:
        try:
            raise body_exc
        finally:
            body_exc = None


# ---- client ----


def _client_ssl_context(ssl_context: ssl.SSLContext | None) -> ssl.SSLContext:
    return ssl_context if ssl_context is not None else ssl.create_default_context()


async def _read_handshake(
    stream: anyio.abc.ByteStream, protocol: ClientProtocol
) -> tuple[list[Any], bytes]:
    """Feed the stream to ``protocol`` until it yields the server's response or fails the
    handshake; return its events and the bytes that followed a 101 response's head. Those are
    kept from ``protocol``: the WebSocket's reader must see every frame from its first byte
    (see ``WebSocket._frames_of``)."""
    received, end, at_eof = await _receive_head(stream)
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
            data = await stream.receive(_RECEIVE_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            data, at_eof = b"", True


@asynccontextmanager
async def open_websocket(
    url: str,
    *,
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    subprotocols: Sequence[str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    max_size: int | None = DEFAULT_MAX_SIZE,
    ping_interval: float | None = DEFAULT_PING_INTERVAL,
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
    open_timeout: float | None = DEFAULT_OPEN_TIMEOUT,
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
    compression: Compression = "deflate",
    max_queue: int = DEFAULT_MAX_QUEUE,
) -> AsyncIterator[WebSocket]:
    """Open a WebSocket client connection to ``url`` (``ws://`` or ``wss://``) for the duration
    of the ``async with`` block, then close it (code 1000).

    - ``headers`` are added to the upgrade request (``Authorization``, ``OpenAI-Beta`` ...).
    - ``subprotocols`` are offered in order; :attr:`WebSocket.subprotocol` is the one chosen.
    - ``ssl_context`` for ``wss://``; default: the system trust store.
    - ``max_size``: largest incoming message in bytes (None: no limit); a larger one fails the
      connection with close 1009.
    - ``ping_interval``/``ping_timeout``: keepalive (None disables either).
    - ``open_timeout`` bounds TCP + TLS + upgrade; ``close_timeout`` the close handshake.
    - ``compression``: ``"deflate"`` offers permessage-deflate, None does not.
    - ``max_queue``: messages buffered for a consumer that does not keep up.

    Raises ConnectError (DNS, refused, TLS), Timeout, HandshakeError (an HTTP status instead of
    101), ProtocolError (an invalid handshake answer).
    """
    with map_exceptions("opening handshake"):
        uri = parse_uri(url)
        with anyio.fail_after(open_timeout):
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
                    if compression == "deflate"
                    else None,
                    max_size=max_size,
                    logger=logger,
                )
                request = protocol.connect()
                items = headers.items() if isinstance(headers, Mapping) else headers or ()
                for name, value in items:
                    if name in request.headers:
                        del request.headers[name]
                    request.headers[name] = value
                protocol.send_request(request)
                for chunk in protocol.data_to_send():
                    await stream.send(chunk)
                events, after_head = await _read_handshake(stream, protocol)
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
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        close_timeout=close_timeout,
        max_queue=max_queue,
    )
    async with _run_connection(
        ws, after_head, code_on_error=1000, code_on_cancel=1000
    ) as connection:
        yield connection


# ---- server ----

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


class _RefuseRequest(Exception):
    def __init__(self, response: HTTPResponse) -> None:
        super().__init__(response.status)
        self.response = response


class _ClientGone(Exception):
    pass


def _refuse(status: int, text: str) -> _RefuseRequest:
    return _RefuseRequest(HTTPResponse.text(text + "\n", status))


async def _receive_head(stream: anyio.abc.ByteStream) -> tuple[bytes, int, bool]:
    """Receive until the blank line that ends an HTTP head, more than ``MAX_REQUEST_HEAD``
    bytes, or the end of the stream: (the bytes received, the index just past the blank line
    or -1, whether the stream ended)."""
    buffer = bytearray()
    while (end := buffer.find(b"\r\n\r\n")) < 0 and len(buffer) <= MAX_REQUEST_HEAD:
        try:
            buffer += await stream.receive(_RECEIVE_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return bytes(buffer), -1, True
    return bytes(buffer), end + 4 if end >= 0 else -1, False


async def _read_request_head(stream: anyio.abc.ByteStream) -> tuple[bytes, bytes]:
    """Read up to the blank line ending the request head; return (head, bytes after it)."""
    received, end, at_eof = await _receive_head(stream)
    if at_eof:
        raise _ClientGone
    if end < 0:
        raise _refuse(431, "Request head too large.")
    return received[:end], received[end:]


def _parse_request_head(head: bytes) -> tuple[str, str, Headers]:
    request_line, *header_lines = head[:-4].split(b"\r\n")
    try:
        method, target, version = request_line.decode("ascii").split(" ")
    except (UnicodeDecodeError, ValueError):
        raise _refuse(400, "Invalid HTTP request line.") from None
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise _refuse(505, "Only HTTP/1.1 is supported.")
    headers = Headers()
    for line in header_lines:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise _refuse(400, "Invalid HTTP header line.")
        try:
            headers[name.decode("ascii")] = value.strip().decode("latin-1")
        except UnicodeDecodeError:
            raise _refuse(400, "Invalid HTTP header name.") from None
    return method, target, headers


async def _read_body(
    stream: anyio.abc.ByteStream, headers: Headers, already: bytes, max_size: int | None
) -> bytes:
    if "Transfer-Encoding" in headers:
        raise _refuse(501, "Chunked request bodies are not supported; send Content-Length.")
    try:
        length = int(headers.get("Content-Length", "0"))
    except ValueError:
        raise _refuse(400, "Invalid Content-Length.") from None
    if length < 0:
        raise _refuse(400, "Invalid Content-Length.")
    if max_size is not None and length > max_size:
        raise _refuse(413, f"Request body over {max_size} bytes.")
    body = bytearray(already[:length])
    while len(body) < length:
        try:
            body += await stream.receive(min(_RECEIVE_SIZE, length - len(body)))
        except (anyio.EndOfStream, anyio.BrokenResourceError) as exc:
            raise _ClientGone from exc
    return bytes(body)


def _is_upgrade(method: str, headers: Headers) -> bool:
    return method == "GET" and any(
        "websocket" in value.lower() for value in headers.get_all("Upgrade")
    )


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


class WebSocketServer:
    """A WebSocket (and plain HTTP) server on ``host``:``port`` for the duration of an
    ``async with`` block::

        async with WebSocketServer(handler) as server:
            url = f"ws://127.0.0.1:{server.port}/v1/realtime"

    Each TCP connection runs in its own task with its own task group; leaving the block stops
    listening and closes every connection (code 1001), so nothing outlives it.

    - ``handler(ws)``: called for each accepted WebSocket; ``ws.request`` holds the upgrade
      request. It may send an error event then ``await ws.close(3000, reason)``.
    - ``http_handler(request) -> HTTPResponse``: answers requests that are not upgrades (any
      method, with a ``Content-Length`` body up to ``max_size``). Without it they get 426.
    - ``process_request(request) -> HTTPResponse | None``: refuse an upgrade with a status
      before accepting it (None accepts).
    - ``select_subprotocol(request, offered) -> str | None``.
    - ``ssl_context``: serve TLS (``wss://``) with this server context.
    - ``max_size``, ``ping_interval``, ``ping_timeout``, ``close_timeout``, ``compression``,
      ``max_queue``: as for :func:`open_websocket`; ``open_timeout`` bounds TLS + request head.
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
        max_size: int | None = DEFAULT_MAX_SIZE,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
        open_timeout: float | None = DEFAULT_OPEN_TIMEOUT,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        compression: Compression = "deflate",
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_request_body: int | None = None,
        max_pending: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        """The listening port (the one the system chose when ``port=0``) once entered."""
        self._handler = handler
        self._http_handler = http_handler
        self._process_request = process_request
        self._select_subprotocol = select_subprotocol
        self._ssl_context = ssl_context
        self._max_size = max_size
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._open_timeout = open_timeout
        self._close_timeout = close_timeout
        self._compression = compression
        self._max_queue = max_queue
        self._max_request_body = max_size if max_request_body is None else max_request_body
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
        except (_ClientGone, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
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
            await stream.send(_refuse(503, "Too many pending connections.").response.serialize())
            return
        with self._counted_as_pending(), anyio.fail_after(self._open_timeout):
            if self._ssl_context is not None:
                stream = await TLSStream.wrap(
                    stream,
                    server_side=True,
                    ssl_context=self._ssl_context,
                    standard_compatible=False,
                )
            try:
                head, rest = await _read_request_head(stream)
                method, target, headers = _parse_request_head(head)
                path, query = _split_target(target)
                upgrade = _is_upgrade(method, headers)
                body = b"" if upgrade else await _read_body(stream, headers, rest,
                                                            self._max_request_body)
            except _RefuseRequest as refusal:
                await stream.send(refusal.response.serialize())
                return
        request = HTTPRequest(method, path, query, headers, body)
        if not upgrade:
            if self._http_handler is None:
                response = HTTPResponse.text(
                    "This server speaks WebSocket: send an upgrade request.\n",
                    426,
                    [("Upgrade", "websocket")],
                )
            else:
                response = await _call_hook(self._http_handler, request)
            await stream.send(response.serialize())
            return
        if self._process_request is not None:
            rejection = await _call_hook(self._process_request, request)
            if rejection is not None:
                await stream.send(rejection.serialize())
                return
        await self._upgrade(stream, request, head, rest)

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
            if self._compression == "deflate"
            else None,
            select_subprotocol=select_subprotocol if select is not None else None,
            max_size=self._max_size,
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
            ping_interval=self._ping_interval,
            ping_timeout=self._ping_timeout,
            close_timeout=self._close_timeout,
            max_queue=self._max_queue,
        )
        async with _run_connection(ws, after_head, code_on_error=1011, code_on_cancel=1001):
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
