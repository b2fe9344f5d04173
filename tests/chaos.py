"""The chaos soak of issue 16: a RealtimeClient against the simulator, with faults at random.

Seeded and reproducible: the fault of each turn comes from ``random.Random(f"{seed}:{turn}")``,
so a seed names the same plan on every run and backend (the timing of what the network does
between the planned moments is the event loop's). Each turn sends one user message
(``"turn N"``) and asks for a response; its fault is one of:

- server side (the simulator's fault hooks, through its responder): the TCP connection cut
  mid-response (``Drop``), a close 1001 or 1011 mid-response, a failed response
  (``ServerError``), a pause;
- network side (tests/hostile.py between simulator and client): malformed or invalid frames
  injected, an ``error`` event out of nowhere, the connection cut right after the user's
  message or the ``response.create`` was written (the server never sees them), the message's
  write and its replay both cut (it must be reported lost), cut at a random moment of the
  response, ``response.create`` refused (rate limit);
- tools: a turn whose model calls a tool that answers, raises or hangs past the timeout.

What is checked (``SoakReport.problems``): the client never dies and no turn hangs; every
user message reaches the server's final session exactly once, or was reported lost; the
client's conversation equals the server's item list at every response the server starts
(which covers every reconnect: the first response after one sees the replayed history); the
client's internal queues are empty or bounded at the end.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import anyio
from hostile import HostileNetwork

from realtalk.client import Notification, RealtimeClient, ResponseRefused
from realtalk.simulator import Simulator
from realtalk.simulator.responder import (
    Close,
    Delay,
    Drop,
    FunctionCall,
    ResponseContext,
    ServerError,
    Text,
)

# (fault, weight): about half the turns carry one.
FAULTS: list[tuple[str, int]] = [
    ("none", 40),
    ("garbage", 8),
    ("server_error_event", 3),
    ("pause", 3),
    ("drop_mid_response", 5),
    ("close_1001", 3),
    ("close_1011", 3),
    ("response_failed", 4),
    ("refuse_create", 4),
    ("cut_after_user_write", 5),
    ("message_lost", 2),
    ("cut_after_create_write", 5),
    ("cut_during_response", 5),
    ("tool_ok", 4),
    ("tool_raises", 3),
    ("tool_hangs", 3),
]
TOOL_FAULTS = {"tool_ok": "lookup", "tool_raises": "explode", "tool_hangs": "stall"}
GARBAGE = [
    b'{"type": "response.output_audio.delta", "event_id": "e", "response_id": "r", '
    b'"item_id": "i", "output_index": 0, "content_index": 0, "delta": "!!!"}',
    b'{"type": "response.output_audio.delta", "event_id": "e", "response_id": "r", '
    b'"item_id": "i", "output_index": 0, "content_index": "0", "delta": "AAAA"}',
    b'{"type": "response.output_text.delta", "ev',
    b'{"type": "response.output_text.delta", "delta": "\xff\xfe"}',
    b"[" * 2000 + b"]" * 2000,
    b'{"type": "error", "event_id": "e", "error": "bad"}',
    b"null",
    b'{"type": "session.updated", "event_id": "e", "session": [1]}',
]
TURN_TIMEOUT_S = 15.0


@dataclass
class SoakReport:
    seed: int
    backend: str
    turns: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0
    connections: int = 0
    replayed: int = 0
    reported_lost: list[int] = field(default_factory=list)
    refused_creates: int = 0
    invalid_server_events: int = 0
    tool_errors: int = 0
    responses_checked: int = 0
    rss_kb_after_warmup: int = 0
    rss_kb_at_end: int = 0
    elapsed_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()) if k != "none")
        return (f"seed {self.seed} on {self.backend}: {self.turns} turns in "
                f"{self.elapsed_s:.1f} s; faults: {faults} "
                f"({sum(v for k, v in self.faults.items() if k != 'none')} in all); "
                f"{self.connections} connections ({self.reconnects} reconnects); "
                f"{self.replayed} events replayed; lost and reported: "
                f"{len(self.reported_lost)} {self.reported_lost}; refused creates "
                f"{self.refused_creates}; invalid server events {self.invalid_server_events}; "
                f"tool errors {self.tool_errors}; conversation == server at "
                f"{self.responses_checked} responses; RSS {self.rss_kb_after_warmup} -> "
                f"{self.rss_kb_at_end} kB; problems: {len(self.problems)}")


def plan(seed: int, turn: int) -> str:
    rng = random.Random(f"{seed}:{turn}")
    kinds, weights = zip(*FAULTS, strict=True)
    return rng.choices(kinds, weights)[0]


def _rss_kb() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _server_view(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    view: list[tuple[Any, ...]] = []
    for item in items:
        kind = item.get("type")
        if kind == "message":
            text = "".join(str(part.get("text") or part.get("transcript") or "")
                           for part in item.get("content") or ())
            if text:
                view.append(("message", item.get("role"), text))
        elif kind == "function_call":
            view.append(("function_call", item.get("call_id")))
        elif kind == "function_call_output":
            view.append(("function_call_output", item.get("call_id"), item.get("output")))
    return view


def _client_view(client: RealtimeClient) -> list[tuple[Any, ...]]:
    view: list[tuple[Any, ...]] = []
    for item in client.conversation.items:
        if item.type == "message":
            text = item.text or item.transcript
            if text:
                view.append(("message", item.role, text))
        elif item.type == "function_call" and item.status == "completed":
            view.append(("function_call", item.call_id))
        elif item.type == "function_call_output" and item.output is not None:
            view.append(("function_call_output", item.call_id, item.output))
    return view


class Chaos:
    def __init__(self, seed: int, turns: int, backend: str) -> None:
        self.seed = seed
        self.turns = turns
        self.report = SoakReport(seed, backend)
        # Each response's context as the server had it and as the client had it; compared
        # (and let go) as soon as both are known.
        self._views: dict[str, dict[str, list[tuple[Any, ...]]]] = {"server": {}, "client": {}}
        self.answered: set[int] = set()
        self.audit: list[tuple[Any, ...]] | None = None
        self.losses = 0  # connection.lost notifications so far

    # ---- the model ----

    def _record(self, side: str, response_id: str, view: list[tuple[Any, ...]]) -> None:
        other = self._views["client" if side == "server" else "server"].pop(response_id, None)
        if other is None:
            self._views[side][response_id] = view
            return
        self.report.responses_checked += 1
        mine, server = (view, other) if side == "client" else (other, view)
        if mine != server:
            self.report.problems.append(f"at {response_id} the client's conversation differs "
                                        f"from the server's: {_diff(mine, server)}")

    def responder(self, ctx: ResponseContext) -> Any:
        server_view = _server_view(ctx.items)
        self._record("server", ctx.response_id, server_view)
        users = [i for i in ctx.items if i.get("type") == "message" and i.get("role") == "user"]
        text = str(((users[-1].get("content") or [{}])[0]).get("text") or "") if users else ""
        if text == "audit":
            self.audit = server_view
            return Text("audited")
        match = re.fullmatch(r"turn (\d+)", text)
        if match is None:
            return Text("?")
        turn = int(match.group(1))
        fault = plan(self.seed, turn)
        call_id = f"call_{turn}"
        if fault in TOOL_FAULTS:
            if any(i.get("type") == "function_call_output" and i.get("call_id") == call_id
                   for i in ctx.items):
                return Text(f"ack {turn} tool")
            if not any(i.get("call_id") == call_id for i in ctx.items):
                return [FunctionCall(TOOL_FAULTS[fault], {"turn": turn}, call_id=call_id)]
        first = turn not in self.answered
        self.answered.add(turn)
        if first and fault == "drop_mid_response":
            return [Text(f"partial {turn}"), Drop()]
        if first and fault == "close_1001":
            return [Text(f"partial {turn}"), Close(1001, "going away")]
        if first and fault == "close_1011":
            return [Text(f"partial {turn}"), Close(1011, "internal error")]
        if first and fault == "response_failed":
            return [Text(f"partial {turn}"), ServerError()]
        if first and fault == "pause":
            return [Delay(0.05), Text(f"ack {turn}")]
        return Text(f"ack {turn}")

    # ---- the tools ----

    @staticmethod
    def lookup(arguments: dict[str, Any]) -> Any:
        return {"turn": arguments.get("turn"), "found": True}

    @staticmethod
    def explode(arguments: dict[str, Any]) -> Any:
        raise RuntimeError(f"the tool broke on turn {arguments.get('turn')}")

    @staticmethod
    async def stall(arguments: dict[str, Any]) -> Any:
        await anyio.sleep(60)

    # ---- the run ----

    async def run(self) -> SoakReport:
        report = self.report
        started = time.perf_counter()
        events: list[Notification] = []
        item_turns: dict[str, int] = {}
        async with Simulator(responder=self.responder) as sim:
            network = HostileNetwork(sim.url)
            async with RealtimeClient(connect=network, session={"output_modalities": ["text"]},
                                      backoff_initial_s=0.005, backoff_max_s=0.05,
                                      tool_timeout=0.2, max_reconnect_attempts=20) as client:
                client.on("error", events.append)
                client.on("connection.lost", self._count_loss)
                client.on("realtime.event", self._watch(client))
                for tool in (self.lookup, self.explode, self.stall):
                    await client.add_tool({"name": tool.__name__}, tool)
                async with anyio.create_task_group() as tg:
                    for turn in range(self.turns):
                        fault = plan(self.seed, turn)
                        report.faults[fault] += 1
                        try:
                            with anyio.fail_after(TURN_TIMEOUT_S):
                                await self._turn(client, network, tg, turn, fault, item_turns)
                        except TimeoutError:
                            report.problems.append(f"turn {turn} ({fault}) hung: "
                                                   f"{_state(client, network)}")
                            break
                        report.turns += 1
                        # The harness's own record of dead connections (their sockets,
                        # compressors, buffers) is not the client's memory: let it go.
                        del network.links[:-1]
                        if turn == max(self.turns // 10, 1):
                            report.rss_kb_after_warmup = _rss_kb()
                    tg.cancel_scope.cancel()
                try:
                    with anyio.fail_after(TURN_TIMEOUT_S):
                        await self._until(lambda: client.connected)
                        await client.send_user_message_content("audit")
                        await client.create_response()
                        await client.wait_for_response_done(TURN_TIMEOUT_S)
                except TimeoutError:
                    report.problems.append(
                        f"the audit hung (connected: {client.connected}, response active: "
                        f"{client.response_active})")
                report.rss_kb_at_end = _rss_kb()
                self._check(client, events, item_turns)
                report.connections = network.connections
        report.elapsed_s = time.perf_counter() - started
        return report

    def _count_loss(self, _: Notification) -> None:
        self.losses += 1

    def _watch(self, client: RealtimeClient) -> Any:
        def on_wire(event: Notification) -> None:
            data = event["event"]
            # Called before the client applies the event: its conversation is the context
            # the server had when it started this response.
            if event["source"] == "server" and isinstance(data, dict) \
                    and data.get("type") == "response.created":
                response_id = (data.get("response") or {}).get("id")
                if isinstance(response_id, str):
                    self._record("client", response_id, _client_view(client))

        return on_wire

    @staticmethod
    async def _until(condition: Any) -> None:
        while not condition():
            await anyio.sleep(0.002)

    async def _turn(self, client: RealtimeClient, network: HostileNetwork,
                    tg: anyio.abc.TaskGroup, turn: int, fault: str,
                    item_turns: dict[str, int]) -> None:
        rng = random.Random(f"{self.seed}:{turn}:moments")
        losses_before = self.losses
        text = f"turn {turn}"
        await self._until(lambda: client.connected)
        if fault in ("cut_after_user_write", "message_lost"):
            # message_lost: the write and its one replay both vanish; it must be reported.
            network.swallow(lambda e: e.get("type") == "conversation.item.create"
                            and (e["item"].get("content") or [{}])[0].get("text") == text,
                            times=2 if fault == "message_lost" else 1)
        item_turns[await client.send_user_message_content(text)] = turn
        if fault == "garbage":
            for frame in rng.sample(GARBAGE, rng.randint(1, 3)):
                network.link.inject(frame)
        elif fault == "server_error_event":
            network.link.inject({"type": "error", "event_id": f"event_chaos_{turn}",
                                 "error": {"type": "server_error", "code": None,
                                           "message": "injected", "param": None}})
        elif fault == "cut_after_create_write":
            network.swallow(lambda e: e.get("type") == "response.create")
        elif fault == "refuse_create":
            network.refuse(lambda e: e.get("type") == "response.create",
                           {"type": "invalid_request_error", "code": "rate_limit_exceeded",
                            "message": "Rate limit reached (injected)", "param": None})
        elif fault == "cut_during_response":
            link = network.link

            async def cut_later(delay: float) -> None:
                await anyio.sleep(delay)
                link.cut(rng.choice([1006, 1001, 1011]), "cut by the chaos soak")

            tg.start_soon(cut_later, rng.uniform(0.0, 0.02))
        try:
            await client.create_response()
        except ResponseRefused:
            self.report.refused_creates += 1
        await client.wait_for_response_done()
        if fault in TOOL_FAULTS:
            # The tool runs and its one follow-up response comes on its own, unless a cut
            # (a fault planned a turn earlier may land now) takes it: then it was reported.
            await self._until(lambda: self.losses > losses_before or any(
                i.role == "assistant" and i.text == f"ack {turn} tool"
                for i in client.conversation.items))
            await self._until(lambda: client.connected)
            await client.wait_for_response_done()

    def _check(self, client: RealtimeClient, errors: list[Notification],
               item_turns: dict[str, int]) -> None:
        report = self.report
        problems = report.problems
        report.reconnects = client.metrics.reconnects
        report.replayed = client.metrics.client_events_replayed
        report.invalid_server_events = client.metrics.invalid_server_events
        report.tool_errors = sum(1 for e in errors if e["error"].get("code") == "tool_failed")
        lost_items = {e["error"].get("item_id") for e in errors
                      if e["error"].get("code") == "client_event_lost"}
        report.reported_lost = sorted(item_turns[i] for i in lost_items if i in item_turns)
        if any(e["error"].get("final") for e in errors):
            problems.append("the client gave up on the connection")
        # Exactly once in the server's final session, or reported lost.
        if self.audit is None:
            problems.append("no audit response")
        else:
            counts = Counter(entry[2] for entry in self.audit
                             if entry[0] == "message" and entry[1] == "user")
            for turn in range(report.turns):
                expected = 0 if turn in report.reported_lost else 1
                if counts[f"turn {turn}"] != expected:
                    problems.append(f"turn {turn} ({plan(self.seed, turn)}) is in the server's "
                                    f"session {counts[f'turn {turn}']} times, expected "
                                    f"{expected}")
        users = Counter(i.text for i in client.conversation.items if i.role == "user")
        for turn in range(report.turns):
            expected = 0 if turn in report.reported_lost else 1
            if users[f"turn {turn}"] != expected:
                problems.append(f"turn {turn} is in the client's conversation "
                                f"{users[f'turn {turn}']} times, expected {expected}")
        # Nothing piles up inside the client.
        leftovers = {"unconfirmed events": len(client._ledger),
                     "requeued messages": len(client._supervisor.requeue),
                     "outage audio": len(client._outage),
                     "hand-off frames": len(client._handoff),
                     "item waiters": len(client._item_waiters)}
        for what, size in leftovers.items():
            if size:
                problems.append(f"{size} {what} left at the end")


def _state(client: RealtimeClient, network: HostileNetwork) -> str:
    pending = [(d.type, d.writes) for d in client._ledger.pending()]
    return (f"connected {client.connected}, response {client._responses.state} "
            f"({client._responses.request_event_id}), unconfirmed {pending}, "
            f"connections {len(network.links)}, last link ended: {network.link._ended!r}, "
            f"outbox {client._outbox_send.statistics()}, pending {client._supervisor.pending!r}, "
            f"requeue {client._supervisor.requeue!r}, per link: "
            + " | ".join(",".join(str(json.loads(m).get("type")) for m in link.sent)
                         + f" [{link._ended!r}]" for link in network.links))


def _diff(mine: list[tuple[Any, ...]], server: list[tuple[Any, ...]]) -> str:
    for index, (a, b) in enumerate(zip(mine, server, strict=False)):
        if a != b:
            return f"item {index}: client {a!r}, server {b!r}"
    return (f"lengths {len(mine)} vs {len(server)}; extra: "
            f"{json.dumps([list(x) for x in (mine[len(server):] or server[len(mine):])][:3])}")


async def soak(seed: int, turns: int, backend: str) -> SoakReport:
    return await Chaos(seed, turns, backend).run()
