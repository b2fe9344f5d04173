"""The keepalive's sleep, timed by a helper thread instead of the event loop (realtalk._timer_thread).
Runs on asyncio and trio."""

from __future__ import annotations

import asyncio
import threading

import anyio
import pytest
from realtalk._timer_thread import TIMERS, TimerThread, sleep_off_loop
from realtalk.transport import WebSocket, WebSocketServer, open_websocket

pytestmark = pytest.mark.anyio


async def test_a_sleep_ends_at_its_deadline() -> None:
    started = anyio.current_time()
    await sleep_off_loop(0.05)
    assert 0.05 <= anyio.current_time() - started < 1.0


async def test_sleepers_wake_in_deadline_order_whatever_the_order_they_started_in() -> None:
    woke: list[float] = []

    async def sleeper(seconds: float) -> None:
        await sleep_off_loop(seconds)
        woke.append(seconds)

    async with anyio.create_task_group() as tg:
        for seconds in (0.09, 0.03, 0.06, 0.0):
            tg.start_soon(sleeper, seconds)
    assert woke == [0.0, 0.03, 0.06, 0.09]


async def test_a_cancelled_sleep_returns_at_once_and_leaves_no_callback_behind() -> None:
    before = TIMERS.pending()
    started = anyio.current_time()
    with anyio.move_on_after(0.02):
        await sleep_off_loop(30)
    assert anyio.current_time() - started < 1.0
    assert TIMERS.pending() == before


async def test_an_endless_sleep_waits_until_cancelled() -> None:
    with anyio.move_on_after(0.05) as scope:
        await sleep_off_loop(float("inf"))
    assert scope.cancelled_caught
    await sleep_off_loop(0.01)  # the thread survived the endless deadline


def test_a_timer_firing_after_its_loop_ended_is_harmless() -> None:
    timers = TimerThread()
    loop = asyncio.new_event_loop()
    loop.close()
    timers.call_later(0.0, lambda: loop.call_soon_threadsafe(print))  # raises: loop closed
    fired = threading.Event()
    timers.call_later(0.01, fired.set)
    assert fired.wait(5)  # the thread lives on


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_idle_connection_leaves_the_asyncio_loop_without_timers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The point of the helper thread: with keepalive on, the loop still waits for I/O without
    # a timeout. (_scheduled is CPython's heap of timers; skip where the loop has none.)
    loop = asyncio.get_running_loop()
    if not hasattr(loop, "_scheduled"):
        pytest.skip("not CPython's asyncio loop")

    pings: list[bytes] = []
    send_ping = WebSocket._send_ping

    async def counted(self: WebSocket, payload: bytes, waiter: anyio.Event) -> bool:
        pings.append(payload)
        return await send_ping(self, payload, waiter)

    monkeypatch.setattr(WebSocket, "_send_ping", counted)

    async def idle(ws: WebSocket) -> None:
        async for _ in ws:
            pass

    async with WebSocketServer(idle, ping_interval=None) as server, open_websocket(
        f"ws://127.0.0.1:{server.port}/", ping_interval=0.2, ping_timeout=5
    ) as ws:
        await anyio.sleep(0.05)  # (this sleep is the loop's only timer)
        pending = TIMERS.pending()
        scheduled = [handle for handle in loop._scheduled if not handle.cancelled()]
        assert scheduled == [] and pending >= 1
        # and the keepalive still pings every 0.2 s, and its pongs come back
        await anyio.sleep(0.5)
        assert len(pings) >= 2 and not ws.closed
