"""A user's program under ``mypy --strict``: plain functions pass as handlers and as a local
VAD, and the mistakes the types can see are reported (``protocol=`` is a Literal)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mypy")

PACKAGE = Path(__file__).parents[1] / "python"

# The package as a user gets it installed: its own modules' errors are not the user's.
CONFIG = """\
[mypy]
strict = True
[mypy-realtalk.*]
ignore_errors = True
"""

GOOD = '''
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from realtalk import Notification, RealtimeClient
from realtalk.audio import Vad


def show(event: Notification) -> None:
    print(event["delta"])


async def log(event: Notification) -> None:
    print(event.type)


class EnergyGate:
    """A detector of the user's own: any object with these two members."""

    sample_rate = 16000

    def process(
        self, samples: npt.NDArray[np.float32] | npt.NDArray[np.int16]
    ) -> list[Mapping[str, Any]]:
        loud = float(np.abs(samples.astype(np.float32)).mean()) > 0.1
        return [{"type": "speech_started"}] if loud else []


def lookup(arguments: dict[str, Any]) -> str:
    return str(arguments.get("city"))


async def main(url: str) -> None:
    for detector in (Vad(16000), EnergyGate(), None):
        for protocol in ("ga", "beta"):
            client = RealtimeClient(url, protocol=protocol, input_rate=16000,
                                    local_vad=detector)
            remove = client.on("conversation.updated", show)
            client.on("*", log)
            client.on("error", lambda event: print(event.get("error")))
            remove()
            await client.add_tool({"name": "lookup"}, lookup)
'''

BAD = '''
from realtalk import Notification, RealtimeClient


def no_argument() -> None:
    pass


client = RealtimeClient(None, protocol="gamma")  # line 9
client = RealtimeClient(None, local_vad="server")  # line 10
client.on("error", no_argument)  # line 11
'''


def run_mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "mypy.ini").write_text(CONFIG)
    program = tmp_path / "user.py"
    program.write_text(textwrap.dedent(source))
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(tmp_path / "mypy.ini"),
         "--cache-dir", str(tmp_path / "cache"), str(program)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={"MYPYPATH": str(PACKAGE), "PATH": "/usr/bin:/bin"},
    )


def test_plain_functions_and_detectors_pass_mypy_strict(tmp_path: Path) -> None:
    result = run_mypy(tmp_path, GOOD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout


def test_mypy_strict_reports_the_mistakes_the_types_can_see(tmp_path: Path) -> None:
    result = run_mypy(tmp_path, BAD)
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert result.returncode == 1, result.stdout + result.stderr
    lines = {int(line.split(":")[1]) for line in errors}
    assert lines == {9, 10, 11}, result.stdout
    assert "gamma" in result.stdout and "TurnDetector" in result.stdout
