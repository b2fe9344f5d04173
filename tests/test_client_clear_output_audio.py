"""``clear_output_audio()`` (issue 23): ``output_audio_buffer.clear`` exists only on WebRTC and
SIP calls (protocol.md §1.4, client event 11), so a WebSocket session refuses it before anything
is sent, and a call's sideband connection sends it. Against the simulator on asyncio and trio.

Oracle: the raw wire (``realtime.event``) and the simulator, which refuses the event on a
WebSocket session as the live server does and answers ``output_audio_buffer.cleared`` with the
response's id on a call's sideband (protocol.md §5)."""

from __future__ import annotations

from typing import Any

import pytest

from client_helpers import Recorder, until

from realtalk.calls import accept
from realtalk.client import RealtimeClient
from realtalk.simulator import Simulator
from realtalk.simulator.responder import Delay, Text


@pytest.mark.parametrize("protocol", ["ga", "beta"])
async def test_a_websocket_session_refuses_before_sending(protocol: str) -> None:
    async with Simulator() as sim, RealtimeClient(sim.url, api_key="sk-test",
                                                  protocol=protocol) as client:
        recorder = Recorder(client)
        with pytest.raises(RuntimeError, match="needs a WebRTC or SIP call's sideband"):
            await client.clear_output_audio()
        # What the client spared us: the server's refusal of the event on a WebSocket.
        await client.send({"type": "output_audio_buffer.clear"})
        await until(lambda: recorder.errors())
        (error,) = recorder.errors()
        # GA lists the event types it takes (this is not one); beta names WebRTC and SIP.
        assert error["code"] == "invalid_value"
        assert "output_audio_buffer.clear" in error["message"]
        assert [e["type"] for e in recorder.wire("client")] == ["output_audio_buffer.clear"]


def slow_responder(ctx: Any) -> list[Any]:
    return [Delay(2.0), Text("Once upon a time.")]  # still running when the test clears


async def test_a_call_sideband_sends_it_after_cancelling_the_response() -> None:
    async with Simulator(responder=slow_responder) as sim:
        call_id = sim.incoming_call()
        await accept(call_id, session={"output_modalities": ["text"]}, api_key="sk-test",
                     base_url=sim.http_url)
        async with RealtimeClient(sim.url, api_key="sk-test", call_id=call_id,
                                  reconnect=False) as client:
            recorder = Recorder(client)
            await client.send_user_message_content("tell me a long story")
            response_id = await client.create_response()
            before = len(recorder.wire("client"))
            await client.clear_output_audio()
            await until(lambda: recorder.wire("server", "output_audio_buffer.cleared"))
            assert [e["type"] for e in recorder.wire("client")[before:]] == [
                "response.cancel", "output_audio_buffer.clear"]
            # The call's audio was the response's: the server says it cleared that one.
            (cleared,) = recorder.wire("server", "output_audio_buffer.cleared")
            assert cleared["response_id"] == response_id
            assert recorder.errors() == []
