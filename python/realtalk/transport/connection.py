"""One open WebSocket connection (:class:`WebSocket`): its reader, keepalive, sending and
closing, and :func:`run_connection`, which runs them for the length of an ``async with``."""

from __future__ import annotations

import math
import os
import ssl
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, NoReturn, Unpack

import anyio
import anyio.abc
from anyio.streams.tls import TLSStream
from websockets.exceptions import PayloadTooBig
from websockets.frames import Opcode
from websockets.protocol import Protocol, Side, State

from realtalk._timer_thread import sleep_off_loop
from realtalk.close_codes import close_error
from realtalk.errors import (
    ConnectionClosed,
    KeepaliveTimeout,
    ProtocolError,
    RealtalkError,
)
from realtalk.transport.asyncio_fast_path import (
    PushReceiver,
    immediate_writer,
    push_receiver,
    running_asyncio_loop,
)
from realtalk.transport.errors import is_clean_close
from realtalk.transport.frames import FrameSplitter, data_frame
from realtalk.transport.http11 import HTTPRequest, HTTPResponse
from realtalk.transport.log import logger
from realtalk.transport.messages import MessageQueue, RawMessage
from realtalk.transport.options import (
    RECEIVE_SIZE,
    OptionOverrides,
    WebSocketOptions,
    resolve_options,
)

_SENDABLE_CLOSE_CODES = frozenset((1000, 1001, 1002, 1003, *range(1007, 1015)))
_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONT = Opcode.CONT
_PONG = Opcode.PONG


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
    ws`` (like :meth:`receive`; ends quietly after a normal close (1000, 1001, 1005, unless
    :mod:`realtalk.close_codes` gives it a meaning of its own) and raises otherwise). Once the
    connection is closed, every receive and send raises the closing exception (see the
    package's table).

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
        options: WebSocketOptions | None = None,
        **overrides: Unpack[OptionOverrides],
    ) -> None:
        options = resolve_options(options, overrides)
        self._protocol = protocol
        self._stream = stream
        self.request = request
        """Server side: the upgrade request (path, query, headers). None on the client."""
        self.response = response
        """Client side: the server's handshake response (status 101 and its headers)."""
        self.options = options
        """The options this connection runs with (``max_size`` and ``compression`` took effect
        in the handshake)."""
        self._ping_interval = options.ping_interval
        self._ping_timeout = options.ping_timeout
        self._close_timeout = options.close_timeout
        self._send_lock = anyio.Lock(fast_acquire=True)
        self._write_now = immediate_writer(stream)
        self._pending_writes: list[bytes] = []
        self._incoming = MessageQueue(options.max_queue, running_asyncio_loop())
        # Shielded: the reader must outlive a cancelled body long enough to finish the close
        # handshake; close() and _abort() end it, with a deadline.
        self._reader_scope = anyio.CancelScope(shield=True)
        self._reader_done = anyio.Event()
        self._reader_blocked_by_consumer = False
        self._receive_count = 0  # reads from the socket, the keepalive's sign of life
        self._pings: dict[bytes, anyio.Event] = {}
        self._fragments: list[bytes] = []
        self._fragments_are_text = False
        # Received bytes -> messages and websockets' frames (a bound method: the hot path)
        self._splitter = FrameSplitter(protocol)
        self._frames_of = self._splitter.split
        self._masked = protocol.side is Side.SERVER  # a server receives masked frames
        # With no extension (compression) agreed, data frames are written here (data_frame)
        self._plain_frames = not protocol.extensions
        self._failure: RealtalkError | None = None
        # The asyncio fast path: set while the event loop's data callback does the reading
        self._push: PushReceiver | None = None
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
                    self._pending_writes.append(data_frame(first_byte, data, not self._masked))
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
            write(data_frame(0x81, data, not self._masked))
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
                        self._pending_writes.append(data_frame(0x81, data, mask))
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
                self._push = push_receiver(stream, self._receive_pushed, self._end_pushed)
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
                data = await self._stream.receive(RECEIVE_SIZE)
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

    async def _serve_pushed(self, push: PushReceiver) -> None:
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
            splitter = self._splitter
            parser_fed = splitter.parser_fed
            if parser_fed:
                splitter.parser_fed = False
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


@asynccontextmanager
async def run_connection(
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
