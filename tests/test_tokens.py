"""Ephemeral client secrets (realtalk.tokens) end to end against the simulator's REST endpoints,
with the openai package as the oracle of what the endpoint answers, on asyncio and trio."""

from __future__ import annotations

from typing import Any

import anyio
import openai
import pytest
import realtalk
from realtalk.errors import APIError, AuthenticationError, ConnectError, Timeout
from realtalk.events import ErrorEvent, SessionCreatedEvent
from realtalk.simulator import Simulator, VirtualClock
from realtalk.tokens import ClientSecret, create_client_secret
from realtalk.transport import HTTPRequest, HTTPResponse, WebSocketServer

KEY = "sk-token-minter-0123456789"


async def first_events(url: str, token: str, protocol: Any = "ga", count: int = 1) -> list[Any]:
    async with realtalk.connect(url, api_key=token, protocol=protocol) as conn:
        with anyio.fail_after(10):
            return [await conn.recv() for _ in range(count)]


async def test_ga_secret_opens_a_session_with_its_config_then_expires() -> None:
    clock = VirtualClock()
    async with Simulator(api_keys={KEY}, clock=clock) as sim:
        session = {"type": "realtime", "model": "gpt-realtime", "instructions": "Be brief.",
                   "output_modalities": ["text"]}
        secret = await create_client_secret(
            api_key=KEY, session=session, expires_after_s=120, base_url=sim.http_url
        )
        assert isinstance(secret, ClientSecret) and secret.protocol == "ga"
        assert secret.value.startswith("ek_")
        assert secret.expires_at == int(clock.time()) + 120
        assert secret.session["instructions"] == "Be brief."
        assert secret.session["output_modalities"] == ["text"]
        assert secret.value not in repr(secret)

        # The openai package reads the same endpoint the same way.
        sdk = openai.OpenAI(api_key=KEY, base_url=sim.http_url, max_retries=0)
        reference = await anyio.to_thread.run_sync(
            lambda: sdk.realtime.client_secrets.create(
                session=session, expires_after={"anchor": "created_at", "seconds": 120}  # type: ignore[arg-type]
            )
        )
        assert reference.expires_at == secret.expires_at
        assert reference.session is not None
        assert reference.session.model_dump(exclude_none=True)["instructions"] == "Be brief."
        assert set(secret.session) == set(reference.session.model_dump(exclude_unset=True))

        # A secret opens several sessions, each carrying its config, until it expires.
        for _ in range(2):
            (created,) = await first_events(sim.url, secret.value)
            assert isinstance(created, SessionCreatedEvent)
            assert created.session["instructions"] == "Be brief."
        clock.advance(121)
        with pytest.raises(AuthenticationError) as refused:
            await first_events(sim.url, secret.value, count=2)
        assert (refused.value.code, refused.value.reason) == (
            3000, "invalid_request_error.invalid_api_key")


async def test_an_unknown_token_is_refused_like_a_bad_key() -> None:
    async with Simulator(api_keys={KEY}) as sim:
        async with realtalk.connect(sim.url, api_key="ek_never_minted") as conn:
            with anyio.fail_after(10):
                error = await conn.recv()
                with pytest.raises(AuthenticationError) as refused:
                    await conn.recv()
        assert isinstance(error, ErrorEvent) and error.error["code"] == "invalid_api_key"
        assert refused.value.code == 3000


async def test_beta_secret_from_the_sessions_endpoint() -> None:
    clock = VirtualClock()
    async with Simulator(api_keys={KEY}, clock=clock) as sim:
        secret = await create_client_secret(
            api_key=KEY, protocol="beta", base_url=sim.http_url, expires_after_s=60,
            session={"model": "gpt-4o-realtime-preview", "modalities": ["text"],
                     "instructions": "Hi."},
        )
        assert secret.protocol == "beta" and secret.value.startswith("ek_")
        assert secret.expires_at == int(clock.time()) + 60
        assert secret.session["modalities"] == ["text"]
        assert "client_secret" not in secret.session
        (created,) = await first_events(f"{sim.url}?model=gpt-4o-realtime-preview",
                                        secret.value, protocol="beta")
        assert isinstance(created, SessionCreatedEvent)
        assert created.session["instructions"] == "Hi."


async def test_server_refusals_carry_the_servers_code_and_message() -> None:
    async with Simulator(api_keys={KEY}) as sim:
        with pytest.raises(APIError) as wrong_key:
            await create_client_secret(api_key="sk-wrong-wrong", base_url=sim.http_url)
        assert wrong_key.value.status == 401
        assert wrong_key.value.code == "invalid_api_key"
        assert wrong_key.value.message.startswith("Incorrect API key provided")

        with pytest.raises(APIError) as too_short:
            await create_client_secret(api_key=KEY, base_url=sim.http_url, expires_after_s=5)
        assert too_short.value.status == 400
        assert too_short.value.code == "integer_below_min_value"
        assert too_short.value.param == "expires_after.seconds"

        with pytest.raises(APIError) as bad_model:
            await create_client_secret(api_key=KEY, base_url=sim.http_url,
                                       session={"model": "gpt-4-turbo"})
        assert (bad_model.value.status, bad_model.value.param) == (400, "session.model")


async def test_a_body_without_an_error_object_still_raises_with_the_status() -> None:
    async def http(request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse.text("upstream exploded", 502)

    async def ws_handler(ws: Any) -> None:
        pass

    async with WebSocketServer(ws_handler, http_handler=http) as server:
        with pytest.raises(APIError) as failed:
            await create_client_secret(api_key=KEY, base_url=f"http://127.0.0.1:{server.port}/v1")
    assert failed.value.status == 502 and failed.value.code is None
    assert "upstream exploded" in str(failed.value)


async def test_timeouts_and_unreachable_servers() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def silent(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, silent)
        with pytest.raises(Timeout):
            await create_client_secret(api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1",
                                       timeout=0.3)
        tg.cancel_scope.cancel()
    await listener.aclose()
    with pytest.raises(ConnectError):
        await create_client_secret(api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1")


async def test_bad_arguments_fail_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="no API key"):
        await create_client_secret(base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="protocol"):
        await create_client_secret(api_key=KEY, protocol="v2")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await create_client_secret(api_key=KEY, expires_after_s=1.5)  # type: ignore[arg-type]
