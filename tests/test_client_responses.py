"""Responses and tool turns (realtalk._responses), without a server: the one-at-a-time slot,
which finished responses carry tool calls, the rate-limit wait, and the tool turn's follow-up
(protocol.md: response.create / response.created / response.done, error, rate_limits)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import anyio
import pytest

from realtalk._responses import (
    ResponseBusy,
    ResponseRefused,
    ResponseSlot,
    function_calls,
    is_out_of_band,
    rate_limit_wait,
    run_tool_calls,
)
from realtalk.errors import Timeout
from realtalk.tools import ToolRegistry

pytestmark = pytest.mark.anyio


class Wire:
    """Records what the slot sends and answers each event with a fresh event id."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_event(self, event: Mapping[str, Any]) -> str:
        self.sent.append(dict(event))
        return f"evt_{len(self.sent)}"


async def test_create_waits_for_response_created_and_returns_its_id() -> None:
    slot, wire = ResponseSlot(), Wire()
    result: list[str | None] = []

    async def ask() -> None:
        result.append(await slot.create(wire.send_event, {"instructions": "hi"}, wait=True))

    async with anyio.create_task_group() as tg:
        tg.start_soon(ask)
        await anyio.wait_all_tasks_blocked()
        assert wire.sent == [{"type": "response.create", "response": {"instructions": "hi"}}]
        assert slot.requested and slot.request_event_id == "evt_1"
        slot.started("resp_1")
    assert result == ["resp_1"]
    assert slot.state == "active" and slot.response_id == "resp_1"
    assert slot.owns_done("resp_1") and slot.owns_done(None) and not slot.owns_done("resp_0")
    slot.finish()
    assert not slot.busy and slot.response_id is None


async def test_one_at_a_time_second_create_waits_or_is_busy() -> None:
    slot, wire = ResponseSlot(), Wire()
    slot.started("resp_server_vad")  # the server's own turn holds the slot
    with pytest.raises(ResponseBusy):
        await slot.create(wire.send_event, {}, wait=False)
    assert wire.sent == []
    ids: list[str | None] = []

    async def ask() -> None:
        ids.append(await slot.create(wire.send_event, {}, wait=True))

    async with anyio.create_task_group() as tg:
        tg.start_soon(ask)
        await anyio.wait_all_tasks_blocked()
        assert wire.sent == []  # nothing goes out while the other response runs
        slot.finish()
        await anyio.wait_all_tasks_blocked()
        assert wire.sent == [{"type": "response.create"}]
        slot.started("resp_2")
    assert ids == ["resp_2"]


async def test_a_refusal_naming_our_request_raises_and_frees_the_slot() -> None:
    slot, wire = ResponseSlot(), Wire()
    error = {"type": "invalid_request_error", "code": "invalid_value", "message": "bad voice",
             "param": "response.voice", "event_id": "evt_1"}

    async def refuse() -> None:
        await anyio.wait_all_tasks_blocked()
        slot.on_error({**error, "event_id": "evt_other"})  # someone else's error: ignored
        assert slot.requested
        slot.on_error(error)

    async with anyio.create_task_group() as tg:
        tg.start_soon(refuse)
        with pytest.raises(ResponseRefused) as refused:
            await slot.create(wire.send_event, {"voice": "nobody"}, wait=True)
    assert refused.value.error == error
    assert not slot.busy


async def test_losing_the_race_to_the_servers_own_response_is_benign() -> None:
    slot, wire = ResponseSlot(), Wire()

    async def race() -> None:
        await anyio.wait_all_tasks_blocked()
        slot.on_error({"type": "invalid_request_error", "event_id": "evt_1",
                       "code": "conversation_already_has_active_response"})

    async with anyio.create_task_group() as tg:
        tg.start_soon(race)
        assert await slot.create(wire.send_event, {}, wait=True) is None
    assert slot.state == "active"  # the server's response is the active one now


async def test_before_request_runs_inside_the_slot_right_before_the_create() -> None:
    slot, wire = ResponseSlot(), Wire()

    async def commit() -> None:
        await wire.send_event({"type": "input_audio_buffer.commit"})

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: slot.create(wire.send_event, {}, wait=True, before_request=commit))
        await anyio.wait_all_tasks_blocked()
        slot.finish()  # a lost connection releases the caller with no id
    assert [e["type"] for e in wire.sent] == ["input_audio_buffer.commit", "response.create"]
    assert slot.request_event_id == "evt_2"


async def test_wait_idle_times_out_with_the_librarys_timeout() -> None:
    slot = ResponseSlot()
    await slot.wait_idle(0.01)  # idle: returns at once
    slot.started("resp_1")
    with pytest.raises(Timeout):
        await slot.wait_idle(0.01)


def test_function_calls_only_from_a_completed_response() -> None:
    call = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}",
            "status": "completed"}
    partial = {**call, "call_id": "c2", "status": "incomplete"}
    message = {"type": "message", "role": "assistant", "content": []}
    done = {"status": "completed", "output": [message, call, partial, "junk"]}
    assert function_calls(done) == [call]
    assert function_calls({**done, "status": "cancelled"}) == []
    assert function_calls({"status": "completed", "output": None}) == []
    assert is_out_of_band({"conversation_id": None})
    assert not is_out_of_band({"conversation_id": "conv_1"}) and not is_out_of_band({})


def test_rate_limit_wait_takes_the_latest_exhausted_reset_capped() -> None:
    limits = [{"name": "requests", "remaining": 0, "reset_seconds": 1.5},
              {"name": "tokens", "remaining": 0, "reset_seconds": 4.0},
              {"name": "other", "remaining": 9, "reset_seconds": 0.25}]
    assert rate_limit_wait(limits, 10.0) == 4.0
    assert rate_limit_wait(limits, 2.0) == 2.0
    assert rate_limit_wait(limits[2:], 10.0) == 0.25  # none exhausted: the soonest reset
    bad = [{"remaining": 0, "reset_seconds": float("nan")}, {"reset_seconds": -1},
           {"reset_seconds": "3"}]
    assert rate_limit_wait(bad, 7.0) == 7.0  # nothing usable: the cap


class Host:
    """A tool turn's client: records sends and errors; create_response answers from a script."""

    def __init__(self, answers: list[BaseException | str], retry: float | None) -> None:
        self.tools = ToolRegistry(timeout=5.0)
        self.retry_rate_limited_s = retry
        self._rate_limits: list[Mapping[str, Any]] = [
            {"name": "requests", "remaining": 0, "reset_seconds": 0.01}]
        self.sent: list[dict[str, Any]] = []
        self.errors: list[tuple[str, dict[str, Any]]] = []
        self.answers = answers
        self.creates = 0

    async def _send_event(self, event: Mapping[str, Any]) -> str | None:
        self.sent.append(dict(event))
        return None

    async def create_response(self) -> str | None:
        self.creates += 1
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def _local_error(self, code: str, message: str, **extra: Any) -> None:
        self.errors.append((code, {"message": message, **extra}))

    def _emit(self, name: str, data: Mapping[str, Any]) -> None:
        self.errors.append((name, dict(data)))


def _add_tools(host: Host) -> None:
    async def add(args: dict[str, int]) -> int:
        await anyio.sleep(0.01)
        return args["a"] + args["b"]

    def broken(args: dict[str, Any]) -> None:
        raise RuntimeError("no")

    host.tools.add({"type": "function", "name": "add", "parameters": {}}, add)
    host.tools.add({"type": "function", "name": "broken", "parameters": {}}, broken)


async def test_a_tool_turn_sends_every_output_then_asks_for_one_response() -> None:
    host = Host(["resp_2"], retry=None)
    _add_tools(host)
    calls = [{"type": "function_call", "name": "add", "call_id": "c1",
              "arguments": json.dumps({"a": 2, "b": 3})},
             {"type": "function_call", "name": "broken", "call_id": "c2", "arguments": "{}"}]
    durations: list[float] = []
    ids = iter(["item_a", "item_b"])
    await run_tool_calls(host, calls, durations, lambda: next(ids))
    outputs = {e["item"]["call_id"]: e["item"] for e in host.sent}
    assert all(e["type"] == "conversation.item.create" for e in host.sent)
    assert set(outputs) == {"c1", "c2"}
    assert json.loads(outputs["c1"]["output"]) == 5
    assert {item["id"] for item in outputs.values()} == {"item_a", "item_b"}
    assert all(item["type"] == "function_call_output" for item in outputs.values())
    assert host.creates == 1 and len(durations) == 2
    assert [(name, data["error"]["call_id"]) for name, data in host.errors] == [("error", "c2")]


async def test_a_rate_limited_follow_up_is_retried_once_after_the_reset() -> None:
    limited = ResponseRefused({"code": "rate_limit_exceeded", "message": "slow down"})
    host = Host([limited, limited], retry=1.0)
    await run_tool_calls(host, [], None, lambda: "unused")
    assert host.creates == 2  # the first try and the one retry, never a third
    codes = [(code, extra.get("retry_in_s")) for code, extra in host.errors]
    assert codes == [("followup_refused", 0.01), ("followup_refused", None)]


async def test_a_refused_follow_up_is_reported_not_retried_without_the_option() -> None:
    host = Host([ResponseRefused({"code": "rate_limit_exceeded"})], retry=None)
    await run_tool_calls(host, [], None, lambda: "unused")
    assert host.creates == 1
    assert [code for code, _ in host.errors] == ["followup_refused"]


async def test_a_follow_up_that_cannot_be_sent_is_one_local_error() -> None:
    from realtalk.errors import ConnectionClosed

    host = Host([ConnectionClosed(1006, "gone")], retry=None)
    await run_tool_calls(host, [], None, lambda: "unused")  # does not raise
    assert [code for code, _ in host.errors] == ["followup_failed"]
