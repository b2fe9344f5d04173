"""``realtalk talk --mic --speaker --echo-cancel`` through the fake sound devices
(tests/fake_devices/sounddevice.py: a microphone speaking at real-time pace, a speaker keeping
what its callback was given), and its misuse refused in one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from realtalk.simulator import synthesize_speech

SCRIPT = Path(sys.executable).with_name("realtalk")
FAKE_DEVICES = Path(__file__).with_name("fake_devices")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    environment.update(env or {})
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=90,
                          env=environment)


def read_wav(path: Path) -> np.ndarray:
    """The mono PCM16 samples, through the stdlib's reader."""
    with wave.open(str(path), "rb") as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")


def test_the_mic_loop_runs_with_the_echo_canceller(tmp_path: Path) -> None:
    speech = np.frombuffer(synthesize_speech("Hello, are you there?").pcm, dtype=np.int16)
    np.save(tmp_path / "mic.npy", speech)
    result = run("talk", "--mic", "--speaker", "--echo-cancel", "--turns", "1",
                 "--out", str(tmp_path / "r.wav"),
                 env={"PYTHONPATH": str(FAKE_DEVICES), "FAKE_MIC": str(tmp_path / "mic.npy"),
                      "FAKE_SPEAKER": str(tmp_path / "speaker.npy")})
    assert result.returncode == 0, result.stderr
    # The user's speech came through the canceller whole (nothing played while they spoke):
    # the server heard all of it.
    heard = float(result.stdout.split("I heard ")[1].split(" s")[0])
    assert abs(heard - speech.shape[0] / 24000) < 0.6, result.stdout
    found = re.search(r"echo canceller cleaned (\d+) frames \((\d+) without", result.stdout)
    assert found, result.stdout
    # Every 10 ms of the microphone, from its start to the end of the reply, was cleaned.
    reply = read_wav(tmp_path / "r.wav")
    assert int(found[1]) >= (speech.shape[0] + reply.shape[0]) // 240
    played = np.load(tmp_path / "speaker.npy")
    start = int(np.flatnonzero(played)[0]) - int(np.flatnonzero(reply)[0])
    np.testing.assert_array_equal(played[start : start + reply.shape[0]], reply)


@pytest.mark.parametrize("args", [["hi", "--echo-cancel"], ["--mic", "--echo-cancel"],
                                  ["hi", "--speaker", "--echo-cancel"]])
def test_echo_cancel_without_mic_and_speaker_is_one_line(args: list[str]) -> None:
    result = run("talk", *args, env={"PYTHONPATH": str(FAKE_DEVICES)})
    assert result.returncode == 1, result.stderr
    assert result.stderr == ("realtalk: --echo-cancel cleans the microphone of the speaker's "
                             "echo: it needs --mic and --speaker\n")
