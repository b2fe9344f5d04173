"""What the simulator and relay load benchmarks share: their real-time clock and their lean
WebSocket client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, Self

import anyio
import msgspec


async def real_time_ticks(count: int, step: float, lags: list[float]) -> AsyncIterator[int]:
    """Yield 0 .. ``count`` - 1, tick ``i`` not before ``i * step`` seconds from the first;
    append to ``lags`` how late each tick was (0 when on time): a load generator that falls
    behind its own schedule shows it there."""
    start = time.monotonic()
    for tick in range(count):
        due = start + tick * step
        now = time.monotonic()
        if due > now:
            await anyio.sleep(due - now)
        lags.append(max(0.0, now - due))
        yield tick


def masked_text_frame(payload: bytes) -> bytes:
    """A client's text frame, built once and written as many times as needed."""
    from websockets.frames import Frame, Opcode

    return Frame(Opcode.TEXT, payload).serialize(mask=True, extensions=[])


class LoadClient(asyncio.Protocol):
    """A load-generating WebSocket client that costs little per frame, so that the load
    generator, on the same two cores as what it measures, stays on schedule: an asyncio
    protocol (no task per session: received bytes are handled in the event loop's callback),
    websockets' Sans-I/O ClientProtocol for the handshake and for parsing what the server sends,
    and frames pre-built (``masked_text_frame``) and written straight to the transport.
    Subclasses handle the events (``on_event``); ``failure`` says what went wrong, if anything."""

    def __init__(self, url: str, token: str) -> None:
        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri

        self.protocol = ClientProtocol(parse_uri(url), max_size=None)
        request = self.protocol.connect()
        request.headers["Authorization"] = f"Bearer {token}"
        self.protocol.send_request(request)
        self.decoder = msgspec.json.Decoder()
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.failure: str | None = None
        self.closing = False

    @classmethod
    async def connect(cls, url: str, *args: Any) -> Self:
        """A connected client: ``cls(url, *args)`` once its handshake has succeeded."""
        from websockets.uri import parse_uri

        uri = parse_uri(url)
        loop = asyncio.get_running_loop()
        _, client = await loop.create_connection(lambda: cls(url, *args), uri.host, uri.port)
        await client.opened
        return client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._write_pending()

    def _write_pending(self) -> None:  # the upgrade request, pongs to the server's keepalive
        assert self.transport is not None
        for data in self.protocol.data_to_send():
            if data:
                self.transport.write(data)

    def send(self, frame: bytes) -> None:
        if self.failure is None and self.transport is not None:
            self.transport.write(frame)

    def data_received(self, data: bytes) -> None:
        from websockets.frames import Frame, Opcode
        from websockets.protocol import State

        protocol = self.protocol
        protocol.receive_data(data)
        events = protocol.events_received()
        if not self.opened.done():
            if protocol.state is State.CONNECTING:
                return
            if protocol.handshake_exc is not None:
                self.opened.set_exception(protocol.handshake_exc)
                return
            self.opened.set_result(None)
        for frame in events:
            if not isinstance(frame, Frame):  # the handshake response
                continue
            if frame.opcode is Opcode.TEXT:
                self.on_event(self.decoder.decode(frame.data))
            elif frame.opcode is Opcode.CLOSE and not self.closing:
                self.failure = self.failure or "closed by the server"
        self._write_pending()

    def on_event(self, event: dict[str, Any]) -> None:
        raise NotImplementedError

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.failure = self.failure or f"connection lost: {exc!r}"
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("the server closed the connection"))

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()
