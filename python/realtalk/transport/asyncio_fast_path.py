"""The only module that touches asyncio's or anyio's internals: the asyncio fast path.

On asyncio with a plain TCP stream, received bytes go to the WebSocket's reader straight from
the event loop's data callback (:class:`PushReceiver`) and small writes skip anyio's extra
yield (:func:`immediate_writer`). Both rely on private attributes of anyio's asyncio socket
stream (``_transport``, ``_protocol`` and its ``read_queue``/``read_event``/``write_event``/
``is_at_eof``) and return None where those are not there (trio, TLS, another anyio): callers
then take the ordinary awaiting path. tests/test_transport.py asserts the fast path is in use
on asyncio, so an anyio release that renames them fails a test instead of slowing down quietly;
pyproject.toml bounds anyio for the same reason."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, TypeGuard

import anyio.abc

try:
    import sniffio as _sniffio
except ImportError:  # anyio then detects asyncio from the running loop, even in callbacks
    _sniffio = None


def running_asyncio_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # trio
        return None


def is_transport(transport: object) -> TypeGuard[asyncio.Transport]:
    """An asyncio transport, or uvloop's (which has their methods without deriving from them)."""
    return isinstance(transport, asyncio.Transport) or all(
        callable(getattr(transport, name, None))
        for name in ("write", "is_closing", "pause_reading", "resume_reading", "set_protocol")
    )


def immediate_writer(stream: anyio.abc.ByteStream) -> Callable[[bytes | None], bool] | None:
    """A synchronous writer for a plain TCP stream on asyncio: ``write(None)`` tells whether
    the transport accepts data now, ``write(data)`` hands data to it. anyio's own ``send`` does
    the same write and then yields to the event loop once more; there is no public way to skip
    that, so this relies on the attributes of anyio's asyncio socket stream and is None (callers
    fall back to the awaiting path) when they are not there: TLS, trio, another anyio."""
    transport = getattr(stream, "_transport", None)
    protocol: Any = getattr(stream, "_protocol", None)
    if not is_transport(transport) or not isinstance(
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


class PushReceiver(asyncio.Protocol):
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


def push_receiver(
    stream: anyio.abc.ByteStream, on_data: Callable[[bytes], None], on_end: Callable[[], None]
) -> PushReceiver | None:
    """The fast path's receiver for a plain TCP stream on asyncio, or None where it does not
    apply (trio, TLS, another anyio whose stream is built differently): callers then read with
    ``stream.receive`` as usual. Like :func:`immediate_writer` it relies on the attributes of
    anyio's asyncio socket stream; tests/test_transport.py asserts it is in use on asyncio."""
    transport = getattr(stream, "_transport", None)
    protocol: Any = getattr(stream, "_protocol", None)
    if (
        not is_transport(transport)
        or not isinstance(getattr(protocol, "read_queue", None), deque)
        or not isinstance(getattr(protocol, "read_event", None), asyncio.Event)
        or not hasattr(protocol, "is_at_eof")
        or not hasattr(protocol, "exception")
        or not hasattr(transport, "set_protocol")
    ):
        return None
    return PushReceiver(transport, protocol, on_data, on_end)
