"""A RealtimeClient survives what a hostile server and a flaky network send (issue 16):
malformed frames, refused follow-ups, absurd tool arguments. Real simulator, with a hostile
link (tests/hostile.py) in between; on asyncio and trio."""

from __future__ import annotations

import json
import math
from typing import Any

import anyio
import pytest
from hostile import HostileNetwork

from realtalk.client import Notification, RealtimeClient
from realtalk.simulator import Simulator
from realtalk.simulator.responder import FunctionCall, ResponseContext, Text
from realtalk.tools import ToolRegistry

from client_helpers import Recorder, until

TEXT_ONLY = {"output_modalities": ["text"]}


def audio_delta(**fields: Any) -> dict[str, Any]:
    event = {"type": "response.output_audio.delta", "event_id": "event_x",
             "response_id": "resp_x", "item_id": "item_x", "output_index": 0,
             "content_index": 0, "delta": "AAAA"}
    event.update(fields)
    return {k: v for k, v in event.items() if v is not None}


def _without(event: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != key}


# Each frame the issue lists; every one of them ended the client on main.
MALFORMED_FRAMES = {
    "audio delta with invalid base64": json.dumps(audio_delta(delta="!!not base64!!")).encode(),
    "audio delta with an odd byte count": json.dumps(audio_delta(delta="AAAA")).encode(),
    "audio delta without item_id": json.dumps(_without(audio_delta(), "item_id")).encode(),
    "audio delta with a string content_index": json.dumps(audio_delta(content_index="0")).encode(),
    "text delta without item_id": json.dumps(
        {"type": "response.output_text.delta", "event_id": "e", "response_id": "r",
         "output_index": 0, "content_index": 0, "delta": "hi"}).encode(),
    "truncated JSON": b'{"type": "response.output_text.delta", "ev',
    "invalid UTF-8": b'{"type": "response.output_text.delta", "delta": "\xff\xfe"}',
    "JSON nested 2,000 deep": b'{"type": "x", "a": ' + b"[" * 2000 + b"]" * 2000 + b"}",
    "a list nested 2,000 deep": b"[" * 2000 + b"]" * 2000,
    "a JSON number": b"42",
    "an error whose error is a string": b'{"type": "error", "event_id": "e", "error": "bad"}',
    "a session.updated whose session is a list": json.dumps(
        {"type": "session.updated", "event_id": "e", "session": [1, 2]}).encode(),
}


@pytest.mark.parametrize("frame", MALFORMED_FRAMES.values(), ids=MALFORMED_FRAMES.keys())
async def test_a_malformed_server_frame_costs_one_event_not_the_session(frame: bytes) -> None:
    async with Simulator() as sim:
        network = HostileNetwork(sim.url)
        async with RealtimeClient(connect=network, session=TEXT_ONLY,
                                  backoff_initial_s=0.01) as client:
            recorder = Recorder(client)
            network.link.inject(frame)
            await until(lambda: recorder.errors("invalid_server_event"))
            (error,) = recorder.errors("invalid_server_event")
            assert error["bytes"] == len(frame) and error["reason"]
            assert client.metrics.invalid_server_events == 1
            # The same connection goes on: a whole text turn, no reconnect.
            await client.send_user_message_content("still there?")
            await client.create_response()
            await client.wait_for_response_done(5)
            assert client.conversation.items[-1].role == "assistant"
            assert client.conversation.items[-1].text
            assert len(network.links) == 1 and client.metrics.reconnects == 0
            assert "connection.lost" not in recorder.names()
            assert [e for e in recorder.errors() if e.get("code") != "invalid_server_event"] == []


async def test_a_binary_frame_is_reported_and_ignored() -> None:
    async with Simulator() as sim:
        network = HostileNetwork(sim.url)
        async with RealtimeClient(connect=network, session=TEXT_ONLY) as client:
            recorder = Recorder(client)
            network.link.inject(b"\x00\x01", is_text=False)
            await until(lambda: recorder.errors("binary_frame"))
            await client.send_user_message_content("hello")
            await client.create_response()
            await client.wait_for_response_done(5)
            assert len(network.links) == 1


async def test_malformed_frames_while_a_listener_watches_the_wire() -> None:
    # A realtime.event listener makes the client decode every frame once more for it.
    async with Simulator() as sim:
        network = HostileNetwork(sim.url)
        async with RealtimeClient(connect=network, session=TEXT_ONLY) as client:
            recorder = Recorder(client)
            for frame in MALFORMED_FRAMES.values():
                network.link.inject(frame)
            await until(lambda: len(recorder.errors("invalid_server_event"))
                        == len(MALFORMED_FRAMES))
            assert client.metrics.invalid_server_events == len(MALFORMED_FRAMES)
            seen = [e["event"] for e in recorder.events if e.type == "realtime.event"
                    and e["source"] == "server" and isinstance(e["event"], dict)
                    and e["event"].get("raw") is not None]
            assert len(seen) >= 3  # the undecodable ones reach the listener as raw bytes
            await client.send_user_message_content("and now?")
            await client.create_response()
            await client.wait_for_response_done(5)
            assert len(network.links) == 1


# ---- finding 2: a refused follow-up after tool calls ----


def tool_then_text(ctx: ResponseContext) -> Any:
    if any(i.get("type") == "function_call_output" for i in ctx.items):
        return Text("the tool said so")
    return [FunctionCall("lookup", {"q": "x"}, call_id="call_1")]


async def test_a_refused_follow_up_after_tools_is_an_error_event_not_a_crash() -> None:
    async with Simulator(responder=tool_then_text) as sim:
        network = HostileNetwork(sim.url)
        async with RealtimeClient(connect=network, session=TEXT_ONLY) as client:
            recorder = Recorder(client)
            await client.add_tool({"name": "lookup"}, lambda args: {"found": True})
            link = network.link
            real_send = link.send_text

            async def refusing_send(message: str | bytes) -> None:
                event = json.loads(message)
                if event.get("type") == "response.create" and refused == []:
                    refused.append(event["event_id"])
                    # The server refuses it (as a rate limit does) instead of starting it.
                    link.inject({"type": "error", "event_id": "event_srv",
                                 "error": {"type": "invalid_request_error",
                                           "code": "rate_limit_exceeded",
                                           "message": "Rate limit reached",
                                           "event_id": event["event_id"]}})
                    return
                await real_send(message)

            refused: list[str] = []
            await client.send_user_message_content("look it up")
            await client.create_response()
            link.send_text = refusing_send  # type: ignore[method-assign]
            await until(lambda: recorder.errors("followup_refused"))
            (error,) = recorder.errors("followup_refused")
            assert error["server_code"] == "rate_limit_exceeded"
            assert error["call_ids"] == ["call_1"]
            # The tool output stays in the conversation; the user decides what comes next.
            await until(lambda: any(i.type == "function_call_output"
                                    for i in client.conversation.items))
            assert not client.response_active
            link.send_text = real_send  # type: ignore[method-assign]
            await client.create_response()
            await client.wait_for_response_done(5)
            assert client.conversation.items[-1].text == "the tool said so"
            assert len(network.links) == 1


async def test_a_rate_limited_follow_up_is_retried_after_the_reset_when_asked() -> None:
    async with Simulator(responder=tool_then_text) as sim:
        network = HostileNetwork(sim.url)
        async with RealtimeClient(connect=network, session=TEXT_ONLY,
                                  retry_rate_limited_s=1.0) as client:
            recorder = Recorder(client)
            await client.add_tool({"name": "lookup"}, lambda args: {"found": True})
            link = network.link
            real_send = link.send_text
            refused: list[float] = []
            retried_at: list[float] = []

            async def refusing_send(message: str | bytes) -> None:
                event = json.loads(message)
                if event.get("type") == "response.create" and refused:
                    retried_at.append(anyio.current_time())
                if event.get("type") == "response.create" and not refused:
                    refused.append(anyio.current_time())
                    link.inject({"type": "rate_limits.updated", "event_id": "event_rl",
                                 "rate_limits": [{"name": "requests", "limit": 10,
                                                  "remaining": 0, "reset_seconds": 0.2}]})
                    link.inject({"type": "error", "event_id": "event_srv",
                                 "error": {"type": "invalid_request_error",
                                           "code": "rate_limit_exceeded",
                                           "message": "Rate limit reached",
                                           "event_id": event["event_id"]}})
                    return
                await real_send(message)

            await client.send_user_message_content("look it up")
            await client.create_response()
            link.send_text = refusing_send  # type: ignore[method-assign]
            await until(lambda: any(i.role == "assistant" and i.text == "the tool said so"
                                    for i in client.conversation.items))
            retried = recorder.errors("followup_refused")
            assert retried and retried[0]["retry_in_s"] == pytest.approx(0.2)
            # The user's request, the refused follow-up, and its one retry after the reset.
            assert len(recorder.wire("client", "response.create")) == 3
            assert len(retried_at) == 1 and retried_at[0] - refused[0] >= 0.2


# ---- finding 3: tool arguments the model controls ----


async def test_tool_arguments_nested_1500_deep_become_an_error_output() -> None:
    registry = ToolRegistry()
    registry.add({"name": "echo"}, lambda args: args)
    deep = '{"a": ' + "[" * 1500 + "]" * 1500 + "}"
    result = await registry.call("echo", deep)
    assert not result.ok
    assert "error" in json.loads(result.output)


async def test_tool_arguments_nested_deep_against_a_recursive_schema() -> None:
    registry = ToolRegistry()
    schema = {"type": "object", "properties": {"a": {"$ref": "#/$defs/tree"}},
              "$defs": {"tree": {"type": "array", "items": {"$ref": "#/$defs/tree"}}}}
    registry.add({"name": "tree", "parameters": schema}, lambda args: "ok")
    deep = '{"a": ' + "[" * 900 + "]" * 900 + "}"
    result = await registry.call("tree", deep)
    assert "error" in json.loads(result.output) or result.output == "ok"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
async def test_tool_outputs_with_nan_or_infinity_are_refused_as_valid_json(value: float) -> None:
    registry = ToolRegistry()
    registry.add({"name": "measure"}, lambda args: {"reading": value})
    result = await registry.call("measure", "{}")
    assert not result.ok
    parsed = json.loads(result.output, parse_constant=lambda name: pytest.fail(name))
    assert "error" in parsed


async def test_a_handler_returning_a_self_referencing_value_gets_an_error_output() -> None:
    registry = ToolRegistry()
    loop: list[Any] = []
    loop.append(loop)
    registry.add({"name": "loop"}, lambda args: loop)
    result = await registry.call("loop", "{}")
    assert not result.ok and "error" in json.loads(result.output)


def deep_arguments_call(ctx: ResponseContext) -> Any:
    if any(i.get("type") == "function_call_output" for i in ctx.items):
        return Text("done")
    return [FunctionCall("echo", '{"a": ' + "[" * 1500 + "]" * 1500 + "}", call_id="call_deep")]


async def test_deep_tool_arguments_from_the_model_do_not_kill_the_client() -> None:
    async with Simulator(responder=deep_arguments_call) as sim, RealtimeClient(
            sim.url, api_key="sk-test", session=TEXT_ONLY) as client:
        recorder = Recorder(client)
        await client.add_tool({"name": "echo"}, lambda args: args)
        await client.send_user_message_content("go deep")
        await client.create_response()
        await until(lambda: any(i.role == "assistant" and i.text == "done"
                                for i in client.conversation.items))
        (output,) = [i for i in client.conversation.items if i.type == "function_call_output"]
        assert "error" in json.loads(output.output or "")
        assert recorder.errors("tool_failed")


# ---- finding 5: a device thread never waits for the event loop ----


def tone(ms: int, rate: int = 24000) -> Any:
    import numpy as np

    t = np.arange(rate * ms // 1000) / rate
    return (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)


class DeviceThread:
    """A sound card's callback thread: ``frames`` appends, one every ``period_s``, each timed."""

    def __init__(self, client: RealtimeClient, frames: int, period_s: float) -> None:
        import threading

        self.client = client
        self.frames = frames
        self.period_s = period_s
        self.durations: list[float] = []
        self.accepted = 0
        self.refused = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        import time

        from realtalk.client import InputBackpressure

        frame = tone(20)
        for _ in range(self.frames):
            started = time.perf_counter()
            try:
                self.client.append_input_audio(frame)
                self.accepted += 1
            except InputBackpressure:
                self.refused += 1
            self.durations.append(time.perf_counter() - started)
            time.sleep(self.period_s)

    async def join(self) -> None:
        await until(lambda: not self.thread.is_alive(), timeout=10)


NO_TURNS = {"audio": {"input": {"turn_detection": None}}, **TEXT_ONLY}


async def test_append_from_a_device_thread_never_waits_for_a_stalled_loop() -> None:
    import time

    async with Simulator() as sim, RealtimeClient(sim.url, api_key="sk-test",
                                                  session=NO_TURNS) as client:
        recorder = Recorder(client)
        device = DeviceThread(client, frames=100, period_s=0.003)
        device.thread.start()
        await anyio.sleep(0.02)
        time.sleep(0.2)  # the event loop is busy (a blocking call) for 200 ms
        await device.join()
        # On main every append during the stall waited for the loop: ~200 ms.
        assert max(device.durations) < 0.02
        assert device.accepted == 100 and client.metrics.input_frames_refused == 0
        await client.commit_input_audio()
        await until(lambda: recorder.wire("server", "input_audio_buffer.committed"))
        assert len(recorder.wire("client", "input_audio_buffer.append")) == 100
        assert recorder.errors() == []


async def test_a_full_hand_off_drops_and_counts_without_waiting() -> None:
    async with Simulator() as sim, RealtimeClient(sim.url, api_key="sk-test", session=NO_TURNS,
                                                  uplink_queue_frames=4) as client:
        recorder = Recorder(client)
        device = DeviceThread(client, frames=10, period_s=0.001)
        device.thread.start()
        # The loop is stalled for the whole burst: it waits for the device thread, which
        # must never need the loop (on main the two waited for each other until the timeout).
        device.thread.join(timeout=2)
        assert not device.thread.is_alive()
        await device.join()
        assert max(device.durations) < 0.02
        assert (device.accepted, device.refused) == (4, 6)
        assert client.metrics.input_frames_refused == 6
        await client.commit_input_audio()  # the 4 handed-over frames go first (80 ms < 100)
        await until(lambda: len(recorder.wire("client", "input_audio_buffer.append")) == 4)
        assert [error["code"] for error in recorder.errors()] == [
            "input_audio_buffer_commit_empty"]


async def test_frames_handed_over_before_a_commit_are_sent_before_it() -> None:
    import time

    async with Simulator() as sim, RealtimeClient(sim.url, api_key="sk-test",
                                                  session=NO_TURNS) as client:
        recorder = Recorder(client)
        device = DeviceThread(client, frames=10, period_s=0.0)
        device.thread.start()
        device.thread.join()  # the loop has not run since: all 10 wait in the hand-off
        time.sleep(0.001)
        await client.commit_input_audio()
        await until(lambda: recorder.wire("server", "input_audio_buffer.committed"))
        sent = [e["event"]["type"] for e in recorder.events if e.type == "realtime.event"
                and e["source"] == "client" and e["event"]["type"] != "session.update"]
        assert sent == ["input_audio_buffer.append"] * 10 + ["input_audio_buffer.commit"]


async def _wire_audio_of(frames: list[tuple[Any, int | None]], *, from_thread: bool) -> bytes:
    """The pcm16 a client sends for ``frames`` appended from a device thread or the loop."""
    import base64
    import threading

    async with Simulator() as sim, RealtimeClient(sim.url, api_key="sk-test", session=NO_TURNS,
                                                  input_rate=48000) as client:
        recorder = Recorder(client)

        def append_all() -> None:
            for samples, rate in frames:
                client.append_input_audio(samples, rate)

        if from_thread:
            worker = threading.Thread(target=append_all)
            worker.start()
            await until(lambda: not worker.is_alive())
        else:
            append_all()
        await client.commit_input_audio()
        await until(lambda: recorder.wire("server", "input_audio_buffer.committed"))
        return b"".join(base64.b64decode(event["audio"])
                        for event in recorder.wire("client", "input_audio_buffer.append"))


async def test_frames_of_every_kind_from_a_device_thread_keep_their_order_and_content() -> None:
    # The Rust hand-off takes float32/int16 arrays as they are; everything else (other
    # dtypes, non-contiguous, lists, other rates) is converted first: one queue, one order.
    import numpy as np

    stereo = np.stack([tone(20, 48000), -tone(20, 48000)], axis=1)
    frames: list[tuple[Any, int | None]] = [
        (tone(20, 48000), None),
        ((tone(20, 48000) * 32767).astype(np.int16), None),
        (tone(20, 48000).astype(np.float64), None),
        (stereo, None),
        (np.asfortranarray(stereo), None),
        (tone(40, 48000)[::2], None),
        (tone(20, 16000), 16000),
        (tone(20, 48000).tolist(), None),
        (tone(20, 48000), None),
    ]
    from_thread = await _wire_audio_of(frames, from_thread=True)
    in_loop = await _wire_audio_of(frames, from_thread=False)
    assert len(from_thread) > 0.1 * 24000 * 2
    assert from_thread == in_loop, "the hand-off changed or reordered the audio"


async def test_a_device_thread_frame_larger_than_the_hand_off_is_refused_clearly() -> None:
    import threading

    import numpy as np

    async with Simulator() as sim, RealtimeClient(sim.url, api_key="sk-test", session=NO_TURNS,
                                                  uplink_queue_frames=1) as client:
        errors: list[BaseException] = []
        huge = np.zeros(client._handoff.arena_bytes // 4 + 1, np.float32)

        def append() -> None:
            try:
                client.append_input_audio(huge)
            except ValueError as exc:
                errors.append(exc)

        worker = threading.Thread(target=append)
        worker.start()
        await until(lambda: not worker.is_alive())
        assert len(errors) == 1 and "append it in pieces" in str(errors[0])
        client.append_input_audio(huge)  # the loop's own thread has no such limit
    errors.clear()
    worker = threading.Thread(target=lambda: errors.append(
        pytest.raises(RuntimeError, client.append_input_audio, tone(10)).value))
    worker.start()
    worker.join()
    assert "not running" in str(errors[0]), "after the client closed"


def test_the_notification_type_no_longer_clashes_with_the_wire_events() -> None:
    import realtalk
    import realtalk.events

    assert realtalk.Notification is Notification
    assert realtalk.ClientEvent is Notification  # the old name, kept for old code
    assert realtalk.Notification is not realtalk.events.ClientEvent
