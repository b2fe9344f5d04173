"""Whole messages as received, and the bounded queue that hands them from the reader to the
consumers."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

import anyio


class RawMessage(NamedTuple):
    """A message as received, without decoding: ``data`` is the payload (UTF-8 for text) and
    ``is_text`` tells a text frame (True) from a binary frame (False)."""

    data: bytes
    is_text: bool


class MessageQueue:
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
