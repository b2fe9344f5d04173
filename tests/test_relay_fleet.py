"""A fleet of relays sharing a real Redis (``redis-server`` on a free loopback port): the
per-subject limit, the global session cap and single-use tokens hold across relay processes
(one on asyncio, one on trio), and a Redis outage fails closed.

Skipped, with the reason, only where ``redis-server`` or the ``redis`` package is absent; in
CI (``CI=true``) their absence fails the run instead (``.ci/run`` installs them).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import anyio
import anyio.abc
import pytest
from realtalk.relay import RelayPolicy, issue_token
from realtalk.simulator import Simulator
from realtalk.transport import open_websocket

from tests.test_relay import KEY, SECRET, Client, relay_stack, user_text, wait_for

REPO = Path(__file__).resolve().parent.parent


def _missing(what: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing in CI: .ci/run installs it")
    pytest.skip(f"{what} is not installed here (apt-get install redis-server; "
                "pip install redis): the fleet tests need a real Redis")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RedisServer:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        _missing("redis-server")
    try:
        import redis
    except ImportError:
        _missing("the redis package")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--protected-mode", "yes", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisServer(process, port)
    try:
        client = redis.Redis(port=port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.02)
        client.close()
        yield server
    finally:
        server.stop()


# ---- the store on its own, on asyncio and trio -------------------------------------------


async def test_redis_store_counts_sessions_per_subject_and_nonces(
    redis_server: RedisServer,
) -> None:
    from realtalk.relay.store import RedisStore

    store = RedisStore(redis_server.url, lease_s=0.5)
    other = RedisStore(redis_server.url)  # another relay's view of the same Redis
    try:
        assert await store.admit("a:1", "alice", 3, 1) == "admitted"
        assert await other.admit("b:1", "alice", 3, 1) == "subject_full"
        assert await other.admit("b:2", "bob", 3, 1) == "admitted"
        assert await other.admit("b:3", "carol", 3, 1) == "admitted"
        assert await store.admit("a:2", "dave", 3, 1) == "relay_full"
        await other.release("b:3", "carol")
        assert await store.admit("a:2", "dave", 3, 1) == "admitted"
        # A lease that is not renewed runs out (a relay that died without releasing).
        await anyio.sleep(0.3)
        await store.renew([("a:1", "alice")])
        await anyio.sleep(0.35)  # a:2 (dave) is past its 0.5 s lease; a:1 was renewed
        assert await other.admit("b:4", "erin", 3, 1) == "admitted"
        assert await other.admit("b:5", "alice", 4, 1) == "subject_full"
        # Nonces: the first claim wins, in any relay, until the token expires.
        expires = time.time() + 60
        assert await store.claim_nonce("n1", expires) is True
        assert await other.claim_nonce("n1", expires) is False
        assert await other.claim_nonce("n2", expires) is True
    finally:
        await store.aclose()
        await other.aclose()


async def test_a_redis_outage_fails_closed_and_spares_running_sessions(
    redis_server: RedisServer,
) -> None:
    from realtalk.relay.store import RedisStore

    store = RedisStore(redis_server.url, timeout_s=0.5)
    policy = RelayPolicy(max_sessions_per_subject=2, single_use_tokens=True)
    try:
        async with relay_stack(policy, store=store) as stack:
            async with stack.browser(stack.token(subject="alice")) as running:
                assert (await running.recv())["type"] == "session.created"
                redis_server.stop()
                for token in (stack.token(subject="alice"), stack.token(subject="bob")):
                    started = time.monotonic()
                    async with stack.browser(token) as refused:
                        error = (await refused.recv())["error"]
                        closed = await refused.closed()
                    assert (error["code"], error["type"]) == ("relay_unavailable",
                                                              "server_error")
                    assert (closed.code, closed.reason) == (1013, "session store unavailable")
                    assert time.monotonic() - started < 5
                # The running session goes on, and ends cleanly without the store.
                await running.send(user_text("still relayed"))
                assert (await running.recv())["type"] in ("conversation.item.added",
                                                          "conversation.item.created")
            await wait_for(lambda: stack.relay.stats.sessions_open == 0)
            assert stack.relay.stats.store_failures == 2
            assert len(stack.tap.requests) == 1
    finally:
        await store.aclose()


async def test_a_running_relay_renews_its_sessions_leases(redis_server: RedisServer) -> None:
    from realtalk.relay.store import RedisStore

    store = RedisStore(redis_server.url, lease_s=0.6)
    try:
        async with relay_stack(RelayPolicy(max_sessions_per_subject=1), store=store) as stack:
            async with stack.browser(stack.token(subject="alice")) as running:
                assert (await running.recv())["type"] == "session.created"
                await anyio.sleep(1.5)  # two and a half leases: only renewal keeps it counted
                async with stack.browser(stack.token(subject="alice")) as second:
                    assert (await second.recv())["error"]["code"] == "too_many_sessions"
            await wait_for(lambda: stack.relay.stats.sessions_open == 0)
            async with stack.browser(stack.token(subject="alice")) as later:
                assert (await later.recv())["type"] == "session.created"
    finally:
        await store.aclose()


# ---- two relay processes sharing it ---------------------------------------------------------

RELAY_PROCESS = """
import sys, anyio
from realtalk.relay import RelayPolicy, run_relay
from realtalk.relay.store import RedisStore

upstream, key, secret, redis_url, backend = sys.argv[1:6]
policy = RelayPolicy(max_sessions=3, max_sessions_per_subject=1, single_use_tokens=True)

def ready(relay):
    print("READY", relay.port, flush=True)

anyio.run(lambda: run_relay("127.0.0.1", 0, upstream=upstream, api_key=key, secret=secret,
                            policy=policy, store=RedisStore(redis_url), ready=ready),
          backend=backend)
"""


@asynccontextmanager
async def relay_process(command: list[str], env: dict[str, str] | None = None
                        ) -> AsyncIterator[str]:
    """Start a relay process; yield its URL once it listens."""
    # The same interpreter and environment as the tests: the installed wheel, never the
    # checkout's python/ (which has no built extension in CI).
    environment = {**os.environ, **(env or {})}
    async with await anyio.open_process(command, env=environment,
                                        stderr=subprocess.STDOUT) as process:
        assert process.stdout is not None
        output = b""
        try:
            with anyio.fail_after(30):  # READY (the script) or the CLI's own line
                while not any(line.startswith(("READY", "realtalk relay listening on"))
                              for line in output.decode().split("\n")[:-1]):
                    output += await process.stdout.receive()
            line = next(line for line in output.decode().splitlines()
                        if line.startswith(("READY", "realtalk relay listening on")))
            if line.startswith("READY"):
                yield f"ws://127.0.0.1:{line.split()[1]}/v1/realtime"
            else:
                yield line.split("listening on ")[1].split()[0]
        finally:
            process.terminate()
            with anyio.move_on_after(5):
                await process.wait()
            if process.returncode is None:
                process.kill()


@asynccontextmanager
async def connect(url: str, token: str) -> AsyncIterator[Client]:
    async with open_websocket(url, headers={"Authorization": f"Bearer {token}"}) as ws:
        yield Client(ws)


async def fleet_sessions_become(redis_url: str, count: int) -> None:
    """Wait (5 s at most) until the fleet's store counts ``count`` open sessions. A relay
    releases a session's slot as the session ends, just after the client has seen the close,
    so a client that reconnects at once may meet its own old session still counted."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        with anyio.fail_after(5):
            while await anyio.to_thread.run_sync(client.zcard,
                                                  "{realtalk-relay}:sessions") != count:
                await anyio.sleep(0.02)
    finally:
        client.close()


async def refusal(url: str, token: str) -> tuple[str, int]:
    async with connect(url, token) as client:
        event = await client.recv()
        closed = await client.closed()
    return event["error"]["code"], closed.code


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the relays run on asyncio and trio
async def test_two_relay_processes_share_limits_and_single_use_tokens(
    redis_server: RedisServer,
) -> None:
    async with Simulator(api_keys={KEY}, keepalive_s=None) as sim:
        common = [sys.executable, "-c", RELAY_PROCESS, sim.url, KEY, SECRET, redis_server.url]
        async with relay_process([*common, "asyncio"]) as first, \
                relay_process([*common, "trio"]) as second:
            def token(subject: str) -> str:
                return issue_token(SECRET, 60, subject=subject)

            async with connect(first, token("alice")) as alice:
                assert (await alice.recv())["type"] == "session.created"
                # The per-subject limit holds across processes.
                assert await refusal(second, token("alice")) == ("too_many_sessions", 1008)
                async with connect(second, token("bob")) as bob, \
                        connect(first, token("carol")) as carol:
                    assert (await bob.recv())["type"] == "session.created"
                    assert (await carol.recv())["type"] == "session.created"
                    # So does the fleet-wide cap (3 sessions).
                    assert await refusal(second, token("dave")) == ("relay_at_capacity", 1013)
                await fleet_sessions_become(redis_server.url, 1)  # alice's
                # A single-use token opens one session in the whole fleet.
                once = token("erin")
                async with connect(first, once) as erin:
                    assert (await erin.recv())["type"] == "session.created"
                for url in (second, first):
                    assert await refusal(url, once) == ("invalid_api_key", 3000)
            # Released on close: alice may connect again, through either relay.
            for url in (second, first):
                await fleet_sessions_become(redis_server.url, 0)
                async with connect(url, token("alice")) as again:
                    assert (await again.recv())["type"] == "session.created"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_cli_relay_uses_redis_and_refuses_a_bad_url(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import redis
    from realtalk.cli import main

    async with Simulator(api_keys={KEY}, keepalive_s=None) as sim:
        env = {"REALTALK_RELAY_SECRET": SECRET, "OPENAI_API_KEY": KEY}
        command = [sys.executable, "-m", "realtalk", "relay", "--port", "0", "--upstream",
                   sim.url, "--redis", redis_server.url]
        async with relay_process(command, env) as url:
            async with connect(url, issue_token(SECRET, 60, subject="cli")) as client:
                assert (await client.recv())["type"] == "session.created"
                sessions = redis.Redis(port=redis_server.port).zcard(
                    "{realtalk-relay}:sessions")
                assert sessions == 1  # the session is counted in Redis

    monkeypatch.setenv("REALTALK_RELAY_SECRET", SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    capsys.readouterr()
    assert main(["relay", "--upstream", "ws://127.0.0.1:9/v1/realtime",
                 "--redis", "http://not-redis"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("realtalk: --redis: ") and err.count("\n") == 1
