"""Every example in examples/ runs as shipped against the embedded simulator."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[1] / "examples"

# What each example must print: the proof that it did its job, not only that it exited 0.
EXPECTED = {
    "text_turn.py": r"capital of France.*\n\[assistant: [1-9]\d*\.\d\d s of audio\]",
    "text_turn_trio.py": r"capital of France.*\n\[assistant: [1-9]\d*\.\d\d s of audio\]",
    "tools.py": r"function_call\s+get_weather\s+\{.*\n.*function_call_output.*temperature_c"
    r".*\n\s+message\s+assistant\s+The get_weather tool returned",
    "barge_in.py": r"played 0\.75 s in stereo, peak (0\.[1-9]\d|1\.00)\n"
    r"truncated item_\w+ at 750 ms",
    # The cut lands on the last mark the phone acknowledged, and the server keeps exactly that.
    "phone_gateway.py": r"playing the reply's 20 ms up to (6[0-9]{2}|7[0-9]{2}) ms when the agent "
    r"cleared the line; marks acknowledged (\d+) ms \((0|20) ms playing, not yet confirmed\)\n"
    r"truncated item_\w+ at \2 ms; the server "
    r"keeps \2 ms of it",
    "telephony_g711.py": r"caller 3\.\d\d s -> reply \d+ mu-law bytes .*: I heard 3\.\d\d s of",
    # The reply through the simulated room into the mic: heard to its end, no speech heard.
    "echo_device.py": r"echo cancellation on: the reply played 7\.5\d s of 7\.59 s; speech "
    r"heard at \[\] s into it\nframes cleaned [1-9]\d*, reference underruns 0",
}


def test_every_example_is_covered() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_against_the_simulator(name: str) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 0, result.stderr
    assert re.search(EXPECTED[name], result.stdout), result.stdout


def run_echo_device(*args: str) -> tuple[float, float, list[float]]:
    """examples/echo_device.py's run: seconds of the reply played, its length, and when the
    server heard speech (seconds into the reply)."""
    result = subprocess.run([sys.executable, str(EXAMPLES / "echo_device.py"), *args],
                            capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    found = re.search(r"the reply played (\d+\.\d\d) s of (\d+\.\d\d) s; speech heard at "
                      r"\[([\d., ]*)\] s", result.stdout)
    assert found, result.stdout
    starts = [float(at) for at in found[3].split(",") if at.strip()]
    return float(found[1]), float(found[2]), starts


def test_without_the_canceller_the_agent_interrupts_itself() -> None:
    played, full, starts = run_echo_device("--no-echo-cancel")
    # Its own voice, back through the room, is "speech": the reply is cut there.
    assert starts and abs(played - starts[0]) < 0.3 and played < full - 1


def test_with_the_canceller_the_user_still_barges_in() -> None:
    played, full, starts = run_echo_device("--barge-in")  # the user speaks 1.5 s in
    assert starts and 1.4 < starts[0] < 1.9, starts
    assert abs(played - starts[0]) < 0.3 and played < full - 1
