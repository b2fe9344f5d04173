"""A hostile network between the simulator and a RealtimeClient.

``HostileNetwork(sim.url)`` is a ``connect=`` factory for ``RealtimeClient``: each connection is
a real WebSocket to the simulator wrapped in a :class:`HostileLink`, through which a test (or
the chaos soak) injects frames the server never sent, cuts the connection as a dropped TCP
link would (1006), or ends it with a close code, at any moment."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from realtalk import transport
from realtalk.connection import realtime_request
from realtalk.errors import ConnectionClosed


class HostileLink:
    """One connection: the simulator's frames, with injected ones in between."""

    def __init__(self, inner: Any, send: MemoryObjectSendStream[tuple[bytes, bool]],
                 receive: MemoryObjectReceiveStream[tuple[bytes, bool]]) -> None:
        self.inner = inner
        self._send = send
        self._receive = receive
        self._ended: BaseException | None = None
        self.sent: list[bytes] = []
        self.written_before_cut: list[bytes] = []
        self.network: HostileNetwork | None = None
        self._held: anyio.Event | None = None

    # ---- the client's side ----

    async def send_text(self, message: str | bytes) -> None:
        if self._ended is not None:
            raise self._ended
        data = message.encode() if isinstance(message, str) else bytes(message)
        if self._held is not None:
            # A stalled socket: the write never completes, and the cut ends it.
            await self._held.wait()
            raise self._ended or ConnectionClosed(1006, "the hostile link ended")
        self.sent.append(data)
        if self.network is not None and self.network.swallows(data):
            # The write returned, as into a socket buffer, but the link died with it.
            self.written_before_cut.append(data)
            self.cut(1006, "the connection dropped right after a write")
            return
        refusal = self.network.refusal(data) if self.network is not None else None
        if refusal is not None:
            # The server refuses the event instead of acting on it.
            self.inject({"type": "error", "event_id": "event_hostile_refusal",
                         "error": refusal})
            return
        await self.inner.send_text(data)

    async def receive_raw(self) -> tuple[bytes, bool]:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise self._ended or ConnectionClosed(1006, "the hostile link ended") from None

    # ---- the test's side ----

    def inject(self, frame: bytes | str | dict[str, Any], *, is_text: bool = True) -> None:
        """Deliver ``frame`` to the client as if the server had sent it."""
        if isinstance(frame, dict):
            frame = json.dumps(frame)
        data = frame.encode() if isinstance(frame, str) else bytes(frame)
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError,
                                 anyio.WouldBlock):
            self._send.send_nowait((data, is_text))

    def cut(self, code: int = 1006, reason: str = "cut by the hostile network") -> None:
        """End the connection now: 1006 as a dropped TCP link, or any close code. Frames the
        client writes from here on are lost (as on a dead socket, the write raises)."""
        if self._ended is None:
            self._ended = ConnectionClosed(code, reason)
        if self._held is not None:
            self._held.set()
        self._send.close()
        with contextlib.suppress(Exception):
            self.inner.abort(reason)

    def hold(self) -> None:
        """From now on the client's writes stall (a full socket buffer) until ``cut``."""
        self._held = anyio.Event()

    async def pump(self) -> None:
        try:
            while True:
                frame = await self.inner.receive_raw()
                await self._send.send(frame)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        except ConnectionClosed as exc:
            if self._ended is None:
                self._ended = exc
        except Exception as exc:  # the socket failed: the client sees a dropped link
            if self._ended is None:
                self._ended = ConnectionClosed(1006, f"{type(exc).__name__}: {exc}")
        finally:
            self._send.close()


class HostileNetwork:
    """A ``connect=`` factory; ``links`` holds the connections made, the newest last (a long
    run may let go of the old ones); ``connections`` counts them all."""

    def __init__(self, url: str, *, api_key: str = "sk-test", protocol: str = "ga") -> None:
        self.url = url
        self.api_key = api_key
        self.protocol = protocol
        self.links: list[HostileLink] = []
        self.connections = 0
        self._swallow: list[Any] = []
        self._refuse: list[tuple[Any, dict[str, Any]]] = []

    def refuse(self, wanted: Any, error: dict[str, Any]) -> None:
        """The next client event for which ``wanted(event)`` holds is answered with an
        ``error`` event (``error``, naming that event's id) instead of reaching the server."""
        self._refuse.append((wanted, error))

    def refusal(self, data: bytes) -> dict[str, Any] | None:
        if not self._refuse:
            return None
        try:
            event = json.loads(data)
        except ValueError:
            return None
        wanted, error = self._refuse[0]
        if not wanted(event):
            return None
        self._refuse.pop(0)
        return {**error, "event_id": event.get("event_id")}

    def swallow(self, wanted: Any, times: int = 1) -> None:
        """The next ``times`` client events for which ``wanted(event)`` holds are written into
        a connection that drops right then: the server never sees them."""
        self._swallow.extend([wanted] * times)

    def swallows(self, data: bytes) -> bool:
        if not self._swallow:
            return False
        try:
            event = json.loads(data)
        except ValueError:
            return False
        if self._swallow[0](event):
            self._swallow.pop(0)
            return True
        return False

    @property
    def link(self) -> HostileLink:
        return self.links[-1]

    def __call__(self) -> contextlib.AbstractAsyncContextManager[HostileLink]:
        return self._connect()

    @contextlib.asynccontextmanager
    async def _connect(self) -> AsyncIterator[HostileLink]:
        url, headers = realtime_request(self.url, api_key=self.api_key,
                                        protocol=self.protocol)  # type: ignore[arg-type]
        async with transport.open_websocket(url, headers=headers) as inner:
            send, receive = anyio.create_memory_object_stream[tuple[bytes, bool]](1000)
            link = HostileLink(inner, send, receive)
            link.network = self
            self.links.append(link)
            self.connections += 1
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(link.pump)
                    try:
                        yield link
                    finally:
                        tg.cancel_scope.cancel()
                        send.close()
                        receive.close()
            except BaseExceptionGroup as group:
                # The pump never raises: what ended the connection is the client's own error,
                # and it gets it back as it was raised (not wrapped in a group).
                leaf: BaseException = group
                while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
                    leaf = leaf.exceptions[0]
                raise leaf from None
