"""The browser voice console in a real headless Chromium (DevTools protocol, see
console_browser.py), against a relay with ``console=True`` in front of a real-time simulator,
as ``realtalk console`` runs them. The fake microphone plays a WAV made with espeak-ng.

Each test takes a few seconds of real audio time; the conversation test is the longest (two
utterances and two replies, about ten seconds)."""

from __future__ import annotations

import os
import shutil
import subprocess
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest

from realtalk.relay import Relay
from realtalk.simulator import Simulator
from tests.console_browser import Page, chromium

SECRET = "console-test-secret-0123456789"
WIRE_RATE = 24000
SAMPLES_PER_MS = WIRE_RATE // 1000
ARTEFACTS = Path(os.environ.get("REALTALK_TEST_ARTEFACTS",
                                Path(__file__).parents[1] / "test-artefacts"))


def _espeak(text: str, folder: Path) -> tuple[np.ndarray, int]:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        if os.environ.get("CI") == "true":
            pytest.fail("espeak-ng is missing in CI: .ci/run installs it")
        pytest.skip("espeak-ng is not installed here (apt-get install espeak-ng)")
    path = folder / "utterance.wav"
    subprocess.run([espeak, "-w", str(path), text], check=True)
    with wave.open(str(path)) as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        rate = w.getframerate()
    voiced = np.flatnonzero(np.abs(samples) > 300)  # espeak pads with silence: trim it
    return samples[voiced[0]:voiced[-1] + 1], rate


def _write_wav(path: Path, pieces: list[np.ndarray], rate: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.concatenate(pieces).astype("<i2").tobytes())
    return path


@pytest.fixture(scope="module")
def two_utterances(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Speech, a pause long enough to end the turn, speech again while the reply plays, then
    silence for the second reply."""
    folder = tmp_path_factory.mktemp("speech")
    first, rate = _espeak("Hello there, how are you today?", folder)
    second, _ = _espeak("Wait, stop please.", folder)
    silence = lambda s: np.zeros(int(s * rate), "<i2")  # noqa: E731
    return _write_wav(folder / "two-utterances.wav",
                      [silence(0.3), first, silence(0.9), second, silence(5.0)], rate)


@pytest.fixture(scope="module")
def silence_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("silence")
    return _write_wav(folder / "silence.wav", [np.zeros(24000 * 10, "<i2")], 24000)


@asynccontextmanager
async def console_servers() -> AsyncIterator[tuple[Simulator, Relay]]:
    """What ``realtalk console`` runs: a real-time simulator and a relay serving the console."""
    async with Simulator(pace="realtime") as sim, Relay(
            sim.url, api_key="sk-local", secret=SECRET, console=True) as relay:
        yield sim, relay


def console_url(relay: Relay) -> str:
    return f"http://127.0.0.1:{relay.port}/"


async def connected(page: Page) -> None:
    await page.evaluate("realtalkConsole.connect()", gesture=True)
    await page.wait_for("realtalkConsole.state.phase === 'connected'")


async def test_page_loads_without_console_errors_and_connects_with_its_token(
        silence_wav: Path) -> None:
    async with console_servers() as (sim, relay), chromium(silence_wav) as page:
        await page.open(console_url(relay))
        assert await page.evaluate("document.title") == "realtalk console"
        await connected(page)
        # The microphone runs: captured audio goes up as appends the simulator receives.
        await page.wait_for("realtalkConsole.counters.appended >= 24000 * 0.3")
        status = await page.evaluate("document.getElementById('status').textContent")
        assert status.startswith("Connected")
        await page.evaluate("realtalkConsole.disconnect()")
        await page.wait_for("realtalkConsole.state.phase === 'closed'")
        assert relay.stats.sessions_total == 1 and relay.stats.auth_failures == 0
        assert page.problems() == []


async def test_a_page_without_a_valid_token_is_refused(silence_wav: Path) -> None:
    async with console_servers() as (sim, relay), chromium(silence_wav) as page:
        await page.open(console_url(relay))
        await page.evaluate("realtalkConsole.connect('rt1.not-a-token')", gesture=True)
        await page.wait_for("realtalkConsole.state.phase === 'closed'")
        close = await page.evaluate("realtalkConsole.state.close")
        assert close["code"] == 3000
        assert await page.evaluate("realtalkConsole.state.error") == \
            "Invalid or expired relay token."
        assert "Invalid or expired relay token" in await page.evaluate(
            "document.getElementById('status').textContent")
        assert relay.stats.auth_failures == 1 and relay.stats.sessions_total == 0
        assert sim.stats.connections == 0  # refused before any upstream connection
