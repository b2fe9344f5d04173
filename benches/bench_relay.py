"""Load benchmark for the relay (a benchmark, not a test).

N concurrent clients stream 20 ms pcm16 frames (24 kHz) at real-time pace for S seconds through
ONE relay process to a simulator process, over loopback. The audio alternates voiced bursts and
pauses, so the simulator's server VAD detects turns and streams audio replies back through the
relay. Three processes: the simulator, the relay (whose CPU is measured) and the clients (this
process, a lean raw-frame client: websockets' Sans-I/O parser, frames pre-built and masked).

Accounting: every audio byte the clients append must be counted by the simulator, and every
audio byte the simulator sends in deltas must be decoded by the clients; any unexpected `error`
event or lost connection fails the run.

Added latency: once a second each client sends a probe (`conversation.item.retrieve` of an
unknown item, which the simulator answers at once with an `error` echoing the probe's event_id)
and times the round trip. A few direct clients send the same probes straight to the simulator
at the same time, under the same load. The relay's added latency per event is the relayed round
trip minus the direct one (at p50 and p99); it covers two hops (client->upstream and back).

    python benches/bench_relay.py --sessions 200 --seconds 30
    python benches/bench_relay.py --sweep 50,100,200 --seconds 30

Two other measures: ``--round-trips 3000``, one client's probes one after another, straight to
an in-process simulator and through an in-process relay (the relay's own latency per event,
without the load); ``--body-flood 24``, the relay's peak memory while 24 anonymous clients each
POST a 16 MiB body to ``/metrics`` (issue 17, finding 6).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import time
from typing import Any

import anyio
import msgspec
import numpy as np
from load import LoadClient, masked_text_frame, real_time_ticks

RATE = 24000
FRAME_MS = 20
FRAME_BYTES = RATE * 2 * FRAME_MS // 1000
PATTERNS = 8
SLOTS = 4  # clients are spread over 4 sub-ticks of the 20 ms frame period
DIRECT_MIN = 4
KEY = "sk-bench-relay-key"
SECRET = "bench-relay-secret-0123456789"


def speech(seconds: float, seed: int) -> bytes:
    """Voiced bursts (1.2-2.0 s) between pauses (1.5-2.5 s), pcm16 at 24 kHz."""
    rng = np.random.default_rng(seed)
    chunks = [np.zeros(int(RATE * (0.2 + 0.3 * seed / PATTERNS)))]
    total = len(chunks[0])
    while total < seconds * RATE:
        t = np.arange(int(RATE * rng.uniform(1.2, 2.0))) / RATE
        f0 = rng.uniform(110, 190)
        voiced = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) / 2.3
        pause = np.zeros(int(RATE * rng.uniform(1.5, 2.5)))
        chunks += [0.3 * voiced * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2), pause]
        total += len(t) + len(pause)
    return (np.concatenate(chunks)[: int(seconds * RATE)] * 32767).astype("<i2").tobytes()


# ---- the server processes -------------------------------------------------------------------


def serve(kind: str, upstream: str) -> None:
    async def main() -> None:
        from contextlib import AsyncExitStack

        async with AsyncExitStack() as stack:
            if kind == "simulator":
                from realtalk.simulator import Simulator, buzz

                server: Any = await stack.enter_async_context(
                    Simulator(api_keys={KEY}, compression=None, keepalive_s=None,
                              synthesizer=buzz))
            else:
                from realtalk.relay import Relay, RelayPolicy

                server = await stack.enter_async_context(Relay(
                    upstream, api_key=KEY, secret=SECRET, compression=None,
                    upstream_compression=None, policy=RelayPolicy(max_sessions=10_000)))
            print(json.dumps({"port": server.port}), flush=True)
            while True:
                line = await anyio.to_thread.run_sync(sys.stdin.readline)
                if not line or line.strip() == "quit":
                    return
                times = os.times()
                stats = vars(server.stats).copy()
                print(json.dumps({"cpu_s": times.user + times.system, **stats}), flush=True)

    profile = os.environ.get("BENCH_RELAY_PROFILE")
    if profile and kind == "relay":  # where the relay's time goes: BENCH_RELAY_PROFILE=out.prof
        import cProfile

        cProfile.runctx("anyio.run(main)", globals(), locals(), profile)
    else:
        anyio.run(main)


class ServerProcess:
    def __init__(self, kind: str, upstream: str = "") -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", kind, upstream],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.process.stdout is not None
        self.port = json.loads(self.process.stdout.readline())["port"]

    def stats(self) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())  # type: ignore[no-any-return]

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("quit\n")
        self.process.stdin.flush()
        self.process.wait(timeout=60)


# ---- the clients ---------------------------------------------------------------------------


class Session(LoadClient):
    """One relayed (or direct) client: counts the audio it receives and times its probes."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(url, token)
        self.received_audio = 0
        self.errors: list[Any] = []
        self.probes_sent: dict[str, float] = {}
        self.round_trips: list[float] = []
        self.responses_open = 0
        self.last_event_at = 0.0

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        now = time.monotonic()
        self.last_event_at = now
        if kind == "response.output_audio.delta":
            delta = event["delta"]
            self.received_audio += len(delta) * 3 // 4 - delta[-2:].count("=")
        elif kind == "error":
            sent = self.probes_sent.pop(event["error"].get("event_id") or "", None)
            if sent is None:
                self.errors.append(event)
            else:
                self.round_trips.append(now - sent)
        elif kind == "response.created":
            self.responses_open += 1
        elif kind == "response.done":
            self.responses_open -= 1


def probe(session: Session, number: int) -> bytes:
    event_id = f"probe_{number}"
    session.probes_sent[event_id] = time.monotonic()
    return masked_text_frame(json.dumps({"type": "conversation.item.retrieve",
                                         "item_id": "item_none", "event_id": event_id}).encode())


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * q))], 2)


async def run_load(sessions: int, seconds: float) -> dict[str, Any]:
    from realtalk.relay import issue_token

    encoder = msgspec.json.Encoder()
    patterns = []
    for seed in range(PATTERNS):
        pcm = speech(seconds, seed)
        patterns.append([
            masked_text_frame(encoder.encode({
                "type": "input_audio_buffer.append",
                "audio": base64.b64encode(pcm[i:i + FRAME_BYTES]).decode()}))
            for i in range(0, len(pcm), FRAME_BYTES)
        ])
    frame_count = len(patterns[0])
    simulator = ServerProcess("simulator")
    upstream = f"ws://127.0.0.1:{simulator.port}/v1/realtime"
    relay = ServerProcess("relay", upstream)
    relayed: list[Session] = []
    direct: list[Session] = []
    lags: list[float] = []  # how late each tick of the load generator was
    try:
        relay_url = f"ws://127.0.0.1:{relay.port}/v1/realtime?model=gpt-realtime"
        token = issue_token(SECRET, 3600)
        relayed = [await Session.connect(relay_url, token) for _ in range(sessions)]
        direct = [await Session.connect(f"{upstream}?model=gpt-realtime", KEY)
                  for _ in range(max(DIRECT_MIN, sessions // 10))]
        everyone = [*relayed, *direct]
        sim_before, relay_before = simulator.stats(), relay.stats()
        start = time.monotonic()
        probe_number = 0
        async for tick in real_time_ticks(frame_count * SLOTS, FRAME_MS / 1000 / SLOTS, lags):
            frame, slot = divmod(tick, SLOTS)
            for index in range(slot, len(everyone), SLOTS):
                session = everyone[index]
                session.send(patterns[index % PATTERNS][frame])
                # One probe per client per second, spread over the second.
                if (frame + index) % (1000 // FRAME_MS) == 0:
                    probe_number += 1
                    session.send(probe(session, probe_number))
        wall = time.monotonic() - start
        with anyio.move_on_after(60):  # the last turns' replies
            while any(s.responses_open for s in everyone) or (
                time.monotonic() - max(s.last_event_at for s in everyone) < 1.0
            ):
                await anyio.sleep(0.05)
        await anyio.sleep(0.2)
        relay_after = relay.stats()
        for session in (*relayed, *direct):
            session.close()
        await anyio.sleep(1.0)
        sim_after = simulator.stats()
    finally:
        relay.stop()
        simulator.stop()

    relayed_rtt = [t for s in relayed for t in s.round_trips]
    direct_rtt = [t for s in direct for t in s.round_trips]
    sent = len(everyone) * frame_count * FRAME_BYTES
    relay_cpu = relay_after["cpu_s"] - relay_before["cpu_s"]
    report: dict[str, Any] = {
        "sessions": sessions,
        "seconds": seconds,
        "streaming_wall_s": round(wall, 2),
        "direct_sessions": len(direct),
        "failures": sorted({s.failure for s in everyone if s.failure}),
        "unexpected_error_events": sum(len(s.errors) for s in everyone),
        "audio_in_sent": sent,
        "audio_in_counted_by_simulator": (sim_after["input_audio_bytes"]
                                          - sim_before["input_audio_bytes"]),
        "audio_out_sent_by_simulator": (sim_after["output_audio_bytes"]
                                        - sim_before["output_audio_bytes"]),
        "audio_out_received": sum(s.received_audio for s in everyone),
        "responses": sim_after["responses"] - sim_before["responses"],
        "probes_answered": len(relayed_rtt),
        "probes_lost": sum(len(s.probes_sent) for s in everyone),
        "relayed_rtt_p50_ms": percentile(relayed_rtt, 0.5),
        "relayed_rtt_p99_ms": percentile(relayed_rtt, 0.99),
        "direct_rtt_p50_ms": percentile(direct_rtt, 0.5),
        "direct_rtt_p99_ms": percentile(direct_rtt, 0.99),
        "max_send_lag_ms": round(1000 * max(lags, default=0.0), 1),
        "send_lag_p99_ms": percentile(lags, 0.99),
        "ticks_late_over_100ms": sum(lag > 0.1 for lag in lags),
        "ticks": len(lags),
        "relay_cpu_s": round(relay_cpu, 2),
        "relay_cpu_ms_per_session_second": round(1000 * relay_cpu / (sessions * seconds), 3),
        "relay_counters": {name: relay_after[name] - relay_before.get(name, 0)
                           for name in relay_after if name != "cpu_s"},
    }
    for q in ("p50", "p99"):
        relayed_q, direct_q = report[f"relayed_rtt_{q}_ms"], report[f"direct_rtt_{q}_ms"]
        report[f"added_latency_{q}_ms"] = (
            None if relayed_q is None or direct_q is None else round(relayed_q - direct_q, 2))
    report["accounted"] = (
        report["audio_in_sent"] == report["audio_in_counted_by_simulator"]
        and report["audio_out_sent_by_simulator"] == report["audio_out_received"]
        and report["probes_lost"] == 0
    )
    report["sustained"] = (
        report["accounted"] and not report["failures"]
        and report["unexpected_error_events"] == 0 and report["max_send_lag_ms"] < 100
    )
    return report


async def round_trips(count: int) -> dict[str, Any]:
    """p50/p99 of ``count`` sequential probe round trips, direct and through a relay."""
    from realtalk.relay import Relay, RelayPolicy, issue_token
    from realtalk.simulator import Simulator
    from realtalk.transport import open_websocket

    async def measure(url: str, credential: str) -> list[float]:
        times = []
        async with open_websocket(url, headers={"Authorization": f"Bearer {credential}"},
                                  compression=None) as ws:
            await ws.receive_raw()  # session.created
            for number in range(count):
                probe = json.dumps({"type": "conversation.item.retrieve", "item_id": "item_none",
                                    "event_id": f"probe_{number}"})
                started = time.perf_counter()
                await ws.send_text(probe)
                await ws.receive_raw()
                times.append(time.perf_counter() - started)
        return times

    async with Simulator(api_keys={KEY}, keepalive_s=None, compression=None) as simulator, \
            Relay(simulator.url, api_key=KEY, secret=SECRET, compression=None,
                  upstream_compression=None, policy=RelayPolicy(max_messages_per_s=None)) as relay:
        direct = await measure(f"{simulator.url}?model=gpt-realtime", KEY)
        relayed = await measure(relay.url, issue_token(SECRET, 600))
    report: dict[str, Any] = {"round_trips": count}
    for name, times in (("direct", direct), ("relayed", relayed)):
        for q in (0.5, 0.99):
            report[f"{name}_p{round(q * 100)}_us"] = round(
                1e6 * sorted(times)[int(len(times) * q)], 1)
    return report


def body_flood(clients: int) -> dict[str, Any]:
    """Peak RSS of a relay process while ``clients`` anonymous POSTs of 16 MiB arrive at once."""
    import socket
    import threading

    relay = ServerProcess("relay", "ws://127.0.0.1:9/v1/realtime")

    def megabytes(field: str) -> int:
        with open(f"/proc/{relay.process.pid}/status") as status:
            line = next(line for line in status if line.startswith(field))
        return int(line.split()[1]) // 1024

    before = megabytes("VmRSS")
    replies: list[str] = []

    def post() -> None:
        with socket.create_connection(("127.0.0.1", relay.port)) as sock:
            try:
                sock.sendall(b"POST /metrics HTTP/1.1\r\nHost: relay\r\n"
                             b"Content-Length: 16777216\r\n\r\n")
                for _ in range(16):
                    sock.sendall(bytes(1 << 20))
            except OSError:
                pass  # refused before the body: the relay closed its side
            sock.settimeout(30)
            try:
                replies.append(sock.recv(64).split(b"\r\n")[0].decode())
            except OSError as exc:
                replies.append(type(exc).__name__)

    started = time.monotonic()
    threads = [threading.Thread(target=post) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report = {"clients": clients, "rss_before_mb": before, "rss_peak_mb": megabytes("VmHWM"),
              "seconds": round(time.monotonic() - started, 2), "replies": sorted(set(replies))}
    relay.stop()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--sweep", help="comma-separated client counts, run in turn")
    parser.add_argument("--round-trips", type=int, metavar="N",
                        help="instead: N sequential probes direct and through a relay")
    parser.add_argument("--body-flood", type=int, metavar="N",
                        help="instead: the relay's peak RSS under N anonymous 16 MiB POSTs")
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    if args.body_flood:
        print(json.dumps(body_flood(args.body_flood)), flush=True)
        return
    if args.round_trips:
        print(json.dumps(anyio.run(round_trips, args.round_trips)), flush=True)
        return
    counts = [int(n) for n in args.sweep.split(",")] if args.sweep else [args.sessions]
    for count in counts:
        print(json.dumps(anyio.run(run_load, count, args.seconds)), flush=True)


if __name__ == "__main__":
    main()
