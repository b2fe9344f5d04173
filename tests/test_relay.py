"""The relay end to end: clients -> Relay -> Tap -> Simulator, on asyncio and trio.

The Tap is a recording WebSocket proxy in front of the simulator: it sees exactly what the relay
sends upstream (upgrade request and every frame), and lets a test close or cut the upstream
side. Every frame a client receives is recorded too, so each test can assert that the API key
never reaches a client and the client's token never reaches the upstream.
"""

from __future__ import annotations

import base64
import gc
import json
import logging
import math
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx
import numpy as np
import pytest
import realtalk
from realtalk.errors import (
    AuthenticationError,
    ConnectionClosed,
    SessionExpired,
)
from realtalk.relay import (
    DOCUMENTED_CLIENT_EVENTS,
    InvalidToken,
    Relay,
    RelayPolicy,
    issue_token,
    verify_token,
)
from realtalk.simulator import Simulator
from realtalk.transport import HTTPRequest, WebSocket, WebSocketServer, open_websocket

KEY = "sk-relay-upstream-KEY-5Zq9"
MASKED_KEY = KEY[:3] + "*" * 8 + KEY[-4:]  # how the API quotes a refused key
SECRET = "relay-test-secret-0123456789"
TEXT_ONLY = {"type": "session.update", "session": {"type": "realtime",
                                                   "output_modalities": ["text"]}}


def user_text(text: str, event_id: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}
    if event_id is not None:
        event["event_id"] = event_id
    return event


# ---- the recording tap in front of the simulator ----------------------------------------


@dataclass
class Tap:
    target: str
    requests: list[HTTPRequest] = field(default_factory=list)
    frames_up: list[bytes] = field(default_factory=list)
    frames_down: list[bytes] = field(default_factory=list)
    closes_from_relay: list[tuple[int, str]] = field(default_factory=list)
    live: list[WebSocket] = field(default_factory=list)
    url: str = ""

    async def handler(self, ws: WebSocket) -> None:
        request = ws.request
        assert request is not None
        self.requests.append(request)
        headers = [(name, value) for name, value in request.headers.raw_items()
                   if name.lower() in ("authorization", "openai-beta")]
        url = f"{self.target}?{urlencode(dict(request.query))}"
        self.live.append(ws)
        try:
            async with open_websocket(url, headers=headers, compression=None) as upstream:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._down, ws, upstream, tg.cancel_scope)
                    tg.start_soon(self._up, ws, upstream, tg.cancel_scope)
        finally:
            self.live.remove(ws)

    async def _down(self, ws: WebSocket, upstream: WebSocket, scope: anyio.CancelScope) -> None:
        while True:
            try:
                data, _ = await upstream.receive_raw()
            except ConnectionClosed as exc:
                await ws.close(exc.code if exc.code not in (1005, 1006) else 1000, exc.reason)
                break
            self.frames_down.append(data)
            await ws.send_text(data)
        scope.cancel()

    async def _up(self, ws: WebSocket, upstream: WebSocket, scope: anyio.CancelScope) -> None:
        while True:
            try:
                data, _ = await ws.receive_raw()
            except ConnectionClosed as exc:
                self.closes_from_relay.append((exc.code, exc.reason))
                break
            self.frames_up.append(data)
            await upstream.send_text(data)
        scope.cancel()

    def everything_upstream_saw(self) -> list[str]:
        seen = [f"{r.path}?{urlencode(dict(r.query))}" for r in self.requests]
        seen += [f"{name}: {value}" for r in self.requests for name, value in r.headers.raw_items()]
        return seen + [frame.decode() for frame in self.frames_up]


@dataclass
class Client:
    """A raw WebSocket client that records every frame it receives."""

    ws: WebSocket
    received: list[bytes] = field(default_factory=list)

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send_text(json.dumps(event))

    async def recv(self) -> dict[str, Any]:
        with anyio.fail_after(10):
            data, _ = await self.ws.receive_raw()
        self.received.append(data)
        return json.loads(data)  # type: ignore[no-any-return]

    async def until(self, kind: str) -> list[dict[str, Any]]:
        events = [await self.recv()]
        while events[-1]["type"] != kind:
            events.append(await self.recv())
        return events

    async def closed(self) -> ConnectionClosed:
        with pytest.raises(ConnectionClosed) as closing:
            while True:
                await self.recv()
        return closing.value


@dataclass
class Stack:
    sim: Simulator
    tap: Tap
    relay: Relay
    clients: list[Client] = field(default_factory=list)

    def token(self, **options: Any) -> str:
        return issue_token(SECRET, options.pop("ttl", 60), **options)

    @asynccontextmanager
    async def browser(self, token: str | None = None, query: str = "?model=gpt-realtime",
                      extra: tuple[str, ...] = ()) -> AsyncIterator[Client]:
        protocols = ["realtime", *extra]
        if token is not None:
            protocols.append(f"openai-insecure-api-key.{token}")
        async with open_websocket(self.relay.url + query, subprotocols=protocols) as ws:
            client = Client(ws)
            self.clients.append(client)
            yield client

    def assert_no_leak(self, token: str | None = None) -> None:
        """The key never reached a client; the token never reached the upstream."""
        for client in self.clients:
            for frame in client.received:
                assert KEY.encode() not in frame and MASKED_KEY.encode() not in frame
        if token is not None:
            for text in self.tap.everything_upstream_saw():
                assert token not in text
        for request in self.tap.requests:
            assert request.headers["Authorization"] == f"Bearer {KEY}"
            assert "Sec-WebSocket-Protocol" not in request.headers


@asynccontextmanager
async def relay_stack(policy: RelayPolicy | None = None, api_key: str = KEY,
                      **options: Any) -> AsyncIterator[Stack]:
    async with Simulator(api_keys={KEY}, keepalive_s=None) as sim:
        tap = Tap(sim.url)
        async with WebSocketServer(tap.handler, compression=None, ping_interval=None) as server:
            tap.url = f"ws://127.0.0.1:{server.port}/v1/realtime"
            options.setdefault("secret", SECRET)
            async with Relay(tap.url, api_key=api_key, policy=policy, **options) as relay:
                yield Stack(sim, tap, relay)


def tone(seconds: float) -> bytes:
    t = np.arange(int(24000 * seconds)) / 24000
    return (0.3 * 32767 * np.sin(2 * math.pi * 220 * t)).astype("<i2").tobytes()


# ---- turns through the relay ------------------------------------------------------------


async def test_browser_client_runs_a_text_turn_with_subprotocol_auth() -> None:
    async with relay_stack() as stack:
        token = stack.token(subject="user-42")
        async with stack.browser(token) as browser:
            assert browser.ws.subprotocol == "realtime"
            assert (await browser.recv())["type"] == "session.created"
            await browser.send(TEXT_ONLY)
            assert (await browser.recv())["type"] == "session.updated"
            await browser.send(user_text("the relay works"))
            await browser.send({"type": "response.create"})
            events = await browser.until("response.done")
            done = events[-1]["response"]
            assert done["status"] == "completed"
            assert done["output"][0]["content"][0]["text"] == "You said: the relay works"
        stack.assert_no_leak(token)
        # The token went nowhere upstream; the upstream got the client's events unchanged.
        assert [json.loads(f)["type"] for f in stack.tap.frames_up] == [
            "session.update", "conversation.item.create", "response.create"]
        # Byte for byte and in order (rate_limits.updated may follow response.done).
        assert browser.received == stack.tap.frames_down[:len(browser.received)]
        assert len(browser.received) >= len(stack.tap.frames_down) - 1


async def test_python_client_runs_an_audio_turn_and_every_byte_arrives() -> None:
    async with relay_stack() as stack:
        token = stack.token()
        pcm = tone(1.0)
        async with realtalk.connect(stack.relay.url, api_key=token) as conn:
            assert (await conn.recv()).type == "session.created"
            await conn.send({"type": "session.update", "session": {
                "type": "realtime", "audio": {"input": {"turn_detection": None}}}})
            assert (await conn.recv()).type == "session.updated"
            for start in range(0, len(pcm), 4800):
                chunk = base64.b64encode(pcm[start:start + 4800]).decode()
                await conn.send({"type": "input_audio_buffer.append", "audio": chunk})
            await conn.send({"type": "input_audio_buffer.commit"})
            await conn.send({"type": "response.create"})
            audio = bytearray()
            transcript = ""
            with anyio.fail_after(20):
                while True:
                    event = await conn.recv()
                    if event.type == "response.output_audio.delta":
                        audio += base64.b64decode(event.delta)  # type: ignore[union-attr]
                    elif event.type == "response.output_audio_transcript.done":
                        transcript = event.transcript  # type: ignore[union-attr]
                    elif event.type == "response.done":
                        break
        assert transcript == "I heard 1.00 s of speech."
        assert len(audio) > 0 and len(audio) % 2 == 0
        assert stack.sim.stats.input_audio_bytes == len(pcm)
        assert stack.sim.stats.output_audio_bytes == len(audio)
        assert stack.relay.stats.audio_seconds_from_client == pytest.approx(1.0)
        stack.assert_no_leak(token)


async def test_beta_client_goes_through_as_beta() -> None:
    async with relay_stack() as stack:
        token = stack.token()
        async with realtalk.connect(stack.relay.url, api_key=token, protocol="beta") as conn:
            created = await conn.recv()
            assert created.type == "session.created"
        assert stack.tap.requests[0].headers["OpenAI-Beta"] == "realtime=v1"
        stack.assert_no_leak(token)


@pytest.mark.filterwarnings(
    "ignore:connect\\(\\) must be used as a context manager:DeprecationWarning"
)
async def test_the_openai_sdk_talks_through_the_relay_and_reads_its_refusals() -> None:
    """An independent client: openai's synchronous Realtime client (in a worker thread) with
    the relay token as its key; every event, the relay's own errors included, validates
    against the SDK's pydantic types."""
    from openai import OpenAI
    from openai.types.realtime import RealtimeServerEvent
    from pydantic import TypeAdapter

    adapter: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
    policy = RelayPolicy(allowed_events=DOCUMENTED_CLIENT_EVENTS - {"conversation.item.delete"})
    async with relay_stack(policy) as stack:
        token = stack.token()
        base_url = stack.relay.url.removesuffix("/realtime")

        def session() -> list[Any]:
            client = OpenAI(api_key=token, websocket_base_url=base_url, max_retries=0)
            with client.realtime.connect(model="gpt-realtime") as conn:
                events = [adapter.validate_json(conn.recv_bytes())]
                conn.conversation.item.delete(item_id="item_x", event_id="evt_del")
                events.append(adapter.validate_json(conn.recv_bytes()))
                conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
                conn.conversation.item.create(item={
                    "type": "message", "role": "user",
                    "content": [{"type": "input_text", "text": "through the relay"}]})
                conn.response.create()
                while events[-1].type != "response.done":
                    events.append(adapter.validate_json(conn.recv_bytes()))
            return events

        with anyio.fail_after(30):
            events = await anyio.to_thread.run_sync(session)
        assert events[0].type == "session.created"
        refusal = events[1]
        assert refusal.type == "error"
        assert (refusal.error.code, refusal.error.event_id) == ("event_not_allowed", "evt_del")
        assert events[-1].response.status == "completed"
        assert events[-1].response.output[0].content[0].text == "You said: through the relay"
        stack.assert_no_leak(token)


# ---- authentication -------------------------------------------------------------------------


async def test_unauthenticated_clients_get_3000_and_no_upstream_connection() -> None:
    async with relay_stack() as stack:
        async with stack.browser(None) as anonymous:
            error = (await anonymous.recv())["error"]
            closed = await anonymous.closed()
        assert error["code"] is None and "Missing bearer" in error["message"]
        assert isinstance(closed, AuthenticationError) and closed.code == 3000

        expired = issue_token(SECRET, 10, now=time.time() - 60)
        forged = issue_token("another-secret-0123456789", 60)
        for token in (expired, forged, "rt1.garbage", "sk-not-a-relay-token"):
            async with stack.browser(token) as client:
                error = (await client.recv())["error"]
                closed = await client.closed()
            assert error["code"] == "invalid_api_key"
            assert (closed.code, closed.reason) == (3000, "invalid_request_error.invalid_api_key")
            stack.assert_no_leak(token)
        with pytest.raises(AuthenticationError):
            async with realtalk.connect(stack.relay.url, api_key=expired) as conn:
                while True:
                    await conn.recv()
        assert stack.tap.requests == []
        assert stack.relay.stats.auth_failures == 6
        assert stack.relay.stats.sessions_total == 0


async def test_a_custom_authenticator_sees_the_token_and_the_request() -> None:
    seen: list[tuple[str, str | None]] = []

    async def authenticate(token: str, request: HTTPRequest) -> object:
        seen.append((token, request.headers.get("Origin")))
        return "alice" if token == "let-me-in" else None

    async with relay_stack(authenticate=authenticate, secret=None) as stack:
        async with realtalk.connect(stack.relay.url, api_key="let-me-in") as conn:
            assert (await conn.recv()).type == "session.created"
        async with stack.browser("nope") as client:
            assert (await client.closed()).code == 3000
        assert seen == [("let-me-in", None), ("nope", None)]
        stack.assert_no_leak("let-me-in")


def test_relay_tokens_sign_expire_and_fit_in_a_subprotocol() -> None:
    token = issue_token(SECRET, 30, subject="dev-7", now=1000.0)
    claims = verify_token(SECRET, token, now=1029.0)
    assert claims.subject == "dev-7" and claims.expires_at == 1030.0
    with pytest.raises(InvalidToken, match="expired"):
        verify_token(SECRET, token, now=1030.0)
    with pytest.raises(InvalidToken, match="signature"):
        verify_token("some-other-secret-value", token, now=1000.0)
    payload, signature = token.removeprefix("rt1.").split(".")
    tampered = f"rt1.{payload[:-2]}AA.{signature}"
    with pytest.raises(InvalidToken):
        verify_token(SECRET, tampered, now=1000.0)
    # RFC 7230 token characters only: browsers accept it as a subprotocol name.
    tchar = set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    assert set(token) <= tchar
    assert issue_token(SECRET, 30) != issue_token(SECRET, 30)  # a nonce in each
    with pytest.raises(ValueError):
        issue_token("short", 30)
    with pytest.raises(ValueError):
        issue_token(SECRET, 0)


# ---- policy -----------------------------------------------------------------------------------


async def test_forbidden_events_are_refused_in_the_apis_shape_and_the_session_goes_on() -> None:
    policy = RelayPolicy(allowed_events=DOCUMENTED_CLIENT_EVENTS - {"conversation.item.create"})
    async with relay_stack(policy) as stack:
        token = stack.token()
        async with stack.browser(token) as browser:
            await browser.recv()
            await browser.send(user_text("smuggled", event_id="evt_1"))
            error = await browser.recv()
            assert error["type"] == "error" and error["event_id"].startswith("event_")
            assert error["error"] == {
                "type": "invalid_request_error", "code": "event_not_allowed",
                "message": "Event type 'conversation.item.create' is not allowed by this relay.",
                "param": "type", "event_id": "evt_1",
            }
            for bad in (b"\x00binary", "{not json", '{"no_type": 1}', '{"type": "nope"}'):
                await browser.ws.send(bad)
                assert (await browser.recv())["type"] == "error"
            await browser.send(TEXT_ONLY)
            assert (await browser.recv())["type"] == "session.updated"
        assert [json.loads(f)["type"] for f in stack.tap.frames_up] == ["session.update"]
        assert stack.relay.stats.events_refused == 5


async def test_pinned_session_fields_are_applied_and_cannot_be_changed() -> None:
    pinned = {"instructions": "You are a pirate.", "audio": {"output": {"voice": "marin"}}}
    async with relay_stack(RelayPolicy(pinned_session=pinned)) as stack:
        token = stack.token()
        async with stack.browser(token) as browser:
            created = await browser.recv()
            assert created["type"] == "session.created"
            assert created["session"]["instructions"] == "You are a pirate."
            assert created["session"]["audio"]["output"]["voice"] == "marin"
            refusals = [
                ({"type": "session.update", "session": {"type": "realtime",
                                                        "instructions": "Obey me."}},
                 "session.instructions"),
                ({"type": "session.update", "session": {"type": "realtime", "audio": {
                    "output": {"voice": "alloy"}}}}, "session.audio.output.voice"),
                ({"type": "session.update", "session": {"type": "realtime", "audio": {
                    "output": None}}}, "session.audio.output"),
                ({"type": "response.create", "response": {"instructions": "Obey me."}},
                 "response.instructions"),
            ]
            for event, param in refusals:
                await browser.send({**event, "event_id": "evt_pin"})
                error = (await browser.recv())["error"]
                assert (error["code"], error["param"], error["event_id"]) == (
                    "pinned_parameter", param, "evt_pin")
            # The same value, and fields that are not pinned, pass.
            await browser.send({"type": "session.update", "session": {
                "type": "realtime", "instructions": "You are a pirate.",
                "output_modalities": ["text"], "audio": {"output": {"speed": 1.1}}}})
            updated = (await browser.recv())["session"]
            assert updated["instructions"] == "You are a pirate."
            assert updated["output_modalities"] == ["text"]
            assert updated["audio"]["output"]["voice"] == "marin"
        sent = [json.loads(f) for f in stack.tap.frames_up]
        assert all(e["session"].get("instructions") in (None, "You are a pirate.")
                   for e in sent if e["type"] == "session.update")
        assert not any(e["type"] == "response.create" for e in sent)

        # Beta clients are held to the same pins, read in GA terms.
        async with realtalk.connect(stack.relay.url, api_key=token, protocol="beta") as conn:
            created_beta = await conn.recv()
            assert created_beta.session["instructions"] == "You are a pirate."  # type: ignore[union-attr]
            await conn.websocket.send_text(json.dumps(
                {"type": "session.update", "session": {"voice": "alloy"}}))
            error_beta = await conn.recv()
            assert error_beta.error["param"] == "session.audio.output.voice"  # type: ignore[union-attr]


async def test_oversized_messages_close_1009_and_the_upstream_is_closed() -> None:
    async with relay_stack(RelayPolicy(max_message_bytes=4096)) as stack:
        token = stack.token()
        async with stack.browser(token) as browser:
            await browser.recv()
            await browser.send({"type": "input_audio_buffer.append",
                                "audio": base64.b64encode(bytes(3000)).decode()})
            await browser.send({"type": "input_audio_buffer.append",
                                "audio": base64.b64encode(bytes(6000)).decode()})
            closed = await browser.closed()
            assert closed.code == 1009
        with anyio.fail_after(5):
            while not stack.tap.closes_from_relay:
                await anyio.sleep(0.01)
        assert stack.tap.closes_from_relay == [(1000, "client connection failed")]
        assert len(stack.tap.frames_up) == 1  # the small append only
        assert stack.relay.stats.oversize_closes == 1


async def test_floods_are_refused_then_closed() -> None:
    policy = RelayPolicy(max_messages_per_s=1, burst_s=5.0, max_refused_events=100)
    async with relay_stack(policy) as stack:
        async with stack.browser(stack.token()) as browser:
            await browser.recv()
            for n in range(12):
                await browser.send({"type": "input_audio_buffer.clear", "event_id": f"e{n}"})
            replies = [await browser.recv() for _ in range(12)]
            refused = [r for r in replies if r["type"] == "error"]
            assert {r["error"]["code"] for r in refused} == {"rate_limit_exceeded"}
            # A bucket of 5 refilled at 1/s: 5 pass (6 if the burst took over a second).
            assert 6 <= len(refused) <= 7
            assert len(replies) - len(refused) == len(stack.tap.frames_up)

    policy = RelayPolicy(max_audio_seconds_per_s=1.0, burst_s=1.0)
    async with relay_stack(policy) as stack:
        async with stack.browser(stack.token()) as browser:
            await browser.recv()
            half_second = base64.b64encode(tone(0.5)).decode()
            for n in range(3):
                await browser.send({"type": "input_audio_buffer.append", "audio": half_second,
                                    "event_id": f"a{n}"})
            error = (await browser.recv())["error"]
            assert (error["code"], error["param"], error["event_id"]) == (
                "rate_limit_exceeded", "audio", "a2")
        assert len(stack.tap.frames_up) == 2

    policy = RelayPolicy(max_messages_per_s=2, burst_s=1.0, max_refused_events=3)
    async with relay_stack(policy) as stack:
        async with stack.browser(stack.token()) as browser:
            await browser.recv()
            for _ in range(10):
                try:
                    await browser.send({"type": "input_audio_buffer.clear"})
                except ConnectionClosed:
                    break
            closed = await browser.closed()
            assert (closed.code, closed.reason) == (1008, "too many refused events")
            codes = [json.loads(f)["error"]["code"] for f in browser.received
                     if json.loads(f)["type"] == "error"]
            assert codes[-1] == "too_many_refused_events"
        assert stack.relay.stats.abuse_closes == 1
        with anyio.fail_after(5):
            while not stack.tap.closes_from_relay:
                await anyio.sleep(0.01)


async def test_idle_and_session_length_limits() -> None:
    async with relay_stack(RelayPolicy(idle_timeout_s=0.3)) as stack:
        async with stack.browser(stack.token()) as browser:
            await browser.recv()
            closed = await browser.closed()
        assert closed.code == 1001 and closed.reason.startswith("Idle timeout")
        assert stack.relay.stats.idle_closes == 1

    async with relay_stack(RelayPolicy(max_session_s=0.4)) as stack:
        with pytest.raises(SessionExpired) as expired:
            async with realtalk.connect(stack.relay.url, api_key=stack.token()) as conn:
                with anyio.fail_after(5):
                    while True:
                        await conn.recv()
        assert expired.value.reason == "Your session hit the maximum duration of 0.4 seconds."


async def test_concurrent_sessions_are_capped() -> None:
    async with relay_stack(RelayPolicy(max_sessions=1)) as stack:
        async with stack.browser(stack.token()) as first:
            await first.recv()
            async with stack.browser(stack.token()) as second:
                error = (await second.recv())["error"]
                closed = await second.closed()
            assert error["code"] == "relay_at_capacity" and closed.code == 1013
        await wait_for(lambda: stack.relay.stats.sessions_open == 0)
        async with stack.browser(stack.token()) as third:
            assert (await third.recv())["type"] == "session.created"
        assert len(stack.tap.requests) == 2


# ---- closes both ways ---------------------------------------------------------------------


async def wait_for(predicate: Any) -> None:
    with anyio.fail_after(5):
        while not predicate():
            await anyio.sleep(0.01)


async def test_close_codes_and_reasons_propagate_both_ways() -> None:
    async with relay_stack() as stack:
        async with stack.browser(stack.token()) as browser:
            await browser.recv()
            await browser.ws.close(4321, "bye from the browser")
        await wait_for(lambda: stack.tap.closes_from_relay)
        assert stack.tap.closes_from_relay == [(4321, "bye from the browser")]

        await wait_for(lambda: not stack.tap.live)
        async with stack.browser(stack.token()) as browser:
            await browser.recv()
            await wait_for(lambda: stack.tap.live)
            await stack.tap.live[0].close(4005, "the upstream says goodbye")
            closed = await browser.closed()
        assert (closed.code, closed.reason) == (4005, "the upstream says goodbye")

        # The upstream vanishes without a close frame: the client is still closed cleanly.
        await wait_for(lambda: not stack.tap.live)
        async with stack.browser(stack.token()) as browser:
            await browser.recv()
            await wait_for(lambda: stack.tap.live)
            await anyio.aclose_forcefully(stack.tap.live[0]._stream)
            closed = await browser.closed()
        assert (closed.code, closed.reason) == (1011, "upstream connection lost")

        # The client vanishes: the upstream is closed with a close frame.
        stack.tap.closes_from_relay.clear()
        async with stack.browser(stack.token()) as browser:
            await browser.recv()
            await anyio.aclose_forcefully(browser.ws._stream)
        await wait_for(lambda: stack.tap.closes_from_relay)
        assert stack.tap.closes_from_relay == [(1000, "client went away")]
        await wait_for(lambda: stack.relay.stats.sessions_open == 0)


async def test_a_refused_relay_key_never_reaches_the_client() -> None:
    async with relay_stack(api_key="sk-wrong-KEY-for-upstream") as stack:
        async with stack.browser(stack.token()) as browser:
            error = (await browser.recv())["error"]
            closed = await browser.closed()
        assert error["code"] == "upstream_unavailable" and error["type"] == "server_error"
        assert closed.code == 1011
        for frame in browser.received:
            assert b"sk-" not in frame and b"wrong" not in frame
        assert stack.relay.stats.upstream_failures == 1

    async with Relay("ws://127.0.0.1:9/v1/realtime", api_key=KEY, secret=SECRET) as relay:
        async with open_websocket(relay.url, headers={
                "Authorization": f"Bearer {issue_token(SECRET, 60)}"}) as ws:
            error = json.loads(await ws.receive())["error"]
            with pytest.raises(ConnectionClosed) as closed_unreachable:
                await ws.receive()
        assert error["code"] == "upstream_unavailable"
        assert closed_unreachable.value.code == 1011


async def test_model_choice_follows_the_policy() -> None:
    policy = RelayPolicy(model="gpt-realtime", allowed_models={"gpt-realtime", "gpt-realtime-mini"})
    async with relay_stack(policy) as stack:
        async with stack.browser(stack.token(), query="?model=gpt-realtime-mini") as browser:
            await browser.recv()
        async with stack.browser(stack.token(), query="?model=gpt-4o") as browser:
            assert (await browser.recv())["error"]["code"] == "invalid_model"
            assert (await browser.closed()).code == 4000
        assert [r.query["model"] for r in stack.tap.requests] == ["gpt-realtime-mini"]
    async with relay_stack() as stack:
        async with stack.browser(stack.token(), query="?model=gpt-4o-anything") as browser:
            await browser.recv()
        assert stack.tap.requests[0].query["model"] == "gpt-realtime"
    # A refusal by the upstream that concerns the client's request reaches it unchanged.
    async with relay_stack(RelayPolicy(allowed_models={"gpt-4-turbo"})) as stack:
        async with stack.browser(stack.token(), query="?model=gpt-4-turbo") as browser:
            error = (await browser.recv())["error"]
            closed = await browser.closed()
        assert error["code"] == "invalid_model"
        assert (closed.code, closed.reason) == (4000, "invalid_request_error.invalid_model")
        assert browser.received == stack.tap.frames_down


# ---- observability and leaks ---------------------------------------------------------------


async def test_one_log_line_per_connection_and_scrapeable_counters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with relay_stack() as stack:
        token = stack.token(subject="user-9")
        async with stack.browser(token) as browser:
            await browser.recv()
            await browser.send(TEXT_ONLY)
            await browser.recv()
            await browser.ws.close(1000, "done")
        async with stack.browser(None) as anonymous:
            await anonymous.closed()
        await wait_for(lambda: stack.relay.stats.sessions_open == 0)
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"http://127.0.0.1:{stack.relay.port}/metrics")).text
    lines = [r for r in caplog.records if r.name == "realtalk.relay"
             and r.getMessage().startswith("relay connection ")]
    assert len(lines) == 2
    assert lines[1].relay["close"] == "relay 3000 (no credentials)"  # type: ignore[attr-defined]
    record = lines[0].relay  # type: ignore[attr-defined]
    assert record["subject"] == "user-9" and record["close"] == "client 1000 (done)"
    assert record["events_from_client"] == 1 and record["events_to_client"] == 2
    assert record["bytes_from_client"] == len(json.dumps(TEXT_ONLY))
    assert record["bytes_to_client"] == sum(len(f) for f in browser.received)
    assert "id=" in lines[0].getMessage() and "duration_s=" in lines[0].getMessage()
    for log in caplog.records:
        text = log.getMessage() + repr(getattr(log, "relay", ""))
        assert KEY not in text and token not in text and SECRET not in text
    values = dict(line.split(" ") for line in metrics.splitlines() if not line.startswith("#"))
    assert values["realtalk_relay_connections_total"] == "2"
    assert values["realtalk_relay_auth_failures_total"] == "1"
    assert values["realtalk_relay_sessions_open"] == "0"
    # Every byte sent downstream is counted, the refusal's error event too.
    assert int(values["realtalk_relay_bytes_to_client_total"]) == sum(
        line.relay["bytes_to_client"] for line in lines)  # type: ignore[attr-defined]
    assert lines[1].relay["bytes_to_client"] == len(anonymous.received[0])  # type: ignore[attr-defined]
    assert KEY not in repr(stack.relay)


# Connections per run of the leak test; REALTALK_LEAK_ROUNDS=3000 for the long run
# (benches/README.md, relay section).
LEAK_ROUNDS = int(os.environ.get("REALTALK_LEAK_ROUNDS", "150"))


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_many_sequential_connections_leak_nothing() -> None:
    from realtalk.relay.connection import _Connection
    from websockets.protocol import Protocol

    async with relay_stack() as stack:
        async def one_round(n: int) -> None:
            if n % 3 == 0:
                async with stack.browser(None) as client:
                    await client.closed()
                return
            async with stack.browser(stack.token()) as client:
                await client.recv()
                await client.send(user_text(f"message {n}"))
                await client.recv()
                if n % 3 == 2:
                    await anyio.aclose_forcefully(client.ws._stream)

        def forget_records() -> None:  # what the test harness itself keeps per connection
            stack.clients.clear()
            for records in (stack.tap.requests, stack.tap.frames_up, stack.tap.frames_down,
                            stack.tap.closes_from_relay):
                records.clear()

        for n in range(6):  # warm up (first-use allocations, pools)
            await one_round(n)
        forget_records()
        await wait_for(lambda: stack.relay.stats.connections_open == 0)
        tasks_before = len(anyio.get_running_tasks())
        descriptors_before = open_descriptors()
        gc.collect()
        per_connection = (WebSocket, _Connection, Protocol)
        objects_before = sum(isinstance(o, per_connection) for o in gc.get_objects())
        for n in range(LEAK_ROUNDS):
            await one_round(n)
            forget_records()
        await wait_for(lambda: stack.relay.stats.connections_open == 0
                       and not stack.tap.live and len(anyio.get_running_tasks()) <= tasks_before
                       and open_descriptors() <= descriptors_before)
        gc.collect()
        assert not [o for o in gc.get_objects() if isinstance(o, _Connection)]
        # No connection's WebSocket or Sans-I/O protocol object outlives it, on either side.
        assert sum(isinstance(o, per_connection) for o in gc.get_objects()) <= objects_before
        stats = stack.relay.stats
        assert stats.connections_total == LEAK_ROUNDS + 6 and stats.sessions_open == 0


async def test_run_relay_serves_until_cancelled_and_shutdown_closes_both_sides() -> None:
    from realtalk.relay import run_relay

    async with Simulator(api_keys={KEY}, keepalive_s=None) as sim:
        started: list[Relay] = []
        relay_scope = anyio.CancelScope()

        async def serve() -> None:
            with relay_scope:
                await run_relay("127.0.0.1", 0, upstream=sim.url, api_key=KEY, secret=SECRET,
                                ready=started.append)

        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            await wait_for(lambda: started)
            async with realtalk.connect(started[0].url, api_key=issue_token(SECRET, 60)) as conn:
                assert (await conn.recv()).type == "session.created"
                relay_scope.cancel()  # the relay shuts down under the open session
                with pytest.raises(ConnectionClosed) as closed, anyio.fail_after(10):
                    while True:
                        await conn.recv()
        assert closed.value.code == 1001
        await wait_for(lambda: sim.stats.sessions == 1 and not sim._live)


async def test_browser_origins_can_be_restricted() -> None:
    from realtalk.errors import HandshakeError

    async with relay_stack(RelayPolicy(allowed_origins={"https://app.example"})) as stack:
        token = stack.token()
        with pytest.raises(HandshakeError) as refused:
            async with open_websocket(stack.relay.url, headers={
                    "Origin": "https://evil.example", "Authorization": f"Bearer {token}"}):
                pass
        assert refused.value.status == 403
        async with open_websocket(stack.relay.url, headers={
                "Origin": "https://app.example", "Authorization": f"Bearer {token}"}) as ws:
            assert json.loads(await ws.receive())["type"] == "session.created"
        assert len(stack.tap.requests) == 1


def test_cli_issues_relay_tokens_and_needs_a_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from realtalk.cli import main

    monkeypatch.setenv("REALTALK_RELAY_SECRET", SECRET)
    assert main(["relay", "--issue-token", "60", "--subject", "kiosk-3"]) == 0
    token = capsys.readouterr().out.strip()
    assert verify_token(SECRET, token).subject == "kiosk-3"
    monkeypatch.setenv("REALTALK_RELAY_SECRET", "short")
    assert main(["relay", "--issue-token", "60"]) == 1
    assert "REALTALK_RELAY_SECRET" in capsys.readouterr().err
    monkeypatch.setenv("REALTALK_RELAY_SECRET", SECRET)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["relay", "--upstream", "wss://example.invalid/v1/realtime"]) == 1
    assert "OPENAI_API_KEY" in capsys.readouterr().err
