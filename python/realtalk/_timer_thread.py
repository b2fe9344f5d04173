"""Long sleeps timed by a helper thread instead of the event loop.

A timer pending in the event loop turns every wait for I/O into a wait with a timeout, and on a
virtual machine the kernel then arms and cancels a timer on every wake-up: measured 5-10 us per
received message on the project's VM (a bare asyncio protocol, 20 ms deltas 0.5 ms apart), some
5 % of receiving one. A connection's keepalive sleeps for seconds between pings and needs no
precision, so its sleep is timed here: one daemon thread per process keeps the deadlines and
wakes the sleeping task through the loop's thread-safe entry point; the loop itself waits for
I/O without a timeout. Works on asyncio and trio (trio always waits with a timeout of its own,
so there it only keeps the behaviour the same)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import anyio

# (a lock's wait refuses timeouts beyond a platform limit: an infinite sleep waits in steps)
_LONGEST_WAIT = 3600.0

_Entry = list[Any]  # [deadline, sequence number, callback or None once cancelled]


class TimerThread:
    """Calls callbacks at monotonic deadlines from one daemon thread, started on first use (and
    again in a forked child). Callbacks must be quick and must not raise (their exceptions are
    dropped: a loop that ended before its timer fired is not an error)."""

    def __init__(self) -> None:
        self._pid = -1
        self._start_lock = threading.Lock()

    def _ensure_started(self) -> None:
        if self._pid == os.getpid():
            return
        with self._start_lock:
            if self._pid == os.getpid():
                return
            self._changed = threading.Condition(threading.Lock())
            self._heap: list[_Entry] = []
            self._sequence = itertools.count()
            threading.Thread(target=self._run, name="realtalk-timers", daemon=True).start()
            self._pid = os.getpid()

    def call_later(self, delay: float, callback: Callable[[], object]) -> _Entry:
        """Call ``callback`` from the thread ``delay`` seconds from now; returns the handle that
        :meth:`cancel` takes."""
        self._ensure_started()
        entry: _Entry = [time.monotonic() + delay, next(self._sequence), callback]
        with self._changed:
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:
                self._changed.notify()
        return entry

    def cancel(self, entry: _Entry) -> None:
        """The callback will not be called (if it has not been yet). The entry stays in the heap,
        without its callback, until its deadline."""
        entry[2] = None

    def pending(self) -> int:
        """Timers not yet due and not cancelled."""
        if self._pid != os.getpid():
            return 0
        with self._changed:
            return sum(entry[2] is not None for entry in self._heap)

    def _run(self) -> None:
        heap = self._heap
        while True:
            with self._changed:
                while not heap or heap[0][2] is None:
                    if heap:
                        heapq.heappop(heap)  # cancelled
                    else:
                        self._changed.wait()
                delay = heap[0][0] - time.monotonic()
                if delay > 0:
                    self._changed.wait(min(delay, _LONGEST_WAIT))
                    continue
                callback = heapq.heappop(heap)[2]
            try:
                callback()
            except Exception:  # noqa: S110  (the loop is gone; nobody waits any more)
                pass


TIMERS = TimerThread()


def _threadsafe_scheduler() -> Callable[[Callable[[], object]], object]:
    """The running event loop's way to run a callback soon from another thread."""
    try:
        return asyncio.get_running_loop().call_soon_threadsafe
    except RuntimeError:  # trio
        import trio

        return trio.lowlevel.current_trio_token().run_sync_soon


async def sleep_off_loop(seconds: float) -> None:
    """Like ``anyio.sleep(seconds)``, with the deadline kept by :data:`TIMERS` (see the module
    docstring); cancellable like any wait."""
    woken = anyio.Event()
    entry = TIMERS.call_later(seconds, partial(_threadsafe_scheduler(), woken.set))
    try:
        await woken.wait()
    finally:
        TIMERS.cancel(entry)
