"""What every scenario script shares. It runs inside a framework's own virtual environment, so
it imports nothing from realtalk: only the standard library (and, in the scripts, the framework).

A script is run as ``python <framework>.py --url ws://127.0.0.1:PORT --scenario NAME
--speech speech.pcm --report report.json``. It drives the framework, records every server event
the framework received (as the raw JSON the server sent), validates each against the
framework's own types, and writes a report that the test (ecosystem/test_ecosystem.py) judges:

    {"scenario": ..., "versions": {...}, "events": [raw server events...],
     "invalid": [{"type": ..., "error": ...}], "outcome": {...scenario facts...}}

A failure inside the framework (an exception, a time-out) ends the script with a traceback and a
non-zero status, and the report is still written with what was seen until then.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

RATE = 24000
FRAME_MS = 20
# What the default responder does with a user message that names a tool: it calls the tool.
TOOL_NAME = "get_weather"
TOOL_PROMPT = "Please call get_weather for Paris."
TEXT_PROMPT = "hello from the ecosystem test"
# A long text turn, so the reply audio is still streaming when the barge-in comes.
LONG_PROMPT = (
    "tell me a long story about a lighthouse keeper who counts the waves every night and "
    "writes each number in a book so that the sea will never be forgotten"
)


class Report:
    def __init__(self, scenario: str, packages: list[str]) -> None:
        self.scenario = scenario
        self.versions = {name: _version(name) for name in packages}
        self.events: list[dict[str, Any]] = []
        self.invalid: list[dict[str, str]] = []
        self.outcome: dict[str, Any] = {}
        self.started = time.monotonic()

    def record(self, raw: dict[str, Any], validate: Callable[[dict[str, Any]], Any]) -> None:
        """Keep a server event and validate it with the framework's types."""
        self.events.append(raw)
        try:
            validate(raw)
        except Exception as exc:  # noqa: BLE001 - any rejection is the finding
            self.invalid.append({"type": str(raw.get("type")), "error": str(exc)[:2000]})

    def log_problem(self, level: int, logger: str, message: str) -> None:
        """A framework's own log line at WARNING or above: errors fail the scenario (the
        framework swallowed a failure), warnings are reported."""
        entry = f"{logger}: {message}"[:2000]
        key = "session_errors" if level >= logging.ERROR else "warnings"
        self.outcome.setdefault(key, []).append(entry)

    def capture_logging(self, *names: str) -> None:
        """Route the named stdlib loggers' WARNING+ records into the report."""
        report = self

        class Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                report.log_problem(record.levelno, record.name, record.getMessage())

        for name in names:
            logging.getLogger(name).addHandler(Handler(logging.WARNING))

    def types(self) -> list[str]:
        return [str(e.get("type")) for e in self.events]

    async def wait_for(self, event_type: str, timeout: float, *, after: int = 0,
                       where: Callable[[dict[str, Any]], bool] = lambda e: True
                       ) -> dict[str, Any]:
        """The first recorded event of that type (at index >= after) that matches ``where``."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events[after:]:
                if event.get("type") == event_type and where(event):
                    return event
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {event_type} within {timeout} s; saw {self.types()}")
            await asyncio.sleep(0.01)

    def write(self, path: Path, failure: str | None) -> None:
        path.write_text(json.dumps({
            "scenario": self.scenario,
            "versions": self.versions,
            "events": self.events,
            "invalid": self.invalid,
            "outcome": self.outcome,
            "seconds": round(time.monotonic() - self.started, 3),
            "failure": failure,
        }))


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def parse_args(scenarios: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="ws://host:port of a realtalk simulator")
    parser.add_argument("--scenario", required=True, choices=scenarios)
    parser.add_argument("--speech", type=Path, help="pcm16 mono 24 kHz: the user's utterance")
    parser.add_argument("--report", type=Path, required=True)
    return parser.parse_args()


def speech_frames(path: Path, frame_ms: int = FRAME_MS) -> list[bytes]:
    """The utterance in frames of ``frame_ms``, followed by a second of silence (for the VAD)."""
    pcm = path.read_bytes()
    frame = RATE * frame_ms // 1000 * 2
    pcm += b"\x00" * (RATE * 2)
    pcm += b"\x00" * (-len(pcm) % frame)
    return [pcm[i : i + frame] for i in range(0, len(pcm), frame)]


async def paced(frames: list[bytes], send: Callable[[bytes], Awaitable[Any]],
                frame_ms: int = FRAME_MS) -> None:
    """Send frames at real-time pace: frame k leaves at start + k * frame_ms (no drift)."""
    start = time.monotonic()
    for index, frame in enumerate(frames):
        await send(frame)
        delay = start + (index + 1) * frame_ms / 1000 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


def run(report: Report, path: Path, scenario: Callable[[], Awaitable[None]],
        timeout: float = 45.0) -> int:
    """Run the scenario under a time limit; write the report whatever happens."""
    failure = None
    try:
        asyncio.run(asyncio.wait_for(scenario(), timeout))
    except BaseException as exc:  # noqa: BLE001 - reported, then the status says it failed
        failure = "".join(traceback.format_exception(exc))
        print(failure)
    report.write(path, failure)
    return 0 if failure is None else 1


class RecordingRelay:
    """A WebSocket relay between a framework and the simulator that records what the server
    sends, for frameworks that expose no raw-event hook (pipecat). Frames pass unchanged both
    ways; the framework is pointed at the relay by its base URL, like at any server.

    Needs the `websockets` package (pipecat depends on it).
    """

    def __init__(self, upstream: str, on_server_event: Callable[[dict[str, Any]], None]) -> None:
        self.upstream = upstream
        self.on_server_event = on_server_event
        self.url = ""
        self._server: Any = None

    async def __aenter__(self) -> RecordingRelay:
        from websockets.asyncio.server import serve

        self._server = await serve(self._relay, "127.0.0.1", 0, max_size=None)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _relay(self, client: Any) -> None:
        from websockets.asyncio.client import connect

        forwarded = {name: value for name, value in client.request.headers.raw_items()
                     if name.lower() in ("authorization", "openai-beta")}
        async with connect(self.upstream + client.request.path, additional_headers=forwarded,
                           max_size=None) as server:

            async def downstream() -> None:
                async for message in server:
                    if isinstance(message, str):
                        self.on_server_event(json.loads(message))
                    await client.send(message)

            async def upstream() -> None:
                async for message in client:
                    await server.send(message)

            tasks = [asyncio.create_task(downstream()), asyncio.create_task(upstream())]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
