"""Transcription sessions through ``RealtimeClient(intent="transcription")`` (issue 23), against
the simulator on asyncio and trio, GA and beta.

Oracles: the raw wire as the client saw it (``realtime.event``), the event names and session
shapes of protocol.md (§1.1 the URL's ``intent``, §3.1 ``transcription_session.update`` in
beta, §5 the transcription events, §6.6 the GA session), and the audio the test itself sent
(the simulator's transcript states the committed audio's length).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from client_helpers import Recorder, speech_then_silence, stream, until

from realtalk.client import RealtimeClient, Transcript
from realtalk.simulator import Simulator, synthesize_speech

DELTA = "conversation.item.input_audio_transcription.delta"
COMPLETED = "conversation.item.input_audio_transcription.completed"
SEGMENT = "conversation.item.input_audio_transcription.segment"
PROTOCOLS = ["ga", "beta"]


def transcription_session(model: str, silence_ms: int = 300) -> dict[str, Any]:
    return {"audio": {"input": {"transcription": {"model": model},
                                "turn_detection": {"type": "server_vad",
                                                   "silence_duration_ms": silence_ms}}}}


def committed_seconds(recorder: Recorder, item_id: str) -> float:
    """The length of an utterance as the server's VAD events bound it: from its start (which
    includes the prefix padding) but not before the previous utterance's end, which was
    committed with that one, to its end."""
    stops = recorder.wire("server", "input_audio_buffer.speech_stopped")
    (started,) = [e for e in recorder.wire("server", "input_audio_buffer.speech_started")
                  if e["item_id"] == item_id]
    (index,) = [i for i, e in enumerate(stops) if e["item_id"] == item_id]
    begin = max(started["audio_start_ms"], stops[index - 1]["audio_end_ms"] if index else 0)
    return (stops[index]["audio_end_ms"] - begin) / 1000


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_transcription_session_gives_each_utterance_its_transcript(protocol: str) -> None:
    async with Simulator() as sim, RealtimeClient(
            sim.url, api_key="sk-test", protocol=protocol, intent="transcription",
            session=transcription_session("gpt-4o-transcribe")) as client:
        recorder = Recorder(client)
        await stream(client, speech_then_silence(700, 600))
        await stream(client, speech_then_silence(1200, 600))
        await until(lambda: len(client.transcripts) == 2
                    and all(t.final for t in client.transcripts))
        committed = [e["item_id"] for e in recorder.wire("server",
                                                        "input_audio_buffer.committed")]
        assert [t.item_id for t in client.transcripts] == committed
        for transcript in client.transcripts:
            deltas = [e["delta"] for e in recorder.wire("server", DELTA)
                      if e["item_id"] == transcript.item_id]
            (completed,) = [e for e in recorder.wire("server", COMPLETED)
                            if e["item_id"] == transcript.item_id]
            # The gpt-4o family streams word by word; the deltas add up to the transcript.
            assert len(deltas) > 1
            assert "".join(deltas) == completed["transcript"] == transcript.text
            assert completed["usage"]["type"] == "tokens"
            seconds = float(re.fullmatch(r"\((\S+) s of speech\)", transcript.text)[1])
            assert seconds == pytest.approx(committed_seconds(recorder, transcript.item_id),
                                            abs=0.011)
        assert client.transcripts[1].text != client.transcripts[0].text
        # No response was asked for or made, and nothing went wrong.
        assert not recorder.wire("server", "response.created")
        assert recorder.errors() == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_session_opens_and_updates_in_the_transcription_shape(protocol: str) -> None:
    async with Simulator() as sim, RealtimeClient(
            sim.url, api_key="sk-test", protocol=protocol, intent="transcription",
            session=transcription_session("gpt-4o-transcribe")) as client:
        recorder = Recorder(client)
        query = parse_qs(urlsplit(client.url).query)
        assert query == {"intent": ["transcription"]}  # §1.1: no model for a transcription
        await client.update_session(audio={"input": {"transcription": {"model": "whisper-1"}}})
        beta = protocol == "beta"
        updated_name = "transcription_session.updated" if beta else "session.updated"

        def model_of(session: dict[str, Any]) -> str:
            config = (session["input_audio_transcription"] if beta
                      else session["audio"]["input"]["transcription"])
            return str(config["model"])

        def whisper_updates() -> list[dict[str, Any]]:
            return [e for e in recorder.wire("server", updated_name)
                    if model_of(e["session"]) == "whisper-1"]

        await until(lambda: recorder.wire("client") and whisper_updates())
        # The raw wire: GA sends session.update of type transcription (§6.6); beta has its own
        # event names, transcription_session.update/.updated, and no type (§3.1).
        (update,) = recorder.wire("client")
        if beta:
            assert update["type"] == "transcription_session.update"
            assert "type" not in update["session"]
        else:
            assert update["type"] == "session.update"
            assert update["session"]["type"] == "transcription"
        assert model_of(update["session"]) == "whisper-1"
        assert whisper_updates()[0]["session"]["object"] == "realtime.transcription_session"
        assert recorder.errors() == []
        # The new model is the one that transcribes: whisper-1 sends one delta and bills time.
        await stream(client, speech_then_silence(700, 600))
        await until(lambda: client.transcripts and client.transcripts[-1].final)
        (delta,) = recorder.wire("server", DELTA)
        (completed,) = recorder.wire("server", COMPLETED)
        assert delta["delta"] == completed["transcript"] == client.transcripts[-1].text
        assert completed["usage"]["type"] == "duration"


async def test_a_diarizing_model_adds_speaker_segments() -> None:
    async with Simulator() as sim, RealtimeClient(
            sim.url, api_key="sk-test", intent="transcription",
            session=transcription_session("gpt-4o-transcribe-diarize")) as client:
        recorder = Recorder(client)
        await stream(client, speech_then_silence(900, 600))
        await until(lambda: client.transcripts and client.transcripts[0].final
                    and client.transcripts[0].segments)
        (transcript,) = client.transcripts
        (segment,) = recorder.wire("server", SEGMENT)
        assert transcript.segments == [{k: segment[k] for k in
                                        ("id", "text", "speaker", "start", "end")}]
        assert segment["text"] == transcript.text
        assert segment["end"] == pytest.approx(committed_seconds(recorder, transcript.item_id),
                                               abs=0.011)


async def test_a_manual_commit_is_transcribed_too() -> None:
    session = transcription_session("gpt-4o-mini-transcribe")
    session["audio"]["input"]["turn_detection"] = None
    async with Simulator() as sim, RealtimeClient(sim.url, api_key="sk-test",
                                                  intent="transcription",
                                                  session=session) as client:
        samples = speech_then_silence(500, 0)
        await stream(client, samples)
        await client.commit_input_audio()
        await until(lambda: client.transcripts and client.transcripts[0].final)
        assert client.transcripts[0].text == f"({samples.shape[0] / 24000:.2f} s of speech)"


# ---- mistakes are refused clearly, before anything doomed is sent ----


async def test_a_transcription_session_has_no_responses() -> None:
    async with Simulator() as sim, RealtimeClient(
            sim.url, api_key="sk-test", intent="transcription",
            session=transcription_session("whisper-1")) as client:
        recorder = Recorder(client)
        with pytest.raises(RuntimeError, match="transcription session has no responses"):
            await client.create_response()
        with pytest.raises(ValueError, match="cannot change its type"):
            await client.update_session(type="realtime")
        assert recorder.wire("client") == []


async def test_a_realtime_session_cannot_become_a_transcription_session() -> None:
    async with Simulator() as sim, RealtimeClient(sim.url, api_key="sk-test") as client:
        with pytest.raises(ValueError, match="cannot change its type"):
            await client.update_session(type="transcription")


@pytest.mark.parametrize(("intent", "session", "message"), [
    ("translation", None, "intent must be 'realtime' or 'transcription'"),
    ("transcription", {"type": "realtime"}, "does not match intent"),
    ("realtime", {"type": "transcription"}, "does not match intent"),
])
def test_a_bad_intent_is_refused_at_construction(intent: Any, session: Any,
                                                 message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RealtimeClient("ws://127.0.0.1:9/v1/realtime", intent=intent, session=session)


def test_a_call_sideband_is_not_a_transcription_session() -> None:
    with pytest.raises(ValueError, match="cannot be a transcription session"):
        RealtimeClient("ws://127.0.0.1:9/v1/realtime", intent="transcription", call_id="rtc_1")


def test_transcript_is_exported() -> None:
    assert Transcript.__doc__


# ---- the command line ----

SCRIPT = Path(sys.executable).with_name("realtalk")
ENVIRONMENT = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}


def write_wav(path: Path, pcm: bytes) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(24000)
        wav.writeframes(pcm)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_talk_transcribe_prints_one_line_per_utterance(tmp_path: Path, protocol: str) -> None:
    pcm = synthesize_speech("Hello, could you book a table for two?").pcm
    gap = bytes(2 * 24000)  # one second of silence splits the two utterances
    write_wav(tmp_path / "in.wav", pcm + gap + pcm)
    result = subprocess.run([str(SCRIPT), "talk", "--transcribe", str(tmp_path / "in.wav"),
                             "--fast", "--protocol", protocol], capture_output=True, text=True,
                            timeout=60, env=ENVIRONMENT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all(re.fullmatch(r"\(\d+\.\d\d s of speech\)", x) for x in lines)
    speech_s = len(pcm) / 2 / 24000
    # Each utterance is about as long as the speech (plus the VAD's padding, at most 0.8 s).
    for line in lines:
        assert speech_s - 0.3 < float(line[1:].split()[0]) < speech_s + 0.8


def test_talk_transcribe_mistakes_are_one_line(tmp_path: Path) -> None:
    write_wav(tmp_path / "in.wav", synthesize_speech("Hello there.").pcm)
    for args, expected in [
        (["--transcribe", str(tmp_path / "missing.wav")], "no such file"),
        (["--transcribe", str(tmp_path / "in.wav"), "--transcription-model", "bogus"],
         "server error invalid_value"),
        (["hello", "--transcribe", str(tmp_path / "in.wav")], "give only one of"),
        (["--transcribe", str(tmp_path / "in.wav"), "--vad", "local"], "not --vad local"),
        (["--transcribe", str(tmp_path / "in.wav"), "--record", str(tmp_path / "rec")],
         "does not go with --transcribe"),
    ]:
        result = subprocess.run([str(SCRIPT), "talk", "--fast", *args], capture_output=True,
                                text=True, timeout=60, env=ENVIRONMENT)
        assert result.returncode == 1
        errors = [x for x in result.stderr.splitlines() if "embedded simulator" not in x]
        assert len(errors) == 1 and expected in errors[0], result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_after_a_reconnect_the_transcripts_go_on_without_a_history_replay(
        protocol: str) -> None:
    from hostile import HostileNetwork

    async with Simulator() as sim:
        network = HostileNetwork(sim.url + "?intent=transcription", protocol=protocol)
        async with RealtimeClient(sim.url, connect=network, protocol=protocol,
                                  intent="transcription", backoff_initial_s=0.01,
                                  session=transcription_session("gpt-4o-transcribe")) as client:
            recorder = Recorder(client)
            await stream(client, speech_then_silence(700, 600))
            await until(lambda: client.transcripts and client.transcripts[0].final)
            network.link.cut()
            await until(lambda: "connection.restored" in recorder.names())
            await stream(client, speech_then_silence(1200, 600))
            await until(lambda: len(client.transcripts) == 2 and client.transcripts[1].final)
            # A transcription session has no model to give a context to: nothing is replayed,
            # and the new session's utterance follows the old one.
            assert recorder.wire("client", "conversation.item.create") == []
            first, second = client.transcripts
            assert first.text != second.text
            assert recorder.errors() == []
