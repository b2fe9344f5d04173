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


def adpcm_wav(path: Path) -> None:
    data = bytes(256)
    header = (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
              + struct.pack("<IHHIIHH", 16, 2, 1, 8000, 4096, 256, 4)
              + b"data" + struct.pack("<I", len(data)))
    path.write_bytes(header + data)


def plain_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())


def float_speech_wav(path: Path) -> None:
    """Speech as ffmpeg writes it by default for float input: IEEE float32, extensible header."""
    speech = np.frombuffer(synthesize_speech("Hello there, how are you?").pcm, dtype=np.int16)
    data = (speech.astype(np.float32) / 32768.0).astype("<f4").tobytes()
    guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    fmt = (struct.pack("<HHIIHH", 0xFFFE, 1, 24000, 96000, 4, 32)
           + struct.pack("<HHIH", 22, 32, 4, 3) + guid_tail)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"data" + struct.pack("<I", len(data)) + data)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def free_port() -> int:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


ERROR_CASES = ["missing", "not-pcm", "unreachable", "nothing-to-say", "two-inputs",
               "out-missing-folder", "out-is-a-directory", "silent-wav", "empty-wav",
               "below-8k", "truncated-wav", "url-not-a-url", "url-bad-scheme", "url-bad-port",
               "audio-is-a-directory"]


@pytest.mark.parametrize("case", ERROR_CASES)
def test_errors_are_one_line_and_a_non_zero_exit(tmp_path: Path, case: str) -> None:
    quiet = np.zeros(24000, dtype=np.int16)
    started = time.monotonic()
    if case == "missing":
        result = run("talk", "--audio", str(tmp_path / "nope.wav"))
        expected = "no such file"
    elif case == "not-pcm":
        adpcm_wav(tmp_path / "adpcm.wav")
        result = run("talk", "--audio", str(tmp_path / "adpcm.wav"))
        expected = "not PCM or float audio (format tag 0x0002"
    elif case == "unreachable":
        result = run("talk", "hi", "--url", f"ws://127.0.0.1:{free_port()}/v1/realtime")
        expected = "cannot reach"
    elif case == "nothing-to-say":
        result = run("talk")
        expected = "give one of TEXT, --audio IN.wav or --mic"
    elif case == "two-inputs":
        plain_wav(tmp_path / "q.wav", quiet, 24000)
        result = run("talk", "hi", "--audio", str(tmp_path / "q.wav"))
        expected = "give only one of TEXT, --audio IN.wav or --mic"
    elif case == "out-missing-folder":
        result = run("talk", "hi", "--out", str(tmp_path / "no" / "such" / "r.wav"))
        expected = f"no such folder: {tmp_path / 'no' / 'such'}"
    elif case == "out-is-a-directory":
        result = run("talk", "hi", "--out", str(tmp_path))
        expected = "is a directory"
    elif case == "silent-wav":
        plain_wav(tmp_path / "q.wav", quiet, 16000)
        result = run("talk", "--audio", str(tmp_path / "q.wav"))
        expected = f"no speech detected in {tmp_path / 'q.wav'}: 1.50 s, loudest digital silence"
    elif case == "empty-wav":
        plain_wav(tmp_path / "q.wav", quiet[:0], 16000)
        result = run("talk", "--audio", str(tmp_path / "q.wav"))
        expected = "holds no audio"
    elif case == "below-8k":
        plain_wav(tmp_path / "q.wav", quiet, 4000)
        result = run("talk", "--audio", str(tmp_path / "q.wav"))
        expected = "sampled at 4000 Hz: realtalk needs at least 8000 Hz"
    elif case == "truncated-wav":
        plain_wav(tmp_path / "q.wav", quiet, 16000)
        (tmp_path / "q.wav").write_bytes((tmp_path / "q.wav").read_bytes()[:1000])
        result = run("talk", "--audio", str(tmp_path / "q.wav"))
        expected = "truncated: the header promises 48000 bytes of audio, the file holds 956"
    elif case == "url-not-a-url":
        result = run("talk", "hi", "--url", "notaurl")
        expected = "--url must be a ws:// or wss:// URL with a host"
    elif case == "url-bad-scheme":
        result = run("talk", "hi", "--url", "ftp://127.0.0.1/v1/realtime")
        expected = "--url must be a ws:// or wss:// URL"
    elif case == "url-bad-port":
        result = run("talk", "hi", "--url", "ws://127.0.0.1:99999/v1/realtime")
        expected = "is not a valid URL"
    else:
        result = run("talk", "--audio", str(tmp_path))
        expected = "is a directory, not a WAV file"
    assert time.monotonic() - started < 30
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("realtalk: ") and expected in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr  # one line, no traceback
    assert "API key" not in result.stderr


@pytest.mark.parametrize("args", [["simulate", "--port", "70000"], ["relay", "--port", "-1"],
                                  ["simulate", "--port", "http"], ["talk", "--format", "mp3"],
                                  ["nonsense"]])
def test_usage_mistakes_are_one_line(args: list[str]) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("realtalk: ") and result.stderr.count("\n") == 1, result.stderr
    assert "--help" in result.stderr


def test_a_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("simulate", "--port", str(port))
    assert result.returncode == 1
    assert result.stderr == f"realtalk: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_a_float_extensible_wav_is_a_turn(tmp_path: Path) -> None:
    float_speech_wav(tmp_path / "q.wav")
    result = run("talk", "--audio", str(tmp_path / "q.wav"), "--fast", "--out",
                 str(tmp_path / "r.wav"))
    assert result.returncode == 0, result.stderr
    assert read_wav(tmp_path / "r.wav")[0].shape[0] > 0


def test_vad_none_says_what_it_sends(tmp_path: Path) -> None:
    plain_wav(tmp_path / "q.wav", np.zeros(8000, dtype=np.int16), 16000)
    result = run("talk", "--audio", str(tmp_path / "q.wav"), "--vad", "none", "--fast")
    assert result.returncode == 0, result.stderr
    assert (f"realtalk: sending 0.50 s of {tmp_path / 'q.wav'} (loudest: digital silence) and "
            "committing it: --vad none detects no turns") in result.stderr


def test_devices_need_the_extra() -> None:
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError):
        result = run("talk", "--mic")
        assert result.returncode == 1 and "realtalk[devices]" in result.stderr
    else:  # pragma: no cover - only where the extra is installed
        pytest.skip("sounddevice is installed here")


def test_devices_without_portaudio_name_the_library(tmp_path: Path) -> None:
    # What sounddevice does when the extra is installed but the PortAudio library is not.
    (tmp_path / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    result = run("talk", "--mic", env={"PYTHONPATH": path})
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "need the PortAudio library, which is missing (PortAudio library not found)" in (
        result.stderr)
    assert "libportaudio2" in result.stderr and "realtalk[devices]" not in result.stderr


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


def test_bench_names_the_rows_it_leaves_out(tmp_path: Path) -> None:
    # soxr and audioop made unimportable, as on a machine without them.
    for name in ("soxr", "audioop"):
        (tmp_path / f"{name}.py").write_text(f"raise ImportError('no {name} here')\n")
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    result = run("bench", env={"PYTHONPATH": path}, timeout=120)
    assert result.returncode == 0, result.stderr
    table = result.stdout.split("note:")[0]
    assert "uplink 24 kHz" in table and "48 kHz" not in table and "mu-law" not in table
    assert "note: soxr is not installed: the 48 kHz rows" in result.stdout
    assert "note: audioop is not importable: the mu-law row is left out" in result.stdout
