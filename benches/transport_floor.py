"""The floor under `bench_transport.py`'s paced stream: what receiving one paced 20 ms audio
delta costs a bare asyncio program that does nothing but feed websockets' Sans-I/O parser from
an ``asyncio.Protocol`` (no anyio, no queue), then parse the event with realtalk's parser.

- ``callback``: the event is handled inside the protocol's ``data_received`` (one loop wake-up).
- ``future``: a task awaits each event through a future the protocol resolves (two wake-ups,
  the shape of any ``await recv()``).

Run beside the benchmark to tell the event loop's own cost from realtalk's:

    .venv/bin/python benches/transport_floor.py
"""

from __future__ import annotations

import asyncio
import collections
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

EVENTS = 2000


class Receiver(asyncio.Protocol):
    def __init__(self) -> None:
        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri

        self.ws = ClientProtocol(parse_uri("ws://127.0.0.1/v1?mode=paced"), max_size=None)
        self.queue: collections.deque[bytes] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None
        self.callback: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.ws.send_request(self.ws.connect())
        for data in self.ws.data_to_send():
            transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for frame in self.ws.events_received():
            if not hasattr(frame, "opcode"):
                continue  # the handshake response
            if self.callback is not None:
                self.callback(frame.data)
                continue
            self.queue.append(frame.data)
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(None)
        for data in self.ws.data_to_send():
            self.transport.write(data)

    async def recv(self) -> bytes:
        while not self.queue:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        return self.queue.popleft()


async def measure(port: int, mode: str) -> float:
    from realtalk.events import parse_server_event

    loop = asyncio.get_running_loop()
    transport, receiver = await loop.create_connection(Receiver, "127.0.0.1", port)
    await receiver.recv()
    cpu = time.process_time()
    if mode == "callback":
        done = loop.create_future()
        count = 0

        def handle(data: bytes) -> None:
            nonlocal count
            parse_server_event(data)
            count += 1
            if count == EVENTS:
                done.set_result(None)

        receiver.callback = handle
        await done
    else:
        for _ in range(EVENTS):
            parse_server_event(await receiver.recv())
    spent = time.process_time() - cpu
    transport.close()
    return spent / EVENTS * 1e6


def main() -> None:
    import bench_transport

    context = multiprocessing.get_context("spawn")
    port_queue = context.Queue()
    server = context.Process(target=bench_transport.run_server, args=(port_queue,), daemon=True)
    server.start()
    port = port_queue.get(timeout=60)
    try:
        for _ in range(2):
            for mode in ("callback", "future"):
                print(f"{mode:8s} {asyncio.run(measure(port, mode)):6.1f} us CPU per paced event")
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
