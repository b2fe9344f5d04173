"""The connection supervision's I/O half (realtalk._connection_supervisor), one link at a time
and without a server: what a history replay carries, the order in which queued messages
survive a dead connection, and the handshake (protocol.md: session.created comes first; an
error before it says why the connection is refused)."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from realtalk import RealtimeClient
from realtalk._connection_supervisor import ConnectionSupervisor
from realtalk.conversation import Conversation, Item
from realtalk.errors import ProtocolError

pytestmark = pytest.mark.anyio


def _history() -> list[Item]:
    conversation = Conversation()
    for item in [
        {"id": "u1", "type": "message", "role": "user",
         "content": [{"type": "input_text", "text": "hello"}]},
        {"id": "a1", "type": "message", "role": "assistant",
         "content": [{"type": "output_audio", "transcript": "hi there"}]},
        {"id": "a2", "type": "message", "role": "assistant",
         "content": [{"type": "output_audio"}]},  # audio without a transcript
        {"id": "f1", "type": "function_call", "call_id": "c1", "name": "add",
         "arguments": '{"a": 1}'},
        {"id": "o1", "type": "function_call_output", "call_id": "c1", "output": "2"},
        {"id": "o9", "type": "function_call_output", "call_id": "c9", "output": "orphan"},
    ]:
        conversation.apply({"type": "conversation.item.done", "item": item})
    unfinished = Item(id="f2", type="function_call", status="in_progress", call_id="c2",
                      name="add")
    return [*conversation.items[:5], unfinished,
            Item(id="o2", type="function_call_output", call_id="c2", output="3"),
            conversation.items[5]]


def test_a_history_replay_carries_text_and_finished_tool_calls_only() -> None:
    calls: set[str] = set()
    replays = {item.id: ConnectionSupervisor._replayable(item, calls) for item in _history()}
    assert replays == {
        "u1": {"type": "message", "role": "user",
               "content": [{"type": "input_text", "text": "hello"}]},
        # Assistant audio comes back as its transcript, in the assistant's own content type.
        "a1": {"type": "message", "role": "assistant",
               "content": [{"type": "output_text", "text": "hi there"}]},
        "a2": None,
        "f1": {"type": "function_call", "call_id": "c1", "name": "add",
               "arguments": '{"a": 1}'},
        "o1": {"type": "function_call_output", "call_id": "c1", "output": "2"},
        # A call that never finished is not replayed, so neither is its output; an output
        # whose call the session never had would be refused.
        "f2": None,
        "o2": None,
        "o9": None,
    }
    assert calls == {"c1"}


class Outbox:
    def __init__(self, messages: list[bytes]) -> None:
        self.messages = messages

    def receive_nowait(self) -> bytes:
        if not self.messages:
            raise anyio.WouldBlock
        return self.messages.pop(0)


class Host:
    def __init__(self, outbox: list[bytes]) -> None:
        self._outbox_receive = Outbox(outbox)


def test_a_dead_connections_messages_are_kept_in_their_order() -> None:
    supervisor = ConnectionSupervisor(Host([b"q1", b"q2"]))  # type: ignore[arg-type]
    supervisor.requeue = [b"r1"]  # left by a handshake that died too
    supervisor.pending = b"w1"  # the write in flight when the link died
    supervisor.drain_outbox_into_outage()
    assert supervisor.requeue == [b"r1", b"w1", b"q1", b"q2"]
    assert supervisor.pending is None
    supervisor.drain_outbox_into_outage()  # nothing new: nothing doubled
    assert supervisor.requeue == [b"r1", b"w1", b"q1", b"q2"]


class ScriptedLink:
    """A link whose server says ``script`` and records what the client writes."""

    def __init__(self, script: list[bytes]) -> None:
        self.script = script
        self.written: list[dict[str, Any]] = []

    async def send_text(self, message: str | bytes) -> None:
        self.written.append(json.loads(message))

    async def receive_raw(self) -> tuple[bytes, bool]:
        return self.script.pop(0), True


def _created() -> bytes:
    return json.dumps({"type": "session.created", "event_id": "e1",
                       "session": {"type": "realtime", "id": "sess_1",
                                   "model": "gpt-realtime"}}).encode()


async def test_the_handshake_skips_garbage_then_pushes_config_and_the_requeue() -> None:
    client = RealtimeClient(session={"instructions": "be brief"})
    errors: list[dict[str, Any]] = []
    client.on("error", lambda event: errors.append(dict(event["error"])))
    supervisor = client._supervisor
    supervisor.requeue = [json.dumps({"type": "input_audio_buffer.clear",
                                      "event_id": "queued"}).encode()]
    link = ScriptedLink([b"{not json", _created()])
    await supervisor._handshake(link, reconnecting=False)
    assert [e.get("code") for e in errors] == ["invalid_server_event"]
    assert [m["type"] for m in link.written] == ["session.update", "input_audio_buffer.clear"]
    assert link.written[0]["session"]["instructions"] == "be brief"
    assert supervisor.requeue == [] and client.connected
    assert client.session.get("id") == "sess_1"


async def test_the_handshake_reports_a_refusal_and_rejects_any_other_first_event() -> None:
    client = RealtimeClient()
    errors: list[dict[str, Any]] = []
    client.on("error", lambda event: errors.append(dict(event["error"])))
    refusal = json.dumps({"type": "error", "event_id": "e0",
                          "error": {"type": "invalid_request_error",
                                    "code": "invalid_api_key", "message": "no"}}).encode()
    other = json.dumps({"type": "response.created", "event_id": "e2",
                        "response": {"id": "resp_1"}}).encode()
    with pytest.raises(ProtocolError, match="session.created first"):
        await client._supervisor._handshake(ScriptedLink([refusal, other]), reconnecting=False)
    assert [e.get("code") for e in errors] == ["invalid_api_key"]
    assert not client.connected


def test_the_supervisor_touches_only_its_declared_interface_of_the_client() -> None:
    # Every attribute the supervisor reads, sets or calls on its client (``client.x`` or
    # ``self._client.x`` in its source) is declared in SupervisedClient, and a real client
    # has every declared member: the one list a reader needs is complete and true.
    import ast
    import inspect

    import realtalk._connection_supervisor as module
    from realtalk._connection_supervisor import SupervisedClient

    tree = ast.parse(inspect.getsource(module))
    interface = next(node for node in tree.body
                     if isinstance(node, ast.ClassDef) and node.name == "SupervisedClient")
    declared = {node.name for node in interface.body if isinstance(node, ast.FunctionDef
                                                                   | ast.AsyncFunctionDef)}
    declared |= {node.target.id for node in interface.body
                 if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}
    used = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id == "client" or (
                isinstance(owner, ast.Attribute) and owner.attr == "_client"
                and isinstance(owner.value, ast.Name) and owner.value.id == "self"):
            used.add(node.attr)
    assert used, "the scan found the supervisor's uses"
    assert used - declared == set(), "undeclared reaches into the client"
    assert declared - used == set(), "declared but unused: drop it from the interface"
    client = RealtimeClient()
    missing = [name for name in sorted(declared) if not hasattr(client, name)]
    assert missing == ["_outbox_receive"]  # made when the client starts:
    assert "self._outbox_receive = " in inspect.getsource(RealtimeClient.__aenter__) \
        or "self._outbox_send, self._outbox_receive = " in inspect.getsource(
            RealtimeClient.__aenter__)
    assert len(declared) < 45 and SupervisedClient.__doc__
