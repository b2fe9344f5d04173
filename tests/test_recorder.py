"""The session recorder (realtalk.recorder, ``client.record``) against the simulator, on asyncio
and trio: the WAV's two channels line up with what was sent and what a clocked fake speaker
pulled (its own log of pull times and samples is the oracle), a barge-in's cut shows, the
JSONL log holds every wire event, and a recording whose process was SIGKILLed still reads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import numpy.typing as npt
import pytest
from client_helpers import until

from realtalk import RealtimeClient
from realtalk.cli import main as cli_main
from realtalk.recorder import HOLD_S, SessionRecorder, recording_paths
from realtalk.simulator import Simulator, synthesize_speech
from realtalk.simulator.responder import Audio, ResponseContext
from realtalk.wav import read_wav

MANUAL_TURNS = {"audio": {"input": {"turn_detection": None}}}
RATE = 24000
# How far a placement may be from the oracle's time: a 10 ms device block, and scheduling on
# a busy shared machine.
SLACK_S = 0.03


def sine(ms: int, freq: float, level: int, rate: int = RATE) -> npt.NDArray[np.int16]:
    t = np.arange(rate * ms // 1000) / rate
    # Starts and ends on a non-zero sample, so its first and last non-zero are its ends.
    return (level * np.sin(2 * np.pi * freq * t + 0.5)).astype(np.int16)


REPLY = sine(800, 220, 3000)


def reply_responder(ctx: ResponseContext) -> Any:
    return Audio(REPLY, "one two three four")


class ClockedSpeaker:
    """A sound card's output callback: pulls a 10 ms block from ``client.playback`` every
    10 ms of real time in its own thread (as tests/fake_devices/ does), and logs when it pulled
    what."""

    def __init__(self, client: RealtimeClient, rate: int = RATE, block_ms: int = 10) -> None:
        self.client = client
        self.rate = rate
        self.block = rate * block_ms // 1000
        self.pulls: list[tuple[float, npt.NDArray[np.int16]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        index = 0
        while not self._stop.is_set():
            out = np.zeros(self.block, dtype=np.int16)
            moment = time.monotonic()
            self.client.playback.pull_into(out)
            self.pulls.append((moment, out))
            index += 1
            delay = start + index * self.block / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def first_sound_at(self) -> float:
        """The monotonic time the first non-zero sample was pulled (its block's pull time plus
        its offset in the block)."""
        for moment, block in self.pulls:
            loud = np.flatnonzero(block)
            if len(loud):
                return moment + loud[0] / self.rate
        raise AssertionError("the speaker never played anything")

    def heard(self) -> npt.NDArray[np.int16]:
        return np.concatenate([block for _, block in self.pulls])

    def __enter__(self) -> ClockedSpeaker:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def read_recording(path: Path) -> tuple[npt.NDArray[np.int16], int]:
    """The stereo frames through the stdlib ``wave`` module, the independent reader."""
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (2, 2)
        frames = wav.readframes(wav.getnframes())
        rate = wav.getframerate()
    return np.frombuffer(frames, dtype="<i2").reshape(-1, 2), rate


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def onset(track: npt.NDArray[np.int16]) -> int:
    loud = np.flatnonzero(track)
    assert len(loud), "the track is silent"
    return int(loud[0])


async def test_the_beep_and_the_reply_land_where_they_were_sent_and_played(
    tmp_path: Path,
) -> None:
    beep = sine(200, 1000, 8000)
    async with Simulator(responder=reply_responder) as sim, RealtimeClient(
        sim.url, api_key="sk-test", session=MANUAL_TURNS, record=tmp_path / "call.wav"
    ) as client:
        recorder = client.recording
        assert recorder is not None
        with ClockedSpeaker(client) as speaker:
            await anyio.sleep(0.3)
            beep_at = time.monotonic() - recorder.started_at
            client.append_input_audio(beep)
            await client.commit_input_audio()
            await client.create_response()
            await client.wait_for_response_done(5)
            await until(lambda: client.playback.queued == 0, 5)
            await anyio.sleep(0.1)
        played_at = speaker.first_sound_at() - recorder.started_at

    frames, rate = read_recording(tmp_path / "call.wav")
    assert rate == RATE
    user, agent = frames[:, 0], frames[:, 1]
    # The user's channel: the beep, sample for sample, at the time it was appended.
    start = onset(user)
    assert abs(start / rate - beep_at) < SLACK_S
    assert np.array_equal(user[start : start + len(beep)], beep)
    assert not np.any(user[start + len(beep):])
    # The agent's channel: exactly what the speaker pulled, from the time it pulled it.
    start = onset(agent)
    assert abs(start / rate - played_at) < SLACK_S
    assert np.array_equal(agent[start : start + len(REPLY)], REPLY)
    assert not np.any(agent[start + len(REPLY):])
    heard = speaker.heard()
    heard = heard[onset(heard):]
    shared = min(len(heard), len(agent) - start)
    assert shared >= len(REPLY) and np.array_equal(agent[start : start + shared], heard[:shared])

    log = read_log(tmp_path / "call.jsonl")
    kinds = [(line["source"], line["event"]["type"]) for line in log]
    assert kinds[:2] == [("server", "session.created"), ("client", "session.update")]
    assert ("server", "response.done") in kinds
    (append,) = [line for line in log if line["event"]["type"] == "input_audio_buffer.append"]
    assert append["event"]["audio"] == f"<{len(beep) * 2} bytes>"  # the audio is in the WAV
    assert abs(append["t"] - beep_at) < SLACK_S
    deltas = [line for line in log if line["event"]["type"] == "response.output_audio.delta"]
    assert deltas and all(d["event"]["delta"].endswith(" bytes>") for d in deltas)
    assert [line["t"] for line in log] == sorted(line["t"] for line in log)


async def test_a_barge_in_cut_is_silence_from_the_cut_on(tmp_path: Path) -> None:
    async with Simulator(responder=reply_responder) as sim, RealtimeClient(
        sim.url, api_key="sk-test", session=MANUAL_TURNS
    ) as client:
        recorder = client.record(tmp_path)  # a directory: a timestamped name inside it
        with ClockedSpeaker(client) as speaker:
            await client.send_user_message_content("talk to me")
            await client.create_response()
            await client.wait_for_response_done(5)
            (item,) = [i for i in client.conversation.items if i.role == "assistant"]
            await until(lambda: client.playback.played(item.id) >= RATE * 3 // 10, 5)
            cut = await client.interrupt()
            cut_at = time.monotonic() - recorder.started_at
            await anyio.sleep(0.3)
        assert cut is not None
        heard = speaker.heard()
    # How much of the reply the speaker pulled before the cut: REPLY[:played], then zeros.
    heard = heard[onset(heard):]
    differs = np.flatnonzero(heard[: len(REPLY)] != REPLY[: len(heard)])
    played = int(differs[0]) if len(differs) else min(len(heard), len(REPLY))
    assert recorder.wav_path.parent == tmp_path and recorder.wav_path.suffix == ".wav"

    frames, rate = read_recording(recorder.wav_path)
    agent = frames[:, 1]
    start = onset(agent)
    # What was heard, and not a sample more: the reply (800 ms) cut after ~300 ms.
    assert RATE * 3 // 10 <= played < len(REPLY) - RATE // 5
    assert np.array_equal(agent[start : start + played], REPLY[:played])
    assert not np.any(agent[start + played:])
    assert abs((start + played) / rate - cut_at) < SLACK_S + 0.01
    # The truncate the client sent says the same, at the time of the cut.
    log = read_log(recorder.log_path)
    (truncate,) = [line for line in log if line["event"]["type"] == "conversation.item.truncate"]
    assert truncate["source"] == "client"
    assert abs(truncate["event"]["audio_end_ms"] - cut["audio_end_ms"]) == 0
    assert abs(truncate["event"]["audio_end_ms"] / 1000 - played / rate) < 0.002
    assert abs(truncate["t"] - cut_at) < SLACK_S


async def test_input_in_another_rate_and_format_is_resampled_onto_the_one_clock(
    tmp_path: Path,
) -> None:
    # The device runs at 48 kHz; the session takes G.711 mu-law at 8 kHz.
    session = {"audio": {"input": {"turn_detection": None, "format": {"type": "audio/pcmu"}}}}
    async with Simulator(responder=reply_responder) as sim, RealtimeClient(
        sim.url, api_key="sk-test", session=session, playback_rate=48000, input_rate=48000,
        record=tmp_path / "ulaw.wav",
    ) as client:
        recorder = client.recording
        assert recorder is not None
        await until(lambda: client._input_format == "g711_ulaw", 5)
        await anyio.sleep(0.2)
        tone_at = time.monotonic() - recorder.started_at
        client.append_input_audio(sine(300, 440, 8000, rate=48000), 48000)
        await anyio.sleep(0.1)

    frames, rate = read_recording(tmp_path / "ulaw.wav")
    assert rate == 48000
    user = frames[:, 0].astype(np.float64)
    loud = np.flatnonzero(np.abs(user) > 1000)
    assert abs(loud[0] / rate - tone_at) < SLACK_S
    assert abs((loud[-1] - loud[0]) / rate - 0.3) < 0.01
    spectrum = np.abs(np.fft.rfft(user[loud[0] : loud[-1]]))
    peak_hz = np.argmax(spectrum) * rate / (2 * (len(spectrum) - 1))
    assert abs(peak_hz - 440) < 5
    assert not np.any(frames[:, 1])  # nothing was played


CRASHING_WRITER = """
import sys, time
import anyio, numpy as np
from realtalk import RealtimeClient
from realtalk.simulator import Simulator, synthesize_speech

async def main():
    beep = (8000 * np.sin(2 * np.pi * 1000 * np.arange(2400) / 24000 + 0.5)).astype(np.int16)
    async with Simulator() as sim, RealtimeClient(
            sim.url, api_key="sk-test", record=sys.argv[1],
            session={"audio": {"input": {"turn_detection": None}}}) as client:
        while True:
            client.append_input_audio(beep)  # 100 ms of beep every 200 ms
            await anyio.sleep(0.2)

anyio.run(main)
"""


def test_a_recording_reads_after_its_process_was_killed(tmp_path: Path) -> None:
    target = tmp_path / "killed.wav"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-c", CRASHING_WRITER, str(target)], env=env,
                               stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        # Wait until the header says a second of audio is in (the header is rewritten on
        # every flush), then kill the writer mid-run: no close, no final flush.
        while time.monotonic() < deadline:
            if target.exists() and target.stat().st_size >= 44:
                data_bytes = int.from_bytes(target.read_bytes()[40:44], "little")
                if data_bytes >= RATE * 4 * 1.2:
                    break
            assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
            time.sleep(0.05)
        else:
            raise AssertionError("the recording never reached 1.2 s")
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
        assert process.stderr is not None
        process.stderr.close()

    frames, rate = read_recording(target)  # the stdlib reads it as it is
    assert len(frames) >= RATE * 1.2
    assert read_wav(target).samples.shape == (len(frames), 2)  # and so does realtalk.wav
    # The beeps are there, 100 ms of sound in every 200 ms (the last one may be cut).
    user = frames[:, 0]
    first = onset(user)
    loud_share = np.count_nonzero(user[first:]) / len(user[first:])
    assert 0.4 < loud_share < 0.65
    # Every complete line of the log parses; a torn last line is the only loss allowed.
    lines = (tmp_path / "killed.jsonl").read_bytes().split(b"\n")
    complete = [json.loads(line) for line in lines[:-1]]
    assert any(line["event"]["type"] == "input_audio_buffer.append" for line in complete)


async def test_the_file_grows_while_the_session_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writers: set[str] = set()
    write_frames = SessionRecorder._write_frames

    def spy(self: SessionRecorder, frames: int) -> None:
        writers.add(threading.current_thread().name)
        write_frames(self, frames)

    monkeypatch.setattr(SessionRecorder, "_write_frames", spy)
    async with Simulator() as sim, RealtimeClient(
        sim.url, api_key="sk-test", session=MANUAL_TURNS, record=tmp_path / "live.wav"
    ) as client:
        client.append_input_audio(sine(100, 1000, 8000))
        await anyio.sleep(HOLD_S + 0.6)
        # Readable mid-session, and already holding the beep.
        frames, _ = read_recording(tmp_path / "live.wav")
        assert len(frames) >= RATE * 0.5 and np.any(frames[:, 0])
        with pytest.raises(RuntimeError, match="already recording"):
            client.record(tmp_path / "again.wav")
    assert writers == {"realtalk-recorder"}  # never the event loop's thread


async def test_a_full_disk_stops_the_recording_not_the_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(self: SessionRecorder, frames: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(SessionRecorder, "_write_frames", disk_full)
    async with Simulator() as sim, RealtimeClient(
        sim.url, api_key="sk-test", session=MANUAL_TURNS, record=tmp_path / "ok.wav"
    ) as client:
        recorder = client.recording
        assert recorder is not None
        client.append_input_audio(sine(100, 1000, 8000))
        await until(lambda: not recorder._thread.is_alive(), 5)  # the worker gave up
        assert recorder.closed
        assert isinstance(recorder.error, OSError) and recorder.error.errno == 28
        assert recorder._wav.closed and recorder._log.closed
        # The session goes on.
        await client.send_user_message_content("still there?")
        await client.create_response()
        await client.wait_for_response_done(5)


def test_bad_paths_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.wav file or an existing directory"):
        recording_paths(tmp_path / "call.mp3")
    with pytest.raises(ValueError, match="no directory"):
        recording_paths(tmp_path / "missing" / "call.wav")
    assert recording_paths(tmp_path / "a.wav") == (tmp_path / "a.wav", tmp_path / "a.jsonl")


async def test_a_bad_record_path_fails_the_session_start_clearly(tmp_path: Path) -> None:
    async with Simulator() as sim:
        with pytest.raises(ValueError, match="no directory"):
            async with RealtimeClient(sim.url, api_key="sk-test",
                                      record=tmp_path / "missing" / "x.wav"):
                pass


def test_talk_records_into_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    assert cli_main(["talk", "Hello there", "--fast", "--record", str(tmp_path)]) == 0
    (wav_path,) = tmp_path.glob("session-*.wav")
    frames, rate = read_recording(wav_path)
    assert rate == RATE and len(frames) > 0
    log = read_log(wav_path.with_suffix(".jsonl"))
    assert ("server", "response.done") in [(x["source"], x["event"]["type"]) for x in log]
    assert str(wav_path) in capsys.readouterr().out

    # A missing directory is made; a file in the way is one line on stderr.
    assert cli_main(["talk", "Hello", "--fast", "--record", str(tmp_path / "new")]) == 0
    assert len(list((tmp_path / "new").glob("session-*.jsonl"))) == 1
    capsys.readouterr()
    (tmp_path / "file").write_text("x")
    assert cli_main(["talk", "Hello", "--record", str(tmp_path / "file")]) == 1
    err = capsys.readouterr().err
    assert err == f"realtalk: --record {tmp_path / 'file'}: not a directory\n"


async def test_wire_listeners_see_the_handshake_too() -> None:
    # The handshake read session.created (or the refusal) without logging it: realtime.event
    # listeners, and so the recorder's log, started at the client's session.update.
    async with Simulator() as sim:
        client = RealtimeClient(sim.url, api_key="sk-test")
        seen: list[tuple[str, str]] = []
        client.on("realtime.event", lambda e: seen.append((e["source"], e["event"]["type"])))
        async with client:
            await until(lambda: ("server", "session.updated") in seen, 5)
    assert seen[:2] == [("server", "session.created"), ("client", "session.update")]


def test_talk_records_the_mic_and_what_the_speaker_played(tmp_path: Path) -> None:
    # tests/fake_devices/sounddevice.py: a microphone speaking at real-time pace, and a
    # speaker pulling on its clock that keeps what its callback was given.
    speech = np.frombuffer(synthesize_speech("Hello, are you there?").pcm, dtype=np.int16)
    np.save(tmp_path / "mic.npy", speech)
    fake = Path(__file__).with_name("fake_devices")
    environment = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    environment.update(PYTHONPATH=os.pathsep.join([str(fake), *sys.path]),
                       FAKE_MIC=str(tmp_path / "mic.npy"),
                       FAKE_SPEAKER=str(tmp_path / "speaker.npy"))
    result = subprocess.run(
        [sys.executable, "-m", "realtalk", "talk", "--mic", "--speaker", "--turns", "1",
         "--record", str(tmp_path / "rec")],
        capture_output=True, text=True, timeout=90, env=environment)
    assert result.returncode == 0, result.stderr
    (wav_path,) = (tmp_path / "rec").glob("session-*.wav")
    frames, rate = read_recording(wav_path)
    assert rate == RATE
    # Left: the microphone's speech, sample for sample (it went float32 and back).
    user = frames[:, 0]
    start = onset(user)
    first = onset(speech)
    np.testing.assert_allclose(user[start : start + len(speech) - first], speech[first:], atol=1)
    # Right: what the speaker was given, sample for sample, once it had something to play.
    played = np.load(tmp_path / "speaker.npy").astype(np.int16)
    agent = frames[:, 1]
    played = played[onset(played):]
    played = played[: len(np.trim_zeros(played, "b"))]
    start = onset(agent)
    np.testing.assert_array_equal(agent[start : start + len(played)], played)
    # The reply came after the speech.
    assert start > onset(user) + len(speech) - first
