"""Issue 16, finding 4: a user-level event written just before the connection drops reaches
the new session exactly once, or is reported lost; never silently gone. The real simulator
behind a hostile link that drops the connection right after a chosen write."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from hostile import HostileNetwork

from realtalk._delivery import DeliveryLedger
from realtalk.client import RealtimeClient
from realtalk.simulator import Simulator
from realtalk.simulator.responder import FunctionCall, ResponseContext, Text

from client_helpers import Recorder, until

TEXT_ONLY = {"output_modalities": ["text"]}


def sent(link: Any, kind: str) -> list[dict[str, Any]]:
    return [e for e in map(json.loads, link.sent) if e.get("type") == kind]


def describe_context(ctx: ResponseContext) -> Any:
    """The reply lists the session's items: what the server really holds."""
    def one(item: dict[str, Any]) -> str:
        text = (item.get("content") or [{}])[0].get("text")
        return f"{item['type']}:{text or item.get('output') or item.get('name') or ''}"

    if ctx.tools and not any(i.get("type") == "function_call" for i in ctx.items):
        return [FunctionCall("lookup", {"q": "x"}, call_id="call_1")]
    return Text(" / ".join(one(item) for item in ctx.items))


def user_item(event: dict[str, Any]) -> bool:
    return event.get("type") == "conversation.item.create" and (
        event["item"].get("role") == "user")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_message_written_just_before_a_drop_reaches_the_new_session_once() -> None:
    async with Simulator(responder=describe_context) as sim:
        network = HostileNetwork(sim.url)
        async with RealtimeClient(connect=network, session=TEXT_ONLY,
                                  backoff_initial_s=0.01) as client:
            recorder = Recorder(client)
            await client.send_user_message_content("first, confirmed")
            await until(lambda: len(client.conversation.items) == 1)
            network.swallow(user_item)
            item_id = await client.send_user_message_content("do not lose me")
            await until(lambda: "connection.restored" in recorder.names())
            await until(lambda: client.conversation.get(item_id) is not None)
            # On the new connection: the history (replayed under new ids), then this item
            # under its own id, exactly once.
            replays = [e for e in sent(network.link, "conversation.item.create")
                       if e["item"].get("id") == item_id]
            assert len(replays) == 1
            assert client.metrics.client_events_replayed == 1
            users = [i.text for i in client.conversation.items if i.role == "user"]
            assert users == ["first, confirmed", "do not lose me"]
            await client.create_response()
            await client.wait_for_response_done(5)
            assert client.conversation.items[-1].text == (
                "message:first, confirmed / message:do not lose me")
            assert recorder.errors("client_event_lost") == []


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_an_event_unconfirmed_after_its_one_replay_is_reported_lost() -> None:
    async with Simulator(responder=describe_context) as sim:
        network = HostileNetwork(sim.url)
        async with RealtimeClient(connect=network, session=TEXT_ONLY,
                                  backoff_initial_s=0.01) as client:
            recorder = Recorder(client)
            network.swallow(user_item, times=2)  # the write and its replay both vanish
            item_id = await client.send_user_message_content("unlucky")
            await until(lambda: recorder.errors("client_event_lost"))
            (lost,) = recorder.errors("client_event_lost")
            assert lost["item_id"] == item_id and lost["event_type"] == (
                "conversation.item.create")
            assert lost["event_id"].startswith("event_")
            assert client.metrics.client_events_lost == 1
            await until(lambda: client.connected)
            # Not replayed a third time; the session goes on without it.
            assert all(e["item"].get("id") != item_id
                       for e in sent(network.link, "conversation.item.create"))
            await client.send_user_message_content("next")
            await client.create_response()
            await client.wait_for_response_done(5)
            assert client.conversation.items[-1].text == "message:next"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_response_create_written_before_a_drop_is_replayed_for_its_caller() -> None:
    async with Simulator(responder=describe_context) as sim:
        network = HostileNetwork(sim.url)
        async with RealtimeClient(connect=network, session=TEXT_ONLY,
                                  backoff_initial_s=0.01) as client:
            recorder = Recorder(client)
            await client.send_user_message_content("answer me")
            await until(lambda: len(client.conversation.items) == 1)
            network.swallow(lambda e: e.get("type") == "response.create")
            response_id = await client.create_response()
            assert response_id is not None and response_id.startswith("resp_")
            await client.wait_for_response_done(5)
            assert client.conversation.items[-1].text == "message:answer me"
            assert len(sent(network.link, "response.create")) == 1
            assert len(network.links) == 2
            assert recorder.errors("response_lost") == []


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_tool_output_written_before_a_drop_follows_the_replayed_history() -> None:
    async with Simulator(responder=describe_context) as sim:
        network = HostileNetwork(sim.url)
        async with RealtimeClient(connect=network, session=TEXT_ONLY,
                                  backoff_initial_s=0.01) as client:
            recorder = Recorder(client)
            await client.add_tool({"name": "lookup"}, lambda args: "forty-two")
            network.swallow(lambda e: e.get("type") == "conversation.item.create"
                            and e["item"].get("type") == "function_call_output")
            await client.send_user_message_content("look it up")
            await client.create_response()
            await until(lambda: any(i.role == "assistant" and i.status == "completed"
                                    for i in client.conversation.items))
            reply = [i for i in client.conversation.items if i.role == "assistant"][-1]
            assert reply.text == ("message:look it up / function_call:lookup / "
                                  "function_call_output:forty-two")
            outputs = [i for i in client.conversation.items if i.type == "function_call_output"]
            assert len(outputs) == 1
            assert recorder.errors("client_event_lost") == []


async def test_a_duplicate_item_refusal_counts_as_confirmation() -> None:
    async with Simulator() as sim:
        network = HostileNetwork(sim.url)
        async with RealtimeClient(connect=network, session=TEXT_ONLY) as client:
            recorder = Recorder(client)
            # A client-chosen id the session already holds: the server refuses the second.
            item_id = await client.send_user_message_content("once")
            await until(lambda: client.conversation.get(item_id) is not None)
            await client.send({"type": "conversation.item.create",
                               "item": {"id": item_id, "type": "message", "role": "user",
                                        "content": [{"type": "input_text", "text": "twice"}]}})
            await until(lambda: recorder.errors())
            (error,) = [dict(e.data) for e in recorder.events if e.type == "error"]
            assert error["benign"] is True
            assert len(client._ledger) == 0


# ---- the ledger on its own ----


def item_create(event_id: str, item_id: str) -> dict[str, Any]:
    return {"type": "conversation.item.create", "event_id": event_id,
            "item": {"id": item_id, "type": "message", "role": "user", "content": []}}


def test_ledger_tracks_only_user_level_events() -> None:
    ledger = DeliveryLedger()
    assert ledger.record({"type": "input_audio_buffer.append", "event_id": "e0"}, b"a") is None
    assert ledger.record({"type": "response.cancel", "event_id": "e1"}, b"c") is None
    for kind in ("session.update", "response.create"):
        assert ledger.record({"type": kind, "event_id": kind}, kind.encode()) is not None
    assert ledger.record(item_create("e2", "item_a"), b"i") is not None
    assert len(ledger) == 3


def test_ledger_confirmations_by_echo_and_by_error() -> None:
    ledger = DeliveryLedger()
    messages = [b"0", b"1", b"2", b"3", b"4"]
    ledger.record(item_create("e0", "item_a"), messages[0])
    ledger.record({"type": "session.update", "event_id": "e1"}, messages[1])
    ledger.record({"type": "session.update", "event_id": "e2"}, messages[2])
    ledger.record({"type": "response.create", "event_id": "e3"}, messages[3])
    ledger.record({"type": "response.create", "event_id": "e4",
                   "response": {"conversation": "none"}}, messages[4])
    assert ledger.confirm_item("item_other") is None
    assert ledger.confirm_item("item_a").event_id == "e0"
    assert ledger.confirm_session_update().event_id == "e1"  # in order
    assert ledger.confirm_response(None, out_of_band=False) is None  # the server's own
    assert ledger.confirm_response(None, out_of_band=True).event_id == "e4"
    refused = ledger.answer_error({"code": "invalid_value", "event_id": "e3"})
    assert refused.outcome == "refused"
    assert [d.event_id for d in ledger.pending()] == ["e2"]
    assert ledger.confirmed == 3


@pytest.mark.parametrize("error", [
    {"code": "item_create_duplicate_item_id", "event_id": "e0"},
    {"code": "invalid_value", "param": "item.id", "event_id": "e0",
     "message": "Error adding item: an item with id 'item_a' already exists."},
])
def test_ledger_duplicate_item_refusal_is_confirmation(error: dict[str, Any]) -> None:
    ledger = DeliveryLedger()
    ledger.record(item_create("e0", "item_a"), b"x")
    assert ledger.answer_error(error).outcome == "confirmed"
    assert len(ledger) == 0


def test_ledger_replays_written_events_once_then_reports_them_lost() -> None:
    ledger = DeliveryLedger()
    written, queued = b"written", b"queued"
    ledger.record(item_create("e0", "item_a"), written)
    ledger.record(item_create("e1", "item_b"), queued)
    ledger.written(written)
    replay, lost = ledger.at_reconnect()
    # The queued one was never written: it goes out in its turn, not as a replay.
    assert [d.event_id for d in replay] == ["e0"] and lost == []
    ledger.written(written)  # the replay
    ledger.written(queued)
    replay, lost = ledger.at_reconnect()
    assert [d.event_id for d in replay] == ["e1"] and [d.event_id for d in lost] == ["e0"]
    assert lost[0].describe() == {"event_id": "e0", "event_type": "conversation.item.create",
                                  "item_id": "item_a"}
    ledger.written(queued)
    assert [d.event_id for d in ledger.give_up()] == ["e1"]
    assert ledger.lost == 2 and len(ledger) == 0


def test_ledger_follows_a_replayed_message() -> None:
    ledger = DeliveryLedger()
    first = b"first"
    delivery = ledger.record(item_create("e0", "item_a"), first)
    assert delivery is not None
    ledger.written(first)
    (replay,), _ = ledger.at_reconnect()
    second = b"second"
    ledger.replace_message(replay, dict(replay.event, previous_item_id="x"), second)
    ledger.written(first)  # the old bytes no longer count
    assert delivery.writes == 1
    ledger.written(second)
    assert delivery.writes == 2


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_events_queued_during_an_outage_survive_a_handshake_that_dies_too() -> None:
    # Found by the chaos soak: the second connection died while its handshake sent the
    # queued events, and those after the fatal write vanished with it.
    async with Simulator(responder=describe_context) as sim:
        network = HostileNetwork(sim.url)
        async with RealtimeClient(connect=network, session=TEXT_ONLY,
                                  backoff_initial_s=0.05) as client:
            recorder = Recorder(client)
            await client.send_user_message_content("zero")
            await until(lambda: len(client.conversation.items) == 1)
            network.swallow(lambda e: user_item(e) and e["item"]["content"][0]["text"] == "one")
            link = network.link
            link.hold()  # the socket stalls: what follows stays queued in the client
            await client.send_user_message_content("one")
            async with anyio.create_task_group() as tg:
                asked: list[str | None] = []

                async def ask() -> None:
                    with anyio.fail_after(5):
                        asked.append(await client.create_response())

                tg.start_soon(ask)
                await until(lambda: client.response_active)
                await anyio.sleep(0.01)
                link.cut(1011, "going down")
            (response_id,) = asked
            assert response_id is not None
            await client.wait_for_response_done(5)
            assert len(network.links) == 3
            assert client.conversation.items[-1].text == "message:zero / message:one"
            assert recorder.errors("client_event_lost") == []


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_reconnects_do_not_pile_up_ids_of_dead_sessions() -> None:
    # Found by the soak's memory figure: every reconnect replays the history under new ids,
    # and the ids of every earlier replay were kept for good.
    async with Simulator(responder=describe_context) as sim:
        network = HostileNetwork(sim.url)
        async with RealtimeClient(connect=network, session=TEXT_ONLY,
                                  backoff_initial_s=0.005) as client:
            for word in ("one", "two", "three"):
                await client.send_user_message_content(word)
            await until(lambda: len(client.conversation.items) == 3)
            for cut in range(5):
                network.link.cut(1006, "cut")
                await until(lambda: client.metrics.reconnects == cut + 1)
            # The live session's ids for the three replayed items (and the end marker) only.
            assert len(client.conversation._aliases) <= 3
            await client.send_user_message_content("four")
            await client.create_response()
            await client.wait_for_response_done(5)
            assert client.conversation.items[-1].text == (
                "message:one / message:two / message:three / message:four")
