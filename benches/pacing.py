"""The load benchmarks' clock: ticks at real-time pace, each with how late it came."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import anyio


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
