"""The simulator's network face: authentication, beta handling, REST ephemeral tokens (through
the `openai` package), session expiry, fault hooks, pacing, on asyncio and trio."""

from __future__ import annotations

import json
from typing import Any

import anyio
import openai
import pytest
from realtalk.errors import (
    AuthenticationError,
    ConnectionClosed,
    HandshakeError,
    InvalidRequestError,
    SessionExpired,
)
from realtalk.simulator import Close, Delay, Drop, ServerError, Simulator, Text, VirtualClock
from realtalk.simulator.server import expiry_reason
from realtalk.transport import WebSocket, open_websocket

pytestmark = pytest.mark.filterwarnings(
    "ignore:connect\\(\\) must be used as a context manager:DeprecationWarning"
)

KEY = {"Authorization": "Bearer sk-test"}
TEXT_SESSION = {
    "type": "session.update",
    "session": {"type": "realtime", "output_modalities": ["text"]},
}
USER_TEXT = {
    "type": "conversation.item.create",
    "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
}


async def receive(ws: WebSocket) -> dict[str, Any]:
    with anyio.fail_after(10):
        return json.loads(await ws.receive())


async def receive_until(ws: WebSocket, kind: str) -> list[dict[str, Any]]:
    events = []
    while True:
        events.append(await receive(ws))
        if events[-1]["type"] == kind:
            return events


async def refused(url: str, **options: Any) -> tuple[dict[str, Any], ConnectionClosed]:
    async with open_websocket(url, **options) as ws:
        event = await receive(ws)
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws)
    return event, closed.value


async def test_missing_key_wrong_model_and_missing_model_are_refused_after_the_upgrade() -> None:
    async with Simulator(api_keys={"sk-test"}) as sim:
        event, closed = await refused(f"{sim.url}?model=gpt-realtime")
        assert event["error"] == {
            "type": "invalid_request_error",
            "code": None,
            "message": "Missing bearer or basic authentication in header",
            "param": None,
            "event_id": None,
        }
        assert isinstance(closed, AuthenticationError)
        assert (closed.code, closed.reason) == (3000, "invalid_request_error")

        event, closed = await refused(f"{sim.url}?model=gpt-4-turbo", headers=KEY)
        assert event["error"]["code"] == "invalid_model"
        assert event["error"]["message"].startswith(
            'Model "gpt-4-turbo" is not supported in realtime mode'
        )
        assert isinstance(closed, InvalidRequestError)
        assert (closed.code, closed.reason) == (4000, "invalid_request_error.invalid_model")

        event, closed = await refused(sim.url, headers=KEY)
        assert event["error"]["code"] == "missing_model"
        assert closed.code == 4000


async def test_browser_subprotocol_key_and_any_key_without_a_key_list() -> None:
    async with Simulator(api_keys={"sk-browser"}) as sim, open_websocket(
        f"{sim.url}?model=gpt-realtime",
        subprotocols=["realtime", "openai-insecure-api-key.sk-browser"],
    ) as ws:
        assert ws.subprotocol == "realtime"
        assert (await receive(ws))["type"] == "session.created"
    async with Simulator() as sim, open_websocket(
        f"{sim.url}?model=gpt-realtime", headers={"Authorization": "Bearer anything"}
    ) as ws:
        assert (await receive(ws))["type"] == "session.created"


async def test_wrong_path_is_a_404_handshake() -> None:
    async with Simulator() as sim:
        with pytest.raises(HandshakeError) as refusal:
            async with open_websocket(f"ws://127.0.0.1:{sim.port}/v1/other", headers=KEY):
                pass
        assert refusal.value.status == 404


async def test_binary_frames_and_bad_json_are_errors_not_the_end() -> None:
    async with Simulator() as sim:
        async with open_websocket(f"{sim.url}?model=gpt-realtime", headers=KEY) as ws:
            await receive(ws)
            await ws.send_binary(b"\x01\x02")
            assert (await receive(ws))["error"]["code"] == "invalid_event"
            await ws.send_text("{oops")
            assert (await receive(ws))["error"]["code"] == "invalid_json"
            await ws.send_text(json.dumps(TEXT_SESSION))
            assert (await receive(ws))["type"] == "session.updated"


async def test_ga_ephemeral_token_carries_its_session_and_expires() -> None:
    clock = VirtualClock()
    async with Simulator(api_keys={"sk-test"}, clock=clock) as sim:
        client = openai.OpenAI(api_key="sk-test", base_url=sim.http_url, max_retries=0)

        def create() -> Any:
            return client.realtime.client_secrets.create(
                expires_after={"anchor": "created_at", "seconds": 120},
                session={
                    "type": "realtime",
                    "model": "gpt-realtime",
                    "instructions": "Be brief.",
                    "output_modalities": ["text"],
                },
            )

        secret = await anyio.to_thread.run_sync(create)
        assert secret.value.startswith("ek_")
        assert secret.expires_at == int(clock.time()) + 120
        assert secret.session.instructions == "Be brief."
        assert secret.session.output_modalities == ["text"]

        headers = {"Authorization": f"Bearer {secret.value}"}
        async with open_websocket(f"{sim.url}?model=gpt-realtime", headers=headers) as ws:
            created = await receive(ws)
            assert created["session"]["instructions"] == "Be brief."
            assert created["session"]["output_modalities"] == ["text"]
        # The secret opens several sessions until it expires.
        async with open_websocket(f"{sim.url}?model=gpt-realtime", headers=headers) as ws:
            assert (await receive(ws))["type"] == "session.created"
        clock.advance(121)
        event, closed = await refused(f"{sim.url}?model=gpt-realtime", headers=headers)
        assert event["error"]["code"] == "invalid_api_key"
        assert closed.code == 3000

        bad = openai.OpenAI(api_key="sk-nope-nope", base_url=sim.http_url, max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            await anyio.to_thread.run_sync(
                lambda: bad.realtime.client_secrets.create(session={"type": "realtime"})
            )

        def invalid() -> Any:
            return client.realtime.client_secrets.create(
                expires_after={"anchor": "created_at", "seconds": 5}
            )

        with pytest.raises(openai.BadRequestError) as bad_request:
            await anyio.to_thread.run_sync(invalid)
        assert bad_request.value.code == "integer_below_min_value"
        assert bad_request.value.param == "expires_after.seconds"


async def test_beta_rest_session_token() -> None:
    clock = VirtualClock()
    async with Simulator(clock=clock) as sim:
        client = openai.OpenAI(api_key="sk-test", base_url=sim.http_url, max_retries=0)

        def create() -> Any:
            return client.beta.realtime.sessions.create(
                model="gpt-4o-realtime-preview", modalities=["text"], instructions="Hi."
            )

        session = await anyio.to_thread.run_sync(create)
        assert session.client_secret.value.startswith("ek_")
        assert session.client_secret.expires_at == int(clock.time()) + 60  # beta default TTL
        assert session.modalities == ["text"] and session.instructions == "Hi."
        headers = {
            "Authorization": f"Bearer {session.client_secret.value}",
            "OpenAI-Beta": "realtime=v1",
        }
        async with open_websocket(
            f"{sim.url}?model=gpt-4o-realtime-preview", headers=headers
        ) as ws:
            created = await receive(ws)
            assert created["session"]["modalities"] == ["text"]
            assert "output_modalities" not in created["session"]


def test_expiry_reason_matches_the_live_text() -> None:
    assert expiry_reason(3600) == "Your session hit the maximum duration of 60 minutes."
    assert expiry_reason(1800) == "Your session hit the maximum duration of 30 minutes."


@pytest.mark.parametrize("beta", [False, True])
async def test_session_expiry_closes_1001_with_the_reason(beta: bool) -> None:
    headers = dict(KEY) | ({"OpenAI-Beta": "realtime=v1"} if beta else {})
    async with Simulator(max_session_s=0.3) as sim:
        async with open_websocket(f"{sim.url}?model=gpt-realtime", headers=headers) as ws:
            assert (await receive(ws))["type"] == "session.created"
            if beta:
                error = (await receive(ws))["error"]
                assert error["code"] == "session_expired"
                assert error["message"] == "Your session hit the maximum duration of 0.3 seconds."
            with pytest.raises(SessionExpired) as closed:
                await receive(ws)
    assert closed.value.code == 1001
    assert closed.value.reason == "Your session hit the maximum duration of 0.3 seconds."


async def test_fault_server_error_fails_the_response() -> None:
    async with Simulator(responder=lambda ctx: [Text("partial"), ServerError()]) as sim:
        async with open_websocket(f"{sim.url}?model=gpt-realtime", headers=KEY) as ws:
            await ws.send_text(json.dumps(TEXT_SESSION))
            await ws.send_text(json.dumps({"type": "response.create"}))
            events = await receive_until(ws, "response.done")
            error = next(e for e in events if e["type"] == "error")["error"]
            assert error["type"] == "server_error"
            done = events[-1]["response"]
            assert done["status"] == "failed"
            assert done["status_details"]["type"] == "failed"
            # The session survives a failed response.
            await ws.send_text(json.dumps({"type": "response.cancel"}))
            tail = await receive_until(ws, "error")
            assert [e["type"] for e in tail] == ["rate_limits.updated", "error"]
            assert tail[-1]["error"]["code"] == "response_cancel_not_active"


@pytest.mark.parametrize(("part", "code"), [(Close(1001, "going away"), 1001), (Drop(), 1006)])
async def test_fault_close_and_drop(part: Any, code: int) -> None:
    async with Simulator(responder=lambda ctx: [Text("bye"), part]) as sim:
        async with open_websocket(f"{sim.url}?model=gpt-realtime", headers=KEY) as ws:
            await ws.send_text(json.dumps(TEXT_SESSION))
            await ws.send_text(json.dumps({"type": "response.create"}))
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await receive(ws)
    assert closed.value.code == code


async def test_fault_drop_after_n_events() -> None:
    async with Simulator(drop_after_events=5) as sim:
        async with open_websocket(f"{sim.url}?model=gpt-realtime", headers=KEY) as ws:
            await ws.send_text(json.dumps(TEXT_SESSION))
            await ws.send_text(json.dumps(USER_TEXT))
            await ws.send_text(json.dumps({"type": "response.create"}))
            received = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    received.append(await receive(ws))
    assert closed.value.code == 1006
    assert [e["type"] for e in received] == [
        "session.created",
        "session.updated",
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
    ]


async def test_realtime_pace_on_a_virtual_clock_streams_audio_at_playback_speed() -> None:
    clock = VirtualClock()

    async def responder(ctx: Any) -> Any:
        yield Delay(2.0)
        yield Text("one two three four")

    async with Simulator(pace="realtime", clock=clock, responder=responder) as sim:
        async with open_websocket(f"{sim.url}?model=gpt-realtime", headers=KEY) as ws:
            await receive(ws)
            start = clock.time()
            await ws.send_text(json.dumps({"type": "response.create"}))
            events = await receive_until(ws, "response.done")
            elapsed = clock.time() - start
    import base64

    audio = sum(
        len(base64.b64decode(e["delta"]))
        for e in events
        if e["type"] == "response.output_audio.delta"
    )
    assert elapsed == pytest.approx(2.0 + audio / 48000, abs=1e-4)


async def test_run_simulator_serves_until_cancelled() -> None:
    from realtalk.simulator import run_simulator

    ready: list[Simulator] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: run_simulator("127.0.0.1", 0, ready=ready.append))
        with anyio.fail_after(10):
            while not ready:
                await anyio.sleep(0.01)
        async with open_websocket(f"{ready[0].url}?model=gpt-realtime", headers=KEY) as ws:
            assert (await receive(ws))["type"] == "session.created"
        tg.cancel_scope.cancel()
