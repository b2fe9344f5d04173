"""realtalk.connect against the project's own server on loopback: URL and headers per
protocol and provider, typed events both ways, error events and close codes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
import realtalk
from realtalk.connection import realtime_request
from realtalk.errors import (
    AuthenticationError,
    ConnectionClosed,
    InvalidRequestError,
    ProtocolError,
    SessionExpired,
)
from realtalk.events import InputAudioBufferAppendEvent, UnknownEvent
from realtalk.transport import HTTPRequest, WebSocket, WebSocketServer

pytestmark = pytest.mark.timeout(30)

REPLAYS = Path(__file__).parent / "data" / "replays"


@asynccontextmanager
async def server(handler: Callable[[WebSocket], Awaitable[None]]) -> AsyncIterator[str]:
    async with WebSocketServer(handler) as running:
        yield f"ws://127.0.0.1:{running.port}/v1"


def recorder(requests: list[HTTPRequest]) -> Callable[[WebSocket], Awaitable[None]]:
    async def handler(ws: WebSocket) -> None:
        assert ws.request is not None
        requests.append(ws.request)
        await ws.send('{"type":"session.created","event_id":"event_1","session":{}}')
        async for _ in ws:
            pass

    return handler


# ---- URL and headers ----


async def test_ga_default_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    requests: list[HTTPRequest] = []
    async with server(recorder(requests)) as url:
        async with realtalk.connect(url) as conn:
            event = await conn.recv()
            assert event.type == "session.created"
    request = requests[0]
    assert request.path == "/v1/realtime"
    assert dict(request.query) == {"model": "gpt-realtime"}
    assert request.headers["Authorization"] == "Bearer sk-from-env"
    assert "OpenAI-Beta" not in request.headers


async def test_beta_adds_header_and_ephemeral_token_is_bearer() -> None:
    requests: list[HTTPRequest] = []
    async with server(recorder(requests)) as url:
        async with realtalk.connect(
            f"{url}/realtime?model=gpt-4o-realtime-preview",
            api_key="ek_68af296e8e408191a1120ab6383263c2",
            protocol="beta",
            organization="org_1",
            project="proj_1",
        ) as conn:
            assert conn.protocol == "beta"
    request = requests[0]
    assert dict(request.query) == {"model": "gpt-4o-realtime-preview"}
    assert request.headers["OpenAI-Beta"] == "realtime=v1"
    assert request.headers["Authorization"] == "Bearer ek_68af296e8e408191a1120ab6383263c2"
    assert request.headers["OpenAI-Organization"] == "org_1"
    assert request.headers["OpenAI-Project"] == "proj_1"


async def test_azure_preview_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-key")
    requests: list[HTTPRequest] = []
    async with server(recorder(requests)) as url:
        base = url.removesuffix("/v1") + "/openai"
        async with realtalk.connect(
            base, azure_deployment="my-dep", azure_api_version="2025-04-01-preview", protocol="beta"
        ):
            pass
    request = requests[0]
    assert request.path == "/openai/realtime"
    assert dict(request.query) == {"api-version": "2025-04-01-preview", "deployment": "my-dep"}
    assert request.headers["api-key"] == "azure-key"
    assert "Authorization" not in request.headers


def test_request_rules_without_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("AZURE_OPENAI_API_KEY", raising=False)
    assert realtime_request(api_key="sk") == (
        "wss://api.openai.com/v1/realtime?model=gpt-realtime",
        {"Authorization": "Bearer sk"},
    )
    # Azure GA: the host says Azure, the deployment is the model.
    url, headers = realtime_request(
        "https://res.openai.azure.com/openai/v1", model="dep", api_key="key"
    )
    assert (url, headers) == (
        "wss://res.openai.azure.com/openai/v1/realtime?model=dep",
        {"api-key": "key"},
    )
    # A URL that already selects the session keeps its query.
    url, _ = realtime_request("wss://h/v1/realtime?call_id=rtc_1", api_key="sk")
    assert url == "wss://h/v1/realtime?call_id=rtc_1"
    # User headers win, and make a key unnecessary.
    _, headers = realtime_request(headers={"Authorization": "Bearer mine"})
    assert headers == {"Authorization": "Bearer mine"}
    with pytest.raises(ValueError, match="API key"):
        realtime_request()
    with pytest.raises(ValueError, match="protocol"):
        realtime_request(api_key="sk", protocol="v2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ws://"):
        realtime_request("ftp://h/", api_key="sk")


# ---- events both ways ----


async def test_every_official_ga_server_example_arrives_typed() -> None:
    lines = (REPLAYS / "openapi_examples_ga_server_events.jsonl").read_text().splitlines()
    wire = [line for line in lines if line.strip()]

    async def handler(ws: WebSocket) -> None:
        for line in wire:
            await ws.send(line)

    async with server(handler) as url:
        async with realtalk.connect(url, api_key="sk") as conn:
            received = [event async for event in conn]
    assert [type(event) for event in received].count(UnknownEvent) == 0
    assert [event.type for event in received] == [json.loads(line)["type"] for line in wire]
    # A field survives too: every example's event_id (the one DTMF example has none).
    for event, line in zip(received, wire, strict=True):
        assert event.event_id == json.loads(line).get("event_id", event.event_id)


async def test_beta_events_are_translated_both_ways() -> None:
    got: list[dict[str, object]] = []

    async def handler(ws: WebSocket) -> None:
        got.append(json.loads(await ws.receive()))
        await ws.send(
            json.dumps(
                {
                    "type": "response.audio.delta",
                    "event_id": "event_1",
                    "response_id": "resp_1",
                    "item_id": "item_1",
                    "output_index": 0,
                    "content_index": 0,
                    "delta": "AAAA",
                }
            )
        )

    async with server(handler) as url:
        async with realtalk.connect(url, api_key="sk", protocol="beta") as conn:
            await conn.send(
                {"type": "session.update", "session": {"type": "realtime", "instructions": "hi"}}
            )
            event = await conn.recv()
    assert event.type == "response.output_audio.delta"
    assert event.delta == "AAAA"  # type: ignore[union-attr]
    sent = got[0]
    assert sent["type"] == "session.update"
    assert sent["session"] == {"instructions": "hi"}  # beta has no session.type
    assert isinstance(sent["event_id"], str) and sent["event_id"].startswith("event_")


async def test_send_models_and_mappings_get_event_ids() -> None:
    got: list[dict[str, object]] = []

    async def handler(ws: WebSocket) -> None:
        for _ in range(2):
            got.append(json.loads(await ws.receive()))

    async with server(handler) as url:
        async with realtalk.connect(url, api_key="sk") as conn:
            await conn.send(InputAudioBufferAppendEvent(audio="AAAA"))
            await conn.send({"type": "response.create", "event_id": "event_mine"})
            with pytest.raises(ConnectionClosed):
                await conn.recv()
    assert got[0]["type"] == "input_audio_buffer.append" and got[0]["audio"] == "AAAA"
    assert str(got[0]["event_id"]).startswith("event_")
    assert got[1] == {"type": "response.create", "event_id": "event_mine"}


async def test_malformed_json_and_binary_frames_raise_but_the_session_goes_on() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.send("{not json")
        await ws.send(b"\x00binary")
        await ws.send('{"type":"response.done","event_id":"event_2","response":{}}')

    async with server(handler) as url:
        async with realtalk.connect(url, api_key="sk") as conn:
            with pytest.raises(ProtocolError, match="JSON"):
                await conn.recv()
            with pytest.raises(ProtocolError, match="binary"):
                await conn.recv()
            assert (await conn.recv()).type == "response.done"


async def test_consume_hands_every_event_over_in_order_then_raises_the_close() -> None:
    lines = (REPLAYS / "openapi_examples_ga_server_events.jsonl").read_text().splitlines()
    wire = [line for line in lines if line.strip()]

    async def handler(ws: WebSocket) -> None:
        await ws.send_texts(wire[:5])
        await ws.send("{not json")
        for line in wire[5:]:
            await ws.send(line)
        await ws.close(4000, "invalid_request_error.beta_api_shape_disabled")

    received: list[object] = []
    async with server(handler) as url:
        async with realtalk.connect(url, api_key="sk") as conn:
            with pytest.raises(ProtocolError, match="JSON"):
                await conn.consume(received.append)
            assert len(received) == 5  # delivery stopped at the malformed message...
            with pytest.raises(InvalidRequestError):
                await conn.consume(received.append)  # ...and a new call goes on after it
    assert [event.type for event in received] == [  # type: ignore[attr-defined]
        json.loads(line)["type"] for line in wire
    ]
    assert not any(isinstance(event, UnknownEvent) for event in received)


async def test_consume_stops_on_a_failing_handler_and_keeps_what_follows() -> None:
    async def handler(ws: WebSocket) -> None:
        for index in range(3):
            await ws.send(json.dumps({"type": "response.done", "event_id": f"event_{index}",
                                      "response": {}}))
        async for _ in ws:
            pass

    seen: list[str] = []

    def fail_on_second(event: object) -> None:
        seen.append(event.event_id)  # type: ignore[attr-defined]
        if len(seen) == 2:
            raise RuntimeError("handler broke")

    async with server(handler) as url:
        async with realtalk.connect(url, api_key="sk") as conn:
            with pytest.raises(RuntimeError, match="handler broke"):
                await conn.consume(fail_on_second)
            assert (await conn.recv()).event_id == "event_2"
    assert seen == ["event_0", "event_1"]


# ---- error events and close codes ----


@pytest.mark.parametrize(
    ("code", "reason", "error_code", "expected"),
    [
        (3000, "invalid_request_error.invalid_api_key", "invalid_api_key", AuthenticationError),
        (
            4000,
            "invalid_request_error.beta_api_shape_disabled",
            "beta_api_shape_disabled",
            InvalidRequestError,
        ),
        (1001, "Your session hit the maximum duration of 60 minutes.", None, SessionExpired),
    ],
)
async def test_error_event_is_delivered_then_close_raises(
    code: int, reason: str, error_code: str | None, expected: type[ConnectionClosed]
) -> None:
    async def handler(ws: WebSocket) -> None:
        if error_code is not None:
            await ws.send(
                json.dumps(
                    {
                        "type": "error",
                        "event_id": "event_9",
                        "error": {
                            "type": "invalid_request_error",
                            "code": error_code,
                            "message": "m",
                        },
                    }
                )
            )
        await ws.close(code, reason)

    async with server(handler) as url:
        async with realtalk.connect(url, api_key="sk-bad") as conn:
            events = []
            with pytest.raises(expected) as caught:
                async for event in conn:
                    events.append(event)
    assert caught.value.code == code and caught.value.reason == reason
    if error_code is not None:
        assert [event.type for event in events] == ["error"]
        assert events[0].error["code"] == error_code  # type: ignore[union-attr]


async def test_normal_close_ends_iteration_and_close_is_available() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.send('{"type":"session.created","event_id":"event_1","session":{}}')
        await anyio.sleep_forever()

    async with server(handler) as url:
        async with realtalk.connect(url, api_key="sk") as conn:
            assert (await conn.recv()).type == "session.created"
            await conn.close()
            assert [event async for event in conn] == []
            assert conn.websocket.close_code == 1000
