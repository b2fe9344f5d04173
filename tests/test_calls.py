"""SIP call control (realtalk.calls) and the call's sideband (RealtimeClient(call_id=...)) end
to end against the simulator's call endpoints, with the openai package as the oracle of what
the endpoints take, on asyncio and trio."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import openai
import pytest
import realtalk
from realtalk import RealtimeClient
from realtalk.calls import accept, hangup, refer, reject, sideband_url
from realtalk.errors import APIError, ConnectError, ConnectionClosed, InvalidRequestError
from realtalk.simulator import Simulator
from realtalk.simulator._calls import CALL_ENDED_CODE, CALL_ENDED_REASON

KEY = "sk-call-control-0123456789"


async def until(predicate: Any, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


async def test_accept_opens_the_sideband_with_the_accepted_session() -> None:
    async with Simulator(api_keys={KEY}) as sim:
        call_id = sim.incoming_call()
        assert sim.call(call_id).state == "ringing"
        session = {"instructions": "You answer the phone.", "output_modalities": ["text"]}
        await accept(call_id, session=session, api_key=KEY, base_url=sim.http_url)
        assert sim.call(call_id).state == "accepted"

        async with RealtimeClient(sim.url, api_key=KEY, call_id=call_id) as client:
            await until(lambda: client.session.get("instructions") is not None)
            assert client.session["instructions"] == "You answer the phone."
            assert client.session["output_modalities"] == ["text"]
            assert len(sim.call(call_id).sidebands) == 1
            # The session works over the sideband.
            await client.send_user_message_content([{"type": "input_text", "text": "Hello?"}])
            await client.create_response()
            with anyio.fail_after(10):
                await client.wait_for_response_done()
            assert any(item.role == "assistant" for item in client.conversation.items)

            # hangup ends the call and closes the sideband with the documented code.
            await hangup(call_id, api_key=KEY, base_url=sim.http_url)
            await until(lambda: not client.connected)
        assert sim.call(call_id).state == "ended"
        assert not sim.call(call_id).sidebands


async def test_the_openai_package_drives_the_same_endpoints() -> None:
    async with Simulator(api_keys={KEY}) as sim:
        sdk = openai.AsyncOpenAI(api_key=KEY, base_url=sim.http_url, max_retries=0)
        first = sim.incoming_call()
        await sdk.realtime.calls.accept(first, type="realtime", instructions="Be brief.")
        assert sim.call(first).config["instructions"] == "Be brief."
        await sdk.realtime.calls.refer(first, target_uri="tel:+14155550123")
        await refer(first, "sip:agent@example.com", api_key=KEY, base_url=sim.http_url)
        assert sim.call(first).referred_to == ["tel:+14155550123", "sip:agent@example.com"]
        await sdk.realtime.calls.hangup(first)
        assert sim.call(first).state == "ended"

        second = sim.incoming_call()
        await sdk.realtime.calls.reject(second, status_code=486)
        assert (sim.call(second).state, sim.call(second).rejected_with) == ("rejected", 486)
        third = sim.incoming_call()
        await reject(third, api_key=KEY, base_url=sim.http_url)
        assert sim.call(third).rejected_with == 603  # the documented default

        # The SDK and realtalk see the same refusal for an unknown call.
        with pytest.raises(openai.NotFoundError):
            await sdk.realtime.calls.hangup("rtc_nope")
        with pytest.raises(APIError) as refused:
            await hangup("rtc_nope", api_key=KEY, base_url=sim.http_url)
        assert refused.value.status == 404 and refused.value.code == "call_not_found"
        await sdk.close()


async def test_refusals_are_clear_and_hangup_closes_a_raw_sideband() -> None:
    async with Simulator(api_keys={KEY}) as sim:
        call_id = sim.incoming_call()
        # Not accepted yet: the sideband is refused, and the client does not retry it.
        with pytest.raises(InvalidRequestError, match="invalid_call_state"):
            async with RealtimeClient(sim.url, api_key=KEY, call_id=call_id):
                pass
        with pytest.raises(APIError) as bad_status:
            await reject(call_id, status_code=200, api_key=KEY, base_url=sim.http_url)
        assert bad_status.value.status == 400 and bad_status.value.param == "status_code"
        with pytest.raises(APIError) as not_active:
            await refer(call_id, "tel:+1", api_key=KEY, base_url=sim.http_url)
        assert not_active.value.code == "invalid_call_state"
        with pytest.raises(APIError) as bad_session:
            await accept(call_id, session={"voice": 7}, api_key=KEY, base_url=sim.http_url)
        assert bad_session.value.status == 400 and bad_session.value.param == "voice"
        with pytest.raises(APIError) as wrong_key:
            await accept(call_id, api_key="sk-wrong-key-000", base_url=sim.http_url)
        assert wrong_key.value.status == 401
        assert sim.call(call_id).state == "ringing"  # none of that changed the call

        await accept(call_id, api_key=KEY, base_url=sim.http_url)
        with pytest.raises(APIError, match="accepted"):
            await accept(call_id, api_key=KEY, base_url=sim.http_url)

        # A raw sideband sees the close code and reason when the call ends.
        async with realtalk.connect(sideband_url(sim.url, call_id), api_key=KEY) as conn:
            created = await conn.recv()
            assert created.type == "session.created"
            await hangup(call_id, api_key=KEY, base_url=sim.http_url)
            with pytest.raises(ConnectionClosed) as closed, anyio.fail_after(5):
                while True:
                    await conn.recv()
        assert (closed.value.code, closed.value.reason) == (CALL_ENDED_CODE, CALL_ENDED_REASON)
        with pytest.raises(APIError, match="ended"):
            await hangup(call_id, api_key=KEY, base_url=sim.http_url)


async def test_bad_arguments_fail_before_any_request() -> None:
    assert realtalk.calls.hangup is hangup  # reached through the package, imported lazily
    with pytest.raises(ValueError, match="call_id"):
        await hangup("", api_key=KEY, base_url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="API key"):
        await hangup("rtc_1", api_key="", base_url="http://127.0.0.1:9")
    with pytest.raises(TypeError, match="status_code"):
        await reject("rtc_1", status_code="486", api_key=KEY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="target_uri"):
        await refer("rtc_1", "", api_key=KEY)
    with pytest.raises(ValueError, match="call_id"):
        RealtimeClient(call_id=" ")
    with pytest.raises(ValueError, match="model"):
        RealtimeClient("ws://127.0.0.1:9/v1/realtime?model=gpt-realtime", call_id="rtc_1")
    # The call id is one path segment and one query value, whatever it contains.
    assert sideband_url(None, "rtc_a/b&c") == "wss://api.openai.com/v1/realtime?call_id=rtc_a%2Fb%26c"
    with pytest.raises(ConnectError):
        await hangup("rtc_1", api_key=KEY, base_url="http://127.0.0.1:9")


async def test_the_call_id_is_escaped_in_the_path() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        await hangup("rtc_a/../b", api_key=KEY, base_url="http://sim/v1", http_client=http)
    assert seen == ["/v1/realtime/calls/rtc_a%2F..%2Fb/hangup"]
