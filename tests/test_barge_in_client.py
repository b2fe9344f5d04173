"""Barge-in through the client against the simulator, on asyncio and trio (issue 22): remote
playback positions, ``interrupt_response: false``, and the false-interruption policy."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import numpy as np
import pytest
from client_helpers import Recorder, speech_then_silence, stream, until

from realtalk import BargeInPolicy, RealtimeClient
from realtalk.connection import realtime_request
from realtalk.simulator import Simulator
from realtalk.simulator.responder import Audio, ResponseContext
from realtalk.transport import open_websocket

PCM16 = ({"type": "audio/pcm", "rate": 24000}, 24000, 2)
ULAW = ({"type": "audio/pcmu"}, 8000, 1)
FORMATS = pytest.mark.parametrize(("output_format", "wire_rate", "bytes_per_sample"),
                                  [PCM16, ULAW], ids=["pcm16", "g711_ulaw"])


def speech_responder(ms: int) -> Any:
    samples = (3000 * np.sin(2 * np.pi * 220 * np.arange(24 * ms) / 24000)).astype(np.int16)

    def responder(ctx: ResponseContext) -> Any:
        return Audio(samples, "one two three four five six seven eight nine ten")

    return responder


def server_vad(**turn: Any) -> dict[str, Any]:
    return {"type": "server_vad", "silence_duration_ms": 200, "create_response": False, **turn}


def session_with(output_format: dict[str, Any], turn_detection: Any) -> dict[str, Any]:
    return {"audio": {"output": {"format": output_format},
                      "input": {"turn_detection": turn_detection}}}


async def reply(client: RealtimeClient) -> Any:
    """Ask for the reply and wait until all of it is with the client; its assistant item."""
    await client.send_user_message_content("talk to me")
    await client.create_response()
    await client.wait_for_response_done(5)
    (assistant,) = [i for i in client.conversation.items if i.role == "assistant"]
    return assistant


async def server_audio_ms(client: RealtimeClient, item_id: str, bytes_per_sample: int,
                          wire_rate: int) -> float:
    """The server's copy of the item's audio, in ms of the output format (retrieve_item)."""
    item = await client.retrieve_item(item_id)
    audio = base64.b64decode(item["content"][0]["audio"])
    return len(audio) / bytes_per_sample * 1000 / wire_rate


async def truncated(recorder: Recorder, timeout: float = 10.0) -> None:
    """Until the server confirmed a truncation and the client's own event is on record (the
    writer logs what it sent after the write, so the answer can be read first)."""
    await until(lambda: recorder.wire("server", "conversation.item.truncated")
                and recorder.wire("client", "conversation.item.truncate"), timeout)


# ---- 1. remote playback position ----


@FORMATS
async def test_remote_player_position_is_where_speech_start_truncates(
    output_format: dict[str, Any], wire_rate: int, bytes_per_sample: int
) -> None:
    async with Simulator(responder=speech_responder(1000)) as sim, RealtimeClient(
        sim.url, api_key="sk-test", session=session_with(output_format, server_vad()),
        playback_rate=wire_rate, local_playback=False,
    ) as client:
        recorder = Recorder(client)
        assistant = await reply(client)
        # The deltas were not decoded for a local speaker; the conversation still has them.
        assert client.playback.queued == 0 and client.playback.current is None
        assert client.conversation.audio_ms_received(assistant.id) >= 990
        assert len(assistant.audio) == client.conversation.audio_ms_received(assistant.id) \
            * wire_rate // 1000
        # The app's player reports from its own thread; one report goes backwards.
        def player() -> None:
            for ms in (100, 250.5, 437.9):
                assert client.report_playback(assistant.id, ms)
            assert not client.report_playback(assistant.id, 300)

        thread = threading.Thread(target=player)
        thread.start()
        thread.join()
        assert client.metrics.playback_reports_refused == 1
        await stream(client, speech_then_silence(400, 300))
        await truncated(recorder)
        (truncate,) = recorder.wire("client", "conversation.item.truncate")
        assert truncate == {**truncate, "item_id": assistant.id, "content_index": 0,
                            "audio_end_ms": 437}
        flushes = [e.data for e in recorder.events if e.type == "playback.flush"]
        assert flushes == [{"item_id": assistant.id}]
        (interrupted,) = [e.data for e in recorder.events if e.type == "conversation.interrupted"]
        assert interrupted == {"item_id": assistant.id, "content_index": 0, "audio_end_ms": 437,
                               "automatic": True, "cut": True}
        assert await server_audio_ms(client, assistant.id, bytes_per_sample, wire_rate) == 437
        assert recorder.errors() == []


@FORMATS
async def test_a_remote_position_past_the_audio_received_is_capped(
    output_format: dict[str, Any], wire_rate: int, bytes_per_sample: int
) -> None:
    async with Simulator(responder=speech_responder(300)) as sim, RealtimeClient(
        sim.url, api_key="sk-test", session=session_with(output_format, server_vad()),
        playback_rate=wire_rate, local_playback=False,
    ) as client:
        recorder = Recorder(client)
        assistant = await reply(client)
        received = client.conversation.audio_ms_received(assistant.id)
        assert 290 <= received <= 300
        client.report_playback(assistant.id, 5000)  # a player whose clock runs ahead
        await stream(client, speech_then_silence(400, 300))
        await truncated(recorder)
        (truncate,) = recorder.wire("client", "conversation.item.truncate")
        assert truncate["audio_end_ms"] == received
        assert await server_audio_ms(client, assistant.id, bytes_per_sample, wire_rate) \
            == pytest.approx(received, abs=1000 / wire_rate)
        assert recorder.errors() == []


async def test_nothing_reported_means_nothing_heard_and_no_truncate() -> None:
    async with Simulator(responder=speech_responder(500)) as sim, RealtimeClient(
        sim.url, api_key="sk-test", session=session_with(PCM16[0], server_vad()),
        local_playback=False,
    ) as client:
        recorder = Recorder(client)
        await reply(client)
        await stream(client, speech_then_silence(400, 300))
        await until(lambda: "conversation.interrupted" in recorder.names())
        await anyio.sleep(0.1)
        assert recorder.wire("client", "conversation.item.truncate") == []
        assert [e.data for e in recorder.events if e.type == "playback.flush"] == [
            {"item_id": None}]


@FORMATS
async def test_an_explicit_position_wins_also_with_local_playback(
    output_format: dict[str, Any], wire_rate: int, bytes_per_sample: int
) -> None:
    async with Simulator(responder=speech_responder(1000)) as sim, RealtimeClient(
        sim.url, api_key="sk-test", session=session_with(output_format, None),
        playback_rate=wire_rate,
    ) as client:
        recorder = Recorder(client)
        assistant = await reply(client)
        client.playback.pull(wire_rate * 600 // 1000)  # the local speaker played 600 ms
        # ... but the JS reference client's cancelResponse(id, sampleCount) says 212.6 ms.
        result = await client.interrupt(item_id=assistant.id, played_ms=212.6)
        assert result == {"item_id": assistant.id, "content_index": 0, "audio_end_ms": 212}
        await truncated(recorder)
        assert client.playback.queued == 0  # the local speaker was flushed all the same
        assert assistant.truncated_ms == 212
        assert await server_audio_ms(client, assistant.id, bytes_per_sample, wire_rate) == 212
        (interrupted,) = [e.data for e in recorder.events if e.type == "conversation.interrupted"]
        assert (interrupted["automatic"], interrupted["cut"]) == (False, True)
        assert recorder.errors() == []


async def test_interrupt_with_only_played_ms_cuts_the_item_being_heard() -> None:
    async with Simulator(responder=speech_responder(800)) as sim, RealtimeClient(
        sim.url, api_key="sk-test", session=session_with(PCM16[0], None),
        local_playback=False,
    ) as client:
        recorder = Recorder(client)
        assistant = await reply(client)
        client.report_playback(assistant.id, 500)
        result = await client.interrupt(played_ms=321)
        assert result == {"item_id": assistant.id, "content_index": 0, "audio_end_ms": 321}
        await truncated(recorder)
        assert recorder.errors() == []


async def test_playback_report_mistakes_are_clear_errors() -> None:
    async with Simulator() as sim:
        async with RealtimeClient(sim.url, api_key="sk-test") as client:
            with pytest.raises(RuntimeError, match="local_playback=False"):
                client.report_playback("item_1", 10)
            with pytest.raises(ValueError, match="played_ms"):
                await client.interrupt(played_ms=-5)
            with pytest.raises(ValueError, match="item_id"):
                await client.interrupt(item_id="")
        async with RealtimeClient(sim.url, api_key="sk-test", local_playback=False) as client:
            with pytest.raises(ValueError, match="played_ms"):
                client.report_playback("item_1", float("nan"))
            with pytest.raises(ValueError, match="item_id"):
                client.report_playback("", 10)
    with pytest.raises(TypeError, match="BargeInPolicy"):
        RealtimeClient("ws://127.0.0.1:1",
                       barge_in={"min_speech_ms": 100})  # type: ignore[arg-type]


# ---- 2. interrupt_response: false ----


@pytest.mark.parametrize("local_playback", [True, False], ids=["local", "remote"])
async def test_interrupt_response_false_leaves_the_reply_alone_and_tells_the_app(
    local_playback: bool
) -> None:
    session = session_with(PCM16[0], server_vad(interrupt_response=False))
    async with Simulator(responder=speech_responder(3000), pace="realtime") as sim, \
            RealtimeClient(sim.url, api_key="sk-test", session=session,
                           local_playback=local_playback) as client:
        recorder = Recorder(client)
        await client.send_user_message_content("talk for a while")
        await client.create_response()
        await until(lambda: any(i.role == "assistant" and len(i.audio) >= 24 * 400
                                for i in client.conversation.items), 5)
        (assistant,) = [i for i in client.conversation.items if i.role == "assistant"]
        if local_playback:
            client.playback.pull(24 * 300)
        else:
            client.report_playback(assistant.id, 300)
        await stream(client, speech_then_silence(400, 300))
        await until(lambda: "conversation.interrupted" in recorder.names(), 5)
        (interrupted,) = [e.data for e in recorder.events if e.type == "conversation.interrupted"]
        assert interrupted == {"item_id": assistant.id, "content_index": 0,
                               "audio_end_ms": 300, "automatic": False, "cut": False}
        received_ms = client.conversation.audio_ms_received(assistant.id)
        await anyio.sleep(0.2)
        # No cancel, no truncate, no flush: the reply streams on and stays queued.
        assert client.response_active
        assert client.conversation.audio_ms_received(assistant.id) >= received_ms + 100
        assert recorder.wire("client", "response.cancel") == []
        assert recorder.wire("client", "conversation.item.truncate") == []
        assert "playback.flush" not in recorder.names()
        if local_playback:
            assert client.playback.queued >= 24 * 100 and not client.playback.paused
        # The app decides: interrupt() still cuts where the player is.
        if local_playback:
            client.playback.pull(24 * 150)
        else:
            client.report_playback(assistant.id, 450)
        result = await client.interrupt()
        assert result == {"item_id": assistant.id, "content_index": 0, "audio_end_ms": 450}
        await truncated(recorder, 5)
        assert len(recorder.wire("client", "response.cancel")) == 1
        await client.wait_for_response_done(5)
        (done,) = recorder.wire("server", "response.done")
        assert done["response"]["status"] == "cancelled"
        assert [e.type for e in recorder.events if e.type in (
            "conversation.interrupted", "playback.flush")] == [
            "conversation.interrupted", *(() if local_playback else ("playback.flush",)),
            "conversation.interrupted"]
        assert recorder.errors() == []


async def test_interrupt_response_true_still_cuts_at_once_without_a_cancel() -> None:
    session = session_with(PCM16[0], server_vad())
    async with Simulator(responder=speech_responder(3000), pace="realtime") as sim, \
            RealtimeClient(sim.url, api_key="sk-test", session=session) as client:
        recorder = Recorder(client)
        await client.send_user_message_content("talk for a while")
        await client.create_response()
        await until(lambda: client.playback.queued >= 24 * 400, 5)
        client.playback.pull(24 * 300)
        await stream(client, speech_then_silence(400, 300))
        await truncated(recorder, 5)
        (interrupted,) = [e.data for e in recorder.events if e.type == "conversation.interrupted"]
        assert (interrupted["audio_end_ms"], interrupted["automatic"]) == (300, True)
        # The server cancelled on its own (interrupt_response): the client sent no cancel.
        assert recorder.wire("client", "response.cancel") == []
        assert client.playback.queued == 0
        assert recorder.errors() == []


# ---- 3. false interruptions ----

COUGH_MS, REAL_MS = 120, 600
DECIDE = BargeInPolicy(min_speech_ms=300, pause_then_decide=True)


def user_audio(speech_ms: int) -> np.ndarray:
    """Half a second of quiet (the VAD learns the floor), speech, then the turn's end."""
    return np.concatenate([np.zeros(24 * 500, dtype=np.float32),
                           speech_then_silence(speech_ms, 400)])


def hold_check(client: RealtimeClient, held: list[np.ndarray]) -> None:
    """While the decision is pending the device goes on pulling: 120 ms of 20 ms blocks."""

    def on_speech_started(event: Any) -> None:
        assert client.playback.paused
        held.extend(client.playback.pull(480) for _ in range(6))

    client.on("input_audio_buffer.speech_started", on_speech_started)


async def test_a_cough_pauses_local_playback_and_the_reply_resumes_with_nothing_lost() -> None:
    session = session_with(PCM16[0], server_vad(interrupt_response=False))
    async with Simulator(responder=speech_responder(1000)) as sim, RealtimeClient(
        sim.url, api_key="sk-test", session=session, barge_in=DECIDE,
    ) as client:
        recorder = Recorder(client)
        assistant = await reply(client)
        heard = [client.playback.pull(24 * 300)]
        held: list[np.ndarray] = []
        hold_check(client, held)
        await stream(client, user_audio(COUGH_MS))
        await until(lambda: recorder.wire("server", "input_audio_buffer.speech_stopped"))
        assert len(held) == 6 and not np.concatenate(held).any()  # silence while paused
        assert not client.playback.paused  # resumed
        heard.append(client.playback.pull(client.playback.queued))
        # Every sample of the reply was heard, in order, the 300 ms before the cough included.
        np.testing.assert_array_equal(np.concatenate(heard), assistant.audio)
        assert client.playback.played(assistant.id) == len(assistant.audio)
        await anyio.sleep(0.1)
        assert recorder.wire("client", "conversation.item.truncate") == []
        assert recorder.wire("client", "response.cancel") == []
        assert "conversation.interrupted" not in recorder.names()
        assert client._barge_in.decision.false_interruptions == 1
        assert recorder.errors() == []


async def test_a_real_interruption_truncates_at_the_pause_position_exactly() -> None:
    session = session_with(PCM16[0], server_vad(interrupt_response=False))
    async with Simulator(responder=speech_responder(3000), pace="realtime") as sim, \
            RealtimeClient(sim.url, api_key="sk-test", session=session,
                           barge_in=DECIDE) as client:
        recorder = Recorder(client)
        await client.send_user_message_content("talk for a while")
        await client.create_response()
        await until(lambda: client.playback.queued >= 24 * 400, 5)
        (assistant,) = [i for i in client.conversation.items if i.role == "assistant"]
        client.playback.pull(24 * 300 + 7)  # paused at 300.29 ms
        held: list[np.ndarray] = []
        hold_check(client, held)
        await stream(client, user_audio(REAL_MS))
        await truncated(recorder, 5)
        assert len(held) == 6 and not np.concatenate(held).any()
        (truncate,) = recorder.wire("client", "conversation.item.truncate")
        assert (truncate["item_id"], truncate["audio_end_ms"]) == (assistant.id, 300)
        # The server had no word to cancel (interrupt_response: false): the client did.
        assert len(recorder.wire("client", "response.cancel")) == 1
        await client.wait_for_response_done(5)
        assert await server_audio_ms(client, assistant.id, 2, 24000) == 300
        assert assistant.truncated_ms == 300
        assert client.playback.queued == 0 and not client.playback.paused
        (interrupted,) = [e.data for e in recorder.events if e.type == "conversation.interrupted"]
        assert (interrupted["automatic"], interrupted["cut"]) == (True, True)
        assert client._barge_in.decision.false_interruptions == 0
        assert recorder.errors() == []


@pytest.mark.parametrize(("speech_ms", "real"), [(COUGH_MS, False), (REAL_MS, True)],
                         ids=["cough", "real"])
async def test_a_remote_player_gets_the_decisions_as_events(speech_ms: int, real: bool) -> None:
    session = session_with(PCM16[0], server_vad(interrupt_response=False))
    async with Simulator(responder=speech_responder(1000)) as sim, RealtimeClient(
        sim.url, api_key="sk-test", session=session, barge_in=DECIDE, local_playback=False,
    ) as client:
        recorder = Recorder(client)
        assistant = await reply(client)
        client.report_playback(assistant.id, 300)
        playback_events: list[tuple[str, dict[str, Any]]] = []
        for name in ("playback.pause", "playback.resume", "playback.flush"):
            client.on(name, lambda event: playback_events.append((event.type, dict(event.data))))
        await stream(client, user_audio(speech_ms))
        await until(lambda: len(playback_events) == 2)
        await anyio.sleep(0.1)
        position = {"item_id": assistant.id, "content_index": 0, "audio_end_ms": 300}
        if real:
            assert playback_events == [("playback.pause", position),
                                       ("playback.flush", {"item_id": assistant.id})]
            (truncate,) = recorder.wire("client", "conversation.item.truncate")
            assert truncate["audio_end_ms"] == 300
            assert await server_audio_ms(client, assistant.id, 2, 24000) == 300
        else:
            assert playback_events == [("playback.pause", position),
                                       ("playback.resume", position)]
            assert recorder.wire("client", "conversation.item.truncate") == []
            assert await server_audio_ms(client, assistant.id, 2, 24000) \
                == client.conversation.audio_ms_received(assistant.id)
        assert recorder.errors() == []


async def test_min_speech_alone_keeps_playing_through_a_cough() -> None:
    session = session_with(PCM16[0], server_vad())
    async with Simulator(responder=speech_responder(1000)) as sim, RealtimeClient(
        sim.url, api_key="sk-test", session=session,
        barge_in=BargeInPolicy(min_speech_ms=300),
    ) as client:
        recorder = Recorder(client)
        assistant = await reply(client)
        client.playback.pull(24 * 200)
        await stream(client, user_audio(COUGH_MS))
        await until(lambda: recorder.wire("server", "input_audio_buffer.speech_stopped"))
        await anyio.sleep(0.1)
        assert not client.playback.paused
        assert client.playback.queued == len(assistant.audio) - 24 * 200
        assert recorder.wire("client", "conversation.item.truncate") == []
        # Then real speech: cut where the speaker is when the decision falls.
        client.playback.pull(24 * 100)
        await stream(client, user_audio(REAL_MS))
        await truncated(recorder)
        (truncate,) = recorder.wire("client", "conversation.item.truncate")
        assert truncate["audio_end_ms"] == 300


async def test_the_local_vad_path_lets_a_cough_by_unanswered_and_cuts_real_speech() -> None:
    from realtalk.audio import Vad

    session = session_with(PCM16[0], None)
    async with Simulator(responder=speech_responder(1000)) as sim, RealtimeClient(
        sim.url, api_key="sk-test", session=session, barge_in=DECIDE,
        local_vad=Vad(24000, silence_duration_ms=200),
    ) as client:
        recorder = Recorder(client)
        assistant = await reply(client)
        heard = [client.playback.pull(24 * 300)]
        await stream(client, user_audio(COUGH_MS))
        await anyio.sleep(0.2)
        assert client._barge_in.decision.false_interruptions == 1
        assert not client.playback.paused
        heard.append(client.playback.pull(client.playback.queued))
        np.testing.assert_array_equal(np.concatenate(heard), assistant.audio)
        sent = [e["type"] for e in recorder.wire("client")]
        assert "conversation.item.truncate" not in sent and "input_audio_buffer.commit" not in sent
        assert sent.count("response.create") == 1  # the cough was not answered
        # A second reply, then real speech over it: cut at the pause position, then answered.
        await client.create_response()
        await client.wait_for_response_done(5)
        second = [i for i in client.conversation.items if i.role == "assistant"][-1]
        client.playback.pull(24 * 250)
        await stream(client, user_audio(REAL_MS))
        await truncated(recorder)
        (truncate,) = recorder.wire("client", "conversation.item.truncate")
        assert (truncate["item_id"], truncate["audio_end_ms"]) == (second.id, 250)
        await until(lambda: len(recorder.wire("client", "response.create")) == 3)
        assert recorder.errors() == []


async def test_a_cough_at_microphone_pace_is_not_cut_by_the_timer_before_its_stop_arrives(
) -> None:
    """The server reports the stop only ``silence_duration_ms`` after the cough: the decision
    timer (wall clock) must wait for it."""
    session = session_with(PCM16[0], server_vad(interrupt_response=False,
                                                silence_duration_ms=500))
    async with Simulator(responder=speech_responder(1000)) as sim, RealtimeClient(
        sim.url, api_key="sk-test", session=session, barge_in=DECIDE,
    ) as client:
        recorder = Recorder(client)
        assistant = await reply(client)
        heard = [client.playback.pull(24 * 300)]
        audio = np.concatenate([user_audio(COUGH_MS), np.zeros(24 * 300, dtype=np.float32)])
        deadline = anyio.current_time()
        for start in range(0, len(audio), 480):  # 20 ms frames, in real time
            client.append_input_audio(audio[start:start + 480])
            deadline += 0.02
            await anyio.sleep(max(0.0, deadline - anyio.current_time()))
        await until(lambda: recorder.wire("server", "input_audio_buffer.speech_stopped"))
        await anyio.sleep(0.1)
        assert client._barge_in.decision.false_interruptions == 1
        heard.append(client.playback.pull(client.playback.queued))
        np.testing.assert_array_equal(np.concatenate(heard), assistant.audio)
        assert recorder.wire("client", "conversation.item.truncate") == []


class LateTranscripts:
    """A ``connect=`` link to the simulator whose input transcripts arrive 150 ms late and,
    if ``transcript`` is given, say that instead (an empty one: nobody spoke)."""

    def __init__(self, url: str, transcript: str | None) -> None:
        self.url = url
        self.transcript = transcript

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[Any]:
        url, headers = realtime_request(self.url, api_key="sk-test", protocol="ga")
        async with open_websocket(url, headers=headers) as inner:
            yield _RewritingLink(inner, self.transcript)


class _RewritingLink:
    def __init__(self, inner: Any, transcript: str | None) -> None:
        self.inner = inner
        self.transcript = transcript

    async def send_text(self, message: str | bytes) -> None:
        await self.inner.send_text(message)

    async def receive_raw(self) -> tuple[bytes, bool]:
        data, is_text = await self.inner.receive_raw()
        if b"input_audio_transcription.completed" in data:
            await anyio.sleep(0.15)
            if self.transcript is not None:
                event = json.loads(data)
                event["transcript"] = self.transcript
                data = json.dumps(event).encode()
        return data, is_text


@pytest.mark.parametrize("transcript", [None, ""], ids=["words", "empty"])
async def test_with_transcription_on_a_paused_decision_waits_for_the_words(
    transcript: str | None
) -> None:
    session = session_with(PCM16[0], server_vad(interrupt_response=False))
    session["audio"]["input"]["transcription"] = {"model": "gpt-4o-transcribe"}
    async with Simulator(responder=speech_responder(1000)) as sim, RealtimeClient(
        session=session, barge_in=DECIDE, connect=LateTranscripts(sim.url, transcript),
    ) as client:
        recorder = Recorder(client)
        assistant = await reply(client)
        heard = [client.playback.pull(24 * 300)]
        await stream(client, user_audio(REAL_MS))
        await until(lambda: recorder.wire(
            "server", "conversation.item.input_audio_transcription.completed"))
        await anyio.sleep(0.1)
        if transcript is None:
            # Long enough at the stop, but the cut waited for the (late) words.
            order = [e["event"]["type"] for e in recorder.events if e.type == "realtime.event"
                     and e["event"]["type"] in (
                         "input_audio_buffer.speech_stopped", "conversation.item.truncate",
                         "conversation.item.input_audio_transcription.completed")]
            assert order == ["input_audio_buffer.speech_stopped",
                             "conversation.item.input_audio_transcription.completed",
                             "conversation.item.truncate"]
            (truncate,) = recorder.wire("client", "conversation.item.truncate")
            assert truncate["audio_end_ms"] == 300
        else:
            # 600 ms of sound, but the transcript is empty: a false interruption.
            assert recorder.wire("client", "conversation.item.truncate") == []
            assert not client.playback.paused
            heard.append(client.playback.pull(client.playback.queued))
            np.testing.assert_array_equal(np.concatenate(heard), assistant.audio)
            assert client._barge_in.decision.false_interruptions == 1
        assert recorder.errors() == []


async def test_the_reply_to_the_interrupting_turn_is_not_cut_with_the_old_one() -> None:
    """The decision falls at the speech stop, right before the server starts its reply to the
    turn (create_response, the old reply being done): only the old reply is cut."""
    session = session_with(PCM16[0], server_vad(interrupt_response=False,
                                                create_response=True))
    async with Simulator(responder=speech_responder(1000)) as sim, RealtimeClient(
        sim.url, api_key="sk-test", session=session, barge_in=DECIDE,
    ) as client:
        recorder = Recorder(client)
        first = await reply(client)
        client.playback.pull(24 * 300)
        await stream(client, user_audio(REAL_MS))
        await until(lambda: len(recorder.wire("server", "response.done")) == 2, 10)
        await truncated(recorder)
        await anyio.sleep(0.1)
        statuses = [e["response"]["status"] for e in recorder.wire("server", "response.done")]
        assert statuses == ["completed", "completed"]
        assert recorder.wire("client", "response.cancel") == []
        (truncate,) = recorder.wire("client", "conversation.item.truncate")
        assert (truncate["item_id"], truncate["audio_end_ms"]) == (first.id, 300)
        second = [i for i in client.conversation.items if i.role == "assistant"][-1]
        assert second.id != first.id and len(second.audio) > 0
        # The new reply plays in full.
        assert client.playback.current == (second.id, 0)
        assert client.playback.queued == len(second.audio)
        assert recorder.errors() == []


async def test_after_a_cut_the_old_reports_do_not_cut_again() -> None:
    async with Simulator(responder=speech_responder(800)) as sim, RealtimeClient(
        sim.url, api_key="sk-test", session=session_with(PCM16[0], server_vad()),
        local_playback=False,
    ) as client:
        recorder = Recorder(client)
        first = await reply(client)
        client.report_playback(first.id, 300)
        await stream(client, user_audio(REAL_MS))
        await truncated(recorder)
        await client.create_response()
        await client.wait_for_response_done(5)
        # The player has not reported anything of the new reply when the user speaks again.
        await stream(client, user_audio(REAL_MS))
        await until(lambda: len([e for e in recorder.events
                                 if e.type == "conversation.interrupted"]) == 2)
        await anyio.sleep(0.1)
        (truncate,) = recorder.wire("client", "conversation.item.truncate")
        assert (truncate["item_id"], truncate["audio_end_ms"]) == (first.id, 300)
        assert [e["item_id"] for e in recorder.events if e.type == "playback.flush"] == [
            first.id, None]
        assert recorder.errors() == []
