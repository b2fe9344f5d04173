"""Server events through ``on()`` / ``events()``, and the sending helpers (issue 23, "Events and
sending"), against the simulator on asyncio and trio.

Oracles: the raw wire (``realtime.event``, decoded here with ``json``), the protocol's beta->GA
name table (protocol.md §5), the standard library's base64, and the Rust core's G.711 codec.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import anyio
import numpy as np
import pytest

from client_helpers import speech_then_silence, stream, until

from realtalk import audio
from realtalk.client import Notification, RealtimeClient
from realtalk.simulator import Simulator

TEXT_ONLY = {"output_modalities": ["text"]}
MANUAL_TURNS = {"audio": {"input": {"turn_detection": None}}}


class Wire:
    """The raw server and client wire events, as the client saw them."""

    def __init__(self, client: RealtimeClient) -> None:
        self.events: list[Notification] = []
        client.on("realtime.event", self.events.append)

    def sent(self, kind: str | None = None) -> list[dict[str, Any]]:
        return self._side("client", kind)

    def received(self, kind: str | None = None) -> list[dict[str, Any]]:
        return self._side("server", kind)

    def _side(self, source: str, kind: str | None) -> list[dict[str, Any]]:
        return [e["event"] for e in self.events if e["source"] == source
                and (kind is None or e["event"].get("type") == kind)]


# ---- server events through on() and events() ----


async def test_response_events_fire_their_handlers_with_the_parsed_event() -> None:
    async with Simulator() as sim, RealtimeClient(sim.url, api_key="sk-test",
                                                  session=TEXT_ONLY) as client:
        wire = Wire(client)
        got: dict[str, list[Notification]] = {}
        for name in ("response.created", "response.output_text.delta", "response.done",
                     "conversation.item.added"):
            client.on(name, got.setdefault(name, []).append)
        await client.send_user_message_content("hello there")
        response_id = await client.create_response()
        await client.wait_for_response_done(5)
        await until(lambda: got["response.done"])
        (done,) = got["response.done"]
        assert done.type == "response.done"
        assert done["response"]["id"] == response_id
        assert done["response"]["status"] == "completed"
        # Each handler saw exactly the server's events of its type, in order, and their fields.
        for name, seen in got.items():
            raw = wire.received(name)
            assert [e["event_id"] for e in seen] == [e["event_id"] for e in raw] != [], name
        reply = client.conversation.items[-1]
        assert "".join(e["delta"] for e in got["response.output_text.delta"]) == reply.text != ""
        assert [o["id"] for o in done["response"]["output"]] == [reply.id]


async def test_speech_and_transcription_events_fire_sync_and_async_handlers() -> None:
    session = {"audio": {"input": {"transcription": {"model": "whisper-1"},
                                   "turn_detection": {"type": "server_vad",
                                                      "silence_duration_ms": 300}}}}
    async with Simulator() as sim, RealtimeClient(sim.url, api_key="sk-test",
                                                  session=session) as client:
        wire = Wire(client)
        started: list[Notification] = []
        transcripts: list[Notification] = []
        audio_deltas: list[Notification] = []

        async def on_transcript(event: Notification) -> None:
            await anyio.sleep(0)
            transcripts.append(event)

        client.on("input_audio_buffer.speech_started", started.append)
        client.on("conversation.item.input_audio_transcription.completed", on_transcript)
        client.on("response.output_audio.delta", audio_deltas.append)
        await stream(client, speech_then_silence(800, 700))
        await until(lambda: wire.received("response.done") and transcripts)
        (speech,) = started
        assert speech["audio_start_ms"] == wire.received(speech.type)[0]["audio_start_ms"]
        (transcript,) = transcripts
        user = client.conversation.items[0]
        assert transcript["item_id"] == user.id
        assert transcript["transcript"] == user.transcript != ""
        # Audio deltas skip the JSON parse on their way to playback, yet a handler gets each.
        raw = wire.received("response.output_audio.delta")
        assert [e["delta"] for e in audio_deltas] == [e["delta"] for e in raw] != []


async def test_events_yields_server_events_only_when_asked_for() -> None:
    async with Simulator() as sim, RealtimeClient(sim.url, api_key="sk-test",
                                                  session=TEXT_ONLY) as client:
        asked = client.events("response.done", "conversation.item.completed")
        everything = client.events()
        await client.send_user_message_content("hello")
        response_id = await client.create_response()
        await client.wait_for_response_done(5)
        received: list[Notification] = []
        with anyio.fail_after(5):
            async for event in asked:
                received.append(event)
                if event.type == "response.done":
                    break
        assert {e.type for e in received} == {"conversation.item.completed", "response.done"}
        assert received[-1]["response"]["id"] == response_id
        asked.close()
        # The plain stream keeps to the client's notifications, as before.
        names: set[str] = set()
        with anyio.move_on_after(0.3):
            async for event in everything:
                names.add(event.type)
        everything.close()
        assert "conversation.item.completed" in names
        assert not names & {"response.done", "response.created", "conversation.item.added"}


async def test_beta_session_events_arrive_under_their_ga_names() -> None:
    async with Simulator() as sim, RealtimeClient(
            sim.url, api_key="sk-test", protocol="beta", model="gpt-4o-realtime-preview",
            session=TEXT_ONLY) as client:
        wire = Wire(client)
        deltas: list[Notification] = []
        added: list[Notification] = []
        done: list[Notification] = []
        client.on("response.output_text.delta", deltas.append)
        client.on("conversation.item.added", added.append)
        client.on("response.done", done.append)
        await client.send_user_message_content("hello")
        await client.create_response()
        await client.wait_for_response_done(5)
        await until(lambda: done)
        # protocol.md: beta response.text.delta / conversation.item.created are GA
        # response.output_text.delta / conversation.item.added.
        raw_deltas = wire.received("response.text.delta")
        assert [e["event_id"] for e in deltas] == [e["event_id"] for e in raw_deltas] != []
        assert {e.type for e in deltas} == {"response.output_text.delta"}
        raw_created = wire.received("conversation.item.created")
        assert [e["event_id"] for e in added] == [e["event_id"] for e in raw_created] != []
        assert done[0]["response"]["status"] == "completed"


async def test_session_created_reaches_a_handler_registered_before_connecting() -> None:
    async with Simulator() as sim:
        client = RealtimeClient(sim.url, api_key="sk-test", session=TEXT_ONLY)
        created: list[Notification] = []
        client.on("session.created", created.append)
        async with client:
            assert [e.type for e in created] == ["session.created"]
            assert created[0]["session"]["id"] == client.session["id"]


@pytest.mark.parametrize("name, hint", [
    ("response.audio.delta", "'response.output_audio.delta'"),
    ("conversation.item.input_audio_transcription.complete",
     "'conversation.item.input_audio_transcription.completed'"),
    ("no such event", ""),
])
def test_an_unknown_event_name_is_refused_with_a_hint(name: str, hint: str) -> None:
    client = RealtimeClient("ws://127.0.0.1:9/v1/realtime", api_key="sk-test")
    with pytest.raises(ValueError, match="neither a server event type nor a client") as info:
        client.on(name, print)
    assert hint in str(info.value)
    with pytest.raises(ValueError, match="neither a server event type"):
        client.events("response.done", name)


# ---- create_response() in a manual-turn session ----


def tone(ms: int, rate: int = 24000) -> np.ndarray:
    t = np.arange(rate * ms // 1000) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


async def test_create_response_commits_the_uncommitted_audio_first() -> None:
    async with Simulator() as sim, RealtimeClient(
            sim.url, api_key="sk-test", session={**MANUAL_TURNS, **TEXT_ONLY}) as client:
        wire = Wire(client)
        await stream(client, tone(300))
        await client.create_response()
        await client.wait_for_response_done(5)
        sent = [e["type"] for e in wire.sent() if e["type"] != "input_audio_buffer.append"]
        assert sent[-2:] == ["input_audio_buffer.commit", "response.create"]
        # The reply follows the user's audio item the commit made.
        user, assistant = client.conversation.items
        assert user.role == "user" and assistant.role == "assistant"
        (committed,) = wire.received("input_audio_buffer.committed")
        assert committed["item_id"] == user.id
        # Nothing new since: the next response commits nothing.
        await client.create_response()
        await client.wait_for_response_done(5)
        assert len(wire.sent("input_audio_buffer.commit")) == 1


async def test_create_response_commit_false_leaves_the_buffer_alone() -> None:
    async with Simulator() as sim, RealtimeClient(
            sim.url, api_key="sk-test", session={**MANUAL_TURNS, **TEXT_ONLY}) as client:
        wire = Wire(client)
        errors: list[Notification] = []
        client.on("error", errors.append)
        await client.send_user_message_content("hello")
        await stream(client, tone(300))
        await client.create_response(commit=False)
        await client.wait_for_response_done(5)
        assert wire.sent("input_audio_buffer.commit") == []
        assert "commit" not in wire.sent("response.create")[0].get("response", {})
        assert [i.role for i in client.conversation.items] == ["user", "assistant"]
        assert errors == []
        # The audio is still there to commit by hand.
        await client.commit_input_audio()
        await until(lambda: wire.received("input_audio_buffer.committed"))


async def test_create_response_with_server_turn_detection_commits_nothing() -> None:
    session = {"audio": {"input": {"turn_detection": {"type": "server_vad",
                                                      "create_response": False}}}, **TEXT_ONLY}
    async with Simulator() as sim, RealtimeClient(sim.url, api_key="sk-test",
                                                  session=session) as client:
        wire = Wire(client)
        await client.send_user_message_content("hello")
        await stream(client, np.zeros(24000 * 300 // 1000, np.float32))
        await client.create_response()
        await client.wait_for_response_done(5)
        assert wire.sent("input_audio_buffer.commit") == []


async def test_create_response_leaves_too_little_audio_uncommitted() -> None:
    async with Simulator() as sim, RealtimeClient(
            sim.url, api_key="sk-test", session={**MANUAL_TURNS, **TEXT_ONLY}) as client:
        wire = Wire(client)
        errors: list[Notification] = []
        client.on("error", errors.append)
        await client.send_user_message_content("hello")
        await stream(client, tone(60))  # the server refuses commits under 100 ms
        await client.create_response()
        await client.wait_for_response_done(5)
        assert wire.sent("input_audio_buffer.commit") == [] and errors == []


# ---- append_input_audio() with audio already in the session's input format ----


def appended_bytes(wire: Wire) -> bytes:
    return b"".join(base64.b64decode(e["audio"]) for e in wire.sent("input_audio_buffer.append"))


async def test_append_input_audio_takes_pcm16_bytes_and_base64_unchanged() -> None:
    rng = np.random.default_rng(7)
    chunks = [rng.integers(-32768, 32767, 2400, dtype=np.int16).astype("<i2").tobytes()
              for _ in range(5)]  # 5 x 50 ms at 24 kHz
    as_given: list[Any] = [chunks[0], base64.b64encode(chunks[1]).decode(),
                           memoryview(chunks[2]), bytearray(chunks[3]),
                           np.frombuffer(chunks[4], "<i2").data]  # a memoryview of int16
    async with Simulator() as sim, RealtimeClient(
            sim.url, api_key="sk-test", session={**MANUAL_TURNS, **TEXT_ONLY}) as client:
        wire = Wire(client)
        for chunk in as_given[:3]:
            client.append_input_audio(chunk)
        # From another thread (an audio callback) the frame is copied: the caller's buffer
        # may be reused at once.
        reused = bytearray(chunks[3])
        await anyio.to_thread.run_sync(client.append_input_audio, reused)
        reused[:] = bytes(len(reused))
        client.append_input_audio(as_given[4])
        await client.commit_input_audio()  # 250 ms counted: the commit goes out
        await until(lambda: wire.received("input_audio_buffer.committed"))
        assert appended_bytes(wire) == b"".join(chunks)


async def test_append_input_audio_takes_g711_codes_in_a_g711_session() -> None:
    session = {"audio": {"input": {"format": {"type": "audio/pcmu"}, "turn_detection": None}},
               **TEXT_ONLY}
    codes = np.random.default_rng(3).integers(0, 256, 1600, dtype=np.uint8)  # 200 ms at 8 kHz
    async with Simulator() as sim, RealtimeClient(sim.url, api_key="sk-test",
                                                  session=session) as client:
        wire = Wire(client)
        client.append_input_audio(codes.tobytes())
        await client.commit_input_audio()
        await until(lambda: wire.received("input_audio_buffer.committed"))
        sent = np.frombuffer(appended_bytes(wire), np.uint8)
        # The same audio (mu-law has two codes for silence, which may swap).
        np.testing.assert_array_equal(audio.ulaw_decode(sent), audio.ulaw_decode(codes))


@pytest.mark.parametrize("bad, sample_rate, message", [
    (b"\x00\x01\x02", None, "2 bytes per sample"),
    ("not base64!", None, "must be base64"),
    (b"\x00\x00" * 480, 16000, "not at 16000 Hz"),
])
async def test_append_input_audio_refuses_bad_bytes_clearly(bad: Any, sample_rate: int | None,
                                                            message: str) -> None:
    async with Simulator() as sim, RealtimeClient(
            sim.url, api_key="sk-test", session={**MANUAL_TURNS, **TEXT_ONLY}) as client:
        wire = Wire(client)
        with pytest.raises(ValueError, match=message):
            client.append_input_audio(bad, sample_rate)
        client.append_input_audio(b"\x01\x00" * 2400)  # the client goes on
        await client.commit_input_audio()
        await until(lambda: wire.received("input_audio_buffer.committed"))
        assert appended_bytes(wire) == b"\x01\x00" * 2400


# ---- items by id: retrieve_item(), delete_item() ----


async def test_retrieve_item_returns_the_servers_item() -> None:
    async with Simulator() as sim, RealtimeClient(sim.url, api_key="sk-test",
                                                  session=TEXT_ONLY) as client:
        wire = Wire(client)
        user_id = await client.send_user_message_content("hello there")
        await client.create_response()
        await client.wait_for_response_done(5)
        reply = client.conversation.items[-1]
        user, assistant = await client.retrieve_item(user_id), await client.retrieve_item(reply.id)
        assert user["id"] == user_id and user["role"] == "user"
        assert user["content"] == [{"type": "input_text", "text": "hello there"}]
        assert assistant["id"] == reply.id and assistant["role"] == "assistant"
        # The very items the server sent in its answers.
        raw = [e["item"] for e in wire.received("conversation.item.retrieved")]
        assert [i["id"] for i in raw] == [user_id, reply.id]
        assert assistant["content"][0]["text"] == raw[1]["content"][0]["text"] == reply.text


async def test_retrieve_item_raises_with_the_servers_error() -> None:
    from realtalk.client import RequestRefused

    async with Simulator() as sim, RealtimeClient(sim.url, api_key="sk-test",
                                                  session=TEXT_ONLY) as client:
        with pytest.raises(RequestRefused) as info:
            await client.retrieve_item("item_does_not_exist")
        assert info.value.error["code"] == "item_retrieve_invalid_item_id"
        assert "item_does_not_exist" in str(info.value)
        with pytest.raises(ValueError, match="item_id"):
            await client.retrieve_item("")


async def test_delete_item_waits_for_the_server_and_drops_the_item() -> None:
    from realtalk.client import RequestRefused

    async with Simulator() as sim, RealtimeClient(sim.url, api_key="sk-test",
                                                  session=TEXT_ONLY) as client:
        wire = Wire(client)
        first = await client.send_user_message_content("first")
        second = await client.send_user_message_content("second")
        await until(lambda: len(client.conversation.items) == 2)
        await client.delete_item(first)
        assert wire.received("conversation.item.deleted")[0]["item_id"] == first
        assert [i.id for i in client.conversation.items] == [second]
        with pytest.raises(RequestRefused) as info:
            await client.retrieve_item(first)
        assert info.value.error["code"] == "item_retrieve_invalid_item_id"
        with pytest.raises(RequestRefused) as info:
            await client.delete_item(first)
        assert info.value.error["code"] == "item_delete_invalid_item_id"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_item_requests_end_with_the_connection_instead_of_hanging() -> None:
    from hostile import HostileNetwork

    from realtalk.errors import ConnectionClosed

    async with Simulator() as sim:
        network = HostileNetwork(sim.url)
        async with RealtimeClient(connect=network, session=TEXT_ONLY,
                                  backoff_initial_s=0.01) as client:
            item_id = await client.send_user_message_content("keep me")
            await until(lambda: len(client.conversation.items) == 1)
            network.swallow(lambda e: e.get("type") == "conversation.item.retrieve")
            with anyio.fail_after(5), pytest.raises(ConnectionClosed, match="before the server"):
                await client.retrieve_item(item_id)
            # Once the client has reconnected (the history replayed under new ids), the item
            # is asked for by the new session's id for it.
            await until(lambda: client.connected and client.metrics.reconnects == 1)
            item = await client.retrieve_item(item_id)
            assert item["content"][0]["text"] == "keep me"


async def test_a_failing_server_event_handler_is_reported_and_the_session_goes_on() -> None:
    async with Simulator() as sim, RealtimeClient(sim.url, api_key="sk-test",
                                                  session=TEXT_ONLY) as client:
        errors: list[Notification] = []
        client.on("error", errors.append)

        def broken(event: Notification) -> None:
            raise KeyError("oops")

        client.on("response.created", broken)
        await client.send_user_message_content("hello")
        await client.create_response()
        await client.wait_for_response_done(5)
        assert client.conversation.items[-1].status == "completed"
        assert [e["error"]["type"] for e in errors] == ["handler_error"]
        assert "KeyError" in errors[0]["error"]["message"]
