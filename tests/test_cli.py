"""The `realtalk` command line, run as a user runs it (a subprocess of the installed package)."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from realtalk.simulator import synthesize_speech

SCRIPT = Path(sys.executable).with_name("realtalk")


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 90):
    environment = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    environment.update(env or {})
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, env=environment)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2"), wav.getframerate()


def write_speech_wav(path: Path, rate: int, channels: int) -> float:
    """espeak-free speech-like input: the simulator's own synthetic voice, resampled with
    numpy's linear interpolation (an independent path) to ``rate``, in ``channels``."""
    speech = np.frombuffer(synthesize_speech("Hello, could you book a table for two?").pcm,
                           dtype=np.int16).astype(np.float64)
    t = np.arange(int(speech.shape[0] * rate / 24000)) * 24000 / rate
    mono = np.interp(t, np.arange(speech.shape[0]), speech).astype("<i2")
    frames = np.repeat(mono[:, None], channels, axis=1)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(frames.tobytes())
    return mono.shape[0] / rate


def test_the_readme_command_runs_a_turn_and_writes_the_reply(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert 'realtalk talk "What\'s the weather like in Paris?" --out reply.wav' in readme
    result = run("talk", "What's the weather like in Paris?", "--out", str(tmp_path / "r.wav"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "embedded simulator" in lines[0]
    assert "weather like in Paris" in lines[1]  # the reply transcript, as it streamed
    samples, rate = read_wav(tmp_path / "r.wav")
    assert rate == 24000 and samples.shape[0] > rate // 2
    assert f"reply audio                {samples.shape[0] / rate:.2f} s" in result.stdout


def test_json_log_accounts_for_every_reply_sample(tmp_path: Path) -> None:
    result = run("talk", "Count to three.", "--json", "--out", str(tmp_path / "r.wav"))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["source"] for r in records} == {"client", "server"}
    done = [r["event"] for r in records if r["event"]["type"] == "response.done"]
    reply_id = done[-1]["response"]["id"]
    deltas = [base64.b64decode(r["event"]["delta"]) for r in records
              if r["event"]["type"] == "response.output_audio.delta"
              and r["event"]["response_id"] == reply_id]
    expected = np.frombuffer(b"".join(deltas), dtype="<i2")
    samples, _ = read_wav(tmp_path / "r.wav")
    np.testing.assert_array_equal(samples, expected)


@pytest.mark.parametrize("extra", [[], ["--format", "g711_ulaw"], ["--vad", "none"],
                                   ["--vad", "local"], ["--protocol", "beta"]])
def test_audio_turn_from_a_44k_stereo_wav(tmp_path: Path, extra: list[str]) -> None:
    seconds = write_speech_wav(tmp_path / "in.wav", 44100, 2)
    result = run("talk", "--audio", str(tmp_path / "in.wav"), "--fast", "--out-rate", "16000",
                 "--out", str(tmp_path / "r.wav"), *extra)
    assert result.returncode == 0, result.stderr
    # The simulator's reply names how much speech it heard: all of it, in one turn.
    heard = float(result.stdout.split("I heard ")[1].split(" s")[0])
    assert seconds - 0.1 <= heard <= seconds + 1.0, result.stdout
    samples, rate = read_wav(tmp_path / "r.wav")
    assert rate == 16000 and samples.shape[0] > 8000


def test_simulate_serves_until_interrupted() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with subprocess.Popen([str(SCRIPT), "simulate", "--port", str(port), "--pace", "fast",
                           "--api-key", "sk-good"], stdout=subprocess.PIPE, text=True) as server:
        serve_one_turn_each_way(server, port)


def serve_one_turn_each_way(server: subprocess.Popen[str], port: int) -> None:
    try:
        assert f"ws://127.0.0.1:{port}/v1/realtime" in server.stdout.readline()
        url = f"ws://127.0.0.1:{port}/v1/realtime"
        ok = run("talk", "hello", "--url", url, env={"OPENAI_API_KEY": "sk-good"})
        assert ok.returncode == 0 and "hello" in ok.stdout, ok.stderr
        refused = run("talk", "hello", "--url", url, env={"OPENAI_API_KEY": "sk-bad"})
        assert refused.returncode == 1
        assert refused.stderr.count("\n") == 1 and "refused the API key" in refused.stderr
    finally:
        server.send_signal(2)
        assert server.wait(timeout=10) == 130
    log = server.stdout.read()  # one line as each connection opens and as it closes
    assert log.count("opened: /v1/realtime") == 2 and "closed after" in log
    assert "code 3000" in log


def float_wav(path: Path) -> None:
    data = np.zeros(160, dtype="<f4").tobytes()
    header = (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
              + struct.pack("<IHHIIHH", 16, 3, 1, 16000, 64000, 4, 32)
              + b"data" + struct.pack("<I", len(data)))
    path.write_bytes(header + data)


@pytest.mark.parametrize("case", ["missing", "not-pcm", "unreachable", "nothing-to-say"])
def test_errors_are_one_line_and_a_non_zero_exit(tmp_path: Path, case: str) -> None:
    if case == "missing":
        result = run("talk", "--audio", str(tmp_path / "nope.wav"))
        expected = "no such file"
    elif case == "not-pcm":
        float_wav(tmp_path / "float.wav")
        result = run("talk", "--audio", str(tmp_path / "float.wav"))
        expected = "not integer PCM"
    elif case == "unreachable":
        with socket.socket() as probe:  # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        started = time.monotonic()
        result = run("talk", "hi", "--url", f"ws://127.0.0.1:{port}/v1/realtime")
        assert time.monotonic() - started < 30
        expected = "cannot reach"
    else:
        result = run("talk")
        expected = "give one of TEXT, --audio IN.wav or --mic"
    assert result.returncode == 1
    assert result.stderr.startswith("realtalk: ") and expected in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr  # one line, no traceback


def test_devices_need_the_extra() -> None:
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError):
        result = run("talk", "--mic")
        assert result.returncode == 1 and "realtalk[devices]" in result.stderr
    else:  # pragma: no cover - only where the extra is installed
        pytest.skip("sounddevice is installed here")


def test_mic_and_speaker_loop_through_the_sound_devices(tmp_path: Path) -> None:
    # tests/fake_devices/sounddevice.py stands in for the package (no sound card here): its
    # microphone speaks at real-time pace, its speaker records what the callback was given.
    speech = np.frombuffer(synthesize_speech("Hello, are you there?").pcm, dtype=np.int16)
    np.save(tmp_path / "mic.npy", speech)
    fake = Path(__file__).with_name("fake_devices")
    result = run("talk", "--mic", "--speaker", "--turns", "1", "--out", str(tmp_path / "r.wav"),
                 env={"PYTHONPATH": str(fake), "FAKE_MIC": str(tmp_path / "mic.npy"),
                      "FAKE_SPEAKER": str(tmp_path / "speaker.npy")})
    assert result.returncode == 0, result.stderr
    assert "listening" in result.stdout
    heard = float(result.stdout.split("I heard ")[1].split(" s")[0])
    assert abs(heard - speech.shape[0] / 24000) < 0.6, result.stdout
    reply, _ = read_wav(tmp_path / "r.wav")
    played = np.load(tmp_path / "speaker.npy")
    # The speaker was given the reply, sample for sample, between silences.
    start = int(np.flatnonzero(played)[0]) - int(np.flatnonzero(reply)[0])
    np.testing.assert_array_equal(played[start : start + reply.shape[0]], reply)


def test_python_dash_m_is_the_same_command() -> None:
    result = subprocess.run([sys.executable, "-m", "realtalk", "--help"], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0 and "talk" in result.stdout and "simulate" in result.stdout


def test_bench_prints_realtalk_next_to_the_usual_way() -> None:
    result = run("bench", timeout=120)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.rstrip().endswith("x")]
    names = " ".join(rows)
    for work in ("float32 -> pcm16", "base64 encode", "uplink 24 kHz", "downlink delta JSON"):
        assert work in names
    for row in rows:  # realtalk's figure, the alternative's, and their ratio, all positive
        ours, theirs = (float(cell[:-1]) for cell in row.split() if cell.endswith("u"))
        assert ours > 0 and theirs > 0
        # the ratio is of the unrounded times; the printed times carry 2 decimals
        assert float(row.split()[-1][:-1]) == pytest.approx(theirs / ours, rel=0.05, abs=0.1)
