"""The browser voice console in a real headless Chromium (DevTools protocol, see
console_browser.py), against a relay with ``console=True`` in front of a real-time simulator,
as ``realtalk console`` runs them. The fake microphone plays a WAV made with espeak-ng.

Each test takes a few seconds of real audio time; the conversation test is the longest (two
utterances and two replies, about ten seconds)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest

from realtalk.relay import Relay, RelayPolicy
from realtalk.errors import ConnectionClosed
from realtalk.simulator import Simulator
from realtalk.transport import WebSocket, WebSocketServer
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
    first, rate = _espeak("Hello there how are you today", folder)
    second, _ = _espeak("Wait stop please", folder)
    def silence(seconds: float) -> np.ndarray:
        return np.zeros(int(seconds * rate), "<i2")

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


async def press(page: Page, key: str) -> None:
    """A trusted key press, as from the keyboard (Tab moves focus, Enter activates)."""
    codes = {"Tab": 9, "Enter": 13}
    for kind in ("keyDown", "keyUp"):
        await page.call("Input.dispatchKeyEvent", {
            "type": kind, "key": key, "code": key, "windowsVirtualKeyCode": codes[key],
            **({"text": "\r"} if kind == "keyDown" and key == "Enter" else {})})


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
        first_session = await page.evaluate("realtalkConsole.counters.appended")
        # Again, with a fresh token: the counters are the new session's.
        await connected(page)
        await page.wait_for("realtalkConsole.counters.appended >= 24000 * 0.2")
        await page.evaluate("realtalkConsole.disconnect()")
        await page.wait_for("realtalkConsole.state.phase === 'closed'")
        second_session = await page.evaluate("realtalkConsole.counters.appended")
        assert relay.stats.sessions_total == 2 and relay.stats.auth_failures == 0
        assert page.problems() == []
    # Once the servers have stopped, the simulator has handled every append the page sent.
    assert (first_session + second_session) * 2 == sim.stats.input_audio_bytes


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


async def retrieved_audio_samples(page: Page, item_id: str) -> int:
    """The simulator's audio for an item, asked through the page (conversation.item.retrieve)."""
    await page.evaluate("delete realtalkConsole.state.lastEvents['conversation.item.retrieved']")
    await page.evaluate(f"realtalkConsole.send({{type: 'conversation.item.retrieve', "
                        f"item_id: '{item_id}'}})")
    item = await page.wait_for(
        "realtalkConsole.state.lastEvents['conversation.item.retrieved']?.item")
    assert item["id"] == item_id
    audio = next(part["audio"] for part in item["content"] if part["type"] == "output_audio")
    return len(base64.b64decode(audio)) // 2


async def test_speech_gets_a_reply_and_a_second_utterance_barges_in(
        two_utterances: Path) -> None:
    async with console_servers() as (sim, relay), chromium(two_utterances) as page:
        await page.open(console_url(relay))
        await connected(page)
        # The simulator's server VAD hears the first utterance and replies; the second one
        # starts while the reply plays: the page stops playback and truncates the item.
        await page.wait_for("realtalkConsole.state.truncations.length === 1", timeout=20)
        await page.screenshot(ARTEFACTS / "console-mid-conversation.png")
        # The second reply arrives in full and is played to the end.
        await page.wait_for("realtalkConsole.state.turns.length === 2 && "
                            "realtalkConsole.state.lastEvents['response.done']?.response"
                            ".status === 'completed' && !realtalkConsole.state.playing",
                            timeout=15)
        state = await page.evaluate("realtalkConsole.state")
        truncation = state["truncations"][0]
        second_item = state["lastEvents"]["response.done"]["response"]["output"][0]["id"]
        assert second_item != truncation["item_id"]
        second_samples = await retrieved_audio_samples(page, second_item)
        first_samples = await retrieved_audio_samples(page, truncation["item_id"])
        await page.evaluate("realtalkConsole.disconnect()")
        await page.wait_for("realtalkConsole.state.phase === 'closed'")
        counters = await page.evaluate("realtalkConsole.counters")
        problems = page.problems()

    # The simulator cut the first reply where the page said the listener stopped hearing it.
    assert first_samples == truncation["audio_end_ms"] * SAMPLES_PER_MS
    # What the worklet really rendered: the whole second reply plus the first one's start.
    played_of_first_ms = (counters["played"] - second_samples) / SAMPLES_PER_MS
    assert abs(played_of_first_ms - truncation["audio_end_ms"]) <= 20, (
        played_of_first_ms, truncation)
    assert truncation["audio_end_ms"] > 100  # it was cut mid-reply, not before it began
    # Counters against the simulator's view.
    stats = sim.stats
    assert counters["appended"] * 2 == stats.input_audio_bytes
    assert counters["captured"] >= counters["appended"] > WIRE_RATE * 3
    assert counters["received"] * 2 == stats.output_audio_bytes
    assert stats.responses == 2
    assert len(state["turns"]) == 2 and all(t["firstAudioMs"] >= 0 for t in state["turns"])
    assert problems == []


async def test_a_typed_message_gets_a_reply_shown_in_the_transcript(silence_wav: Path) -> None:
    async with console_servers() as (sim, relay), chromium(silence_wav) as page:
        await page.open(console_url(relay))
        await connected(page)
        # Typed and sent as a user would: focus the box, type, press Enter (trusted key events).
        await page.evaluate("document.getElementById('message').focus()")
        await page.call("Input.insertText", {"text": "what time is it"})
        await press(page, "Enter")
        try:
            transcript = await page.wait_for(
                "(() => { const t = document.getElementById('transcript').innerText;"
                " return t.includes('You said: what time is it') && t; })()", timeout=5)
        except TimeoutError:
            print(await page.evaluate("document.getElementById('transcript').innerText"))
            print(await page.evaluate("document.getElementById('events').innerText"))
            print(await page.evaluate("document.getElementById('message').value"))
            raise
        assert "what time is it" in transcript.split("You said")[0]  # the user's line first
        assert await page.evaluate("document.getElementById('message').value") == ""
        await page.wait_for("realtalkConsole.state.lastEvents['response.done']")
        done = await page.evaluate("realtalkConsole.state.lastEvents['response.done'].response")
        assert done["status"] == "completed"
        assert sim.stats.responses == 1
        assert page.problems() == []


async def test_keyboard_alone_connects_and_the_page_fits_at_200_percent_zoom(
        silence_wav: Path) -> None:
    async with console_servers() as (sim, relay), chromium(silence_wav) as page:
        # 200 % zoom of a 1200 px window: 600 CSS pixels across, each drawn twice as large.
        await page.call("Emulation.setDeviceMetricsOverride", {
            "width": 600, "height": 900, "deviceScaleFactor": 2, "mobile": False})
        await page.open(console_url(relay))
        await press(page, "Tab")
        assert await page.evaluate("document.activeElement.id") == "connect"
        await press(page, "Enter")
        await page.wait_for("realtalkConsole.state.phase === 'connected'")
        focus_order = []
        for _ in range(4):
            await press(page, "Tab")
            focus_order.append(await page.evaluate("document.activeElement.id"))
        assert focus_order[:3] == ["mute", "message", "send"]
        await page.evaluate("document.getElementById('mute').focus()")
        await press(page, "Enter")
        assert await page.evaluate(
            "document.getElementById('mute').getAttribute('aria-pressed')") == "true"
        # Nothing scrolls sideways, and every control is on screen.
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0
        off_screen = await page.evaluate(
            "[...document.querySelectorAll('button, input')].filter(e => "
            "e.getBoundingClientRect().right > innerWidth).map(e => e.id)")
        assert off_screen == []
        assert page.problems() == []


async def test_a_tool_call_is_shown_with_its_arguments(silence_wav: Path) -> None:
    tool = {"type": "function", "name": "get_time", "description": "The time in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}}
    policy = RelayPolicy(pinned_session={"tools": [tool]})  # tools come from the relay
    async with Simulator(pace="realtime") as sim, Relay(
            sim.url, api_key="sk-local", secret=SECRET, console=True, policy=policy) as relay, \
            chromium(silence_wav) as page:
        await page.open(console_url(relay))
        await connected(page)
        await page.evaluate("realtalkConsole.sendText('please get time')")
        shown = await page.wait_for("document.querySelector('#transcript .tool')?.innerText")
        # The simulator's own call, as the page received it.
        done = await page.wait_for("realtalkConsole.state.lastEvents['response.done']?.response")
        call = done["output"][0]
        assert call["type"] == "function_call" and call["name"] == "get_time"
        assert shown == f"Tool call: get_time({call['arguments']})"
        assert page.problems() == []


CAPTURE_IN_OFFLINE_CONTEXT = """(async () => {
  const rate = %d, frames = rate;  // one second of a 440 Hz sine from an OscillatorNode
  const context = new OfflineAudioContext({numberOfChannels: 1, length: frames, sampleRate: rate});
  await context.audioWorklet.addModule('/console-worklets.js');
  const capture = new AudioWorkletNode(context, 'realtalk-capture',
    {numberOfOutputs: 0, processorOptions: {chunkMs: 20}});
  const chunks = [];
  capture.port.onmessage = (m) => chunks.push(Array.from(new Int16Array(m.data)));
  const tone = new OscillatorNode(context, {frequency: 440});
  tone.connect(capture);
  tone.start();
  const input = await context.startRendering();  // (the destination hears nothing)
  await new Promise((done) => setTimeout(done, 300));  // the last chunks' messages
  return chunks;
})()"""

PLAYBACK_IN_OFFLINE_CONTEXT = """(async () => {
  const rate = %d;
  const context = new OfflineAudioContext({numberOfChannels: 1, length: rate, sampleRate: rate});
  await context.audioWorklet.addModule('/console-worklets.js');
  const player = new AudioWorkletNode(context, 'realtalk-playback',
    {numberOfInputs: 0, outputChannelCount: [1]});
  const reports = [];
  player.port.onmessage = (m) => reports.push(m.data);
  player.connect(context.destination);
  const pcm = new Int16Array(%s);
  player.port.postMessage({type: 'audio', pcm: pcm.buffer}, [pcm.buffer]);
  await new Promise((done) => setTimeout(done, 100));  // the samples reach the processor
  const output = await context.startRendering();
  await new Promise((done) => setTimeout(done, 300));
  return {output: Array.from(output.getChannelData(0)), last: reports.at(-1)};
})()"""


@pytest.mark.parametrize("rate", [48000, 44100])
async def test_the_worklets_resample_as_numpy_interpolates(silence_wav: Path, rate: int) -> None:
    """The capture worklet's 24 kHz pcm16 and the playback worklet's output at the context's
    rate, against numpy's linear interpolation of the same signals."""
    async with console_servers() as (sim, relay), chromium(silence_wav) as page:
        await page.open(console_url(relay))
        chunks = await page.evaluate(CAPTURE_IN_OFFLINE_CONTEXT % rate)
        reply = np.round(8000 * np.sin(2 * np.pi * 300 * np.arange(6000) / WIRE_RATE))
        played = await page.evaluate(
            PLAYBACK_IN_OFFLINE_CONTEXT % (rate, reply.astype(int).tolist()))
    captured = np.concatenate([np.asarray(chunk, dtype=float) for chunk in chunks])
    assert {len(chunk) for chunk in chunks} == {480}  # 20 ms appends
    assert len(captured) >= WIRE_RATE - 480  # a second in, a second out (the last chunk open)
    # The oscillator's own samples at the context's rate, interpolated at 24 kHz positions.
    source = np.sin(2 * np.pi * 440 * np.arange(rate) / rate)
    expected = np.interp(np.arange(len(captured)) * rate / WIRE_RATE, np.arange(rate), source)
    assert np.max(np.abs(captured / 32767 - expected)) < 2e-3
    # Playback: the 24 kHz reply, interpolated at the context's frames, then silence.
    output = np.asarray(played["output"])
    start = int(np.flatnonzero(output)[0]) - 1  # the reply's first sample is 0
    frames = int((len(reply) - 1) * rate / WIRE_RATE)
    want = np.interp(np.arange(frames) * WIRE_RATE / rate, np.arange(len(reply)), reply / 32768)
    assert np.max(np.abs(output[start:start + frames] - want)) < 1e-4
    assert played["last"]["played"] == len(reply)  # every wire sample counted as played
    assert not np.any(output[start + frames + 2:])


async def test_a_malformed_event_is_reported_and_the_session_goes_on(silence_wav: Path) -> None:
    """An upstream that sends audio that is not base64: the page says so and keeps going
    (no uncaught exception, still connected, later events still shown)."""

    async def upstream(ws: WebSocket) -> None:
        fields = {"response_id": "resp_1", "item_id": "item_1", "output_index": 0,
                  "content_index": 0}
        for event in ({"type": "session.created", "event_id": "event_1",
                       "session": {"type": "realtime", "id": "sess_1"}},
                      {"type": "response.output_audio.delta", "event_id": "event_2",
                       "delta": "%% not base64 %%", **fields},
                      {"type": "response.output_audio_transcript.delta", "event_id": "event_3",
                       "delta": "still here", **fields}):
            await ws.send_text(json.dumps(event))
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.receive()

    async with WebSocketServer(upstream, "127.0.0.1", 0) as fake, Relay(
            f"ws://127.0.0.1:{fake.port}/v1/realtime", api_key="sk-local", secret=SECRET,
            console=True) as relay, chromium(silence_wav) as page:
        await page.open(console_url(relay))
        await connected(page)
        shown = await page.wait_for(
            "document.getElementById('transcript').innerText.includes('still here')")
        assert shown
        error = await page.evaluate("realtalkConsole.state.error")
        assert error.startswith("could not handle response.output_audio.delta:")
        assert await page.evaluate("realtalkConsole.state.phase") == "connected"
        assert page.problems() == []


async def test_muted_the_microphone_sends_silence(two_utterances: Path) -> None:
    async with console_servers() as (sim, relay), chromium(two_utterances) as page:
        await page.open(console_url(relay))
        await page.evaluate("realtalkConsole.toggleMute()")  # before any speech is captured
        await connected(page)
        # Both utterances go by: still appended (as silence), never heard.
        await page.wait_for("realtalkConsole.counters.appended >= 24000 * 4.5", timeout=15)
        assert await page.evaluate(
            "realtalkConsole.state.lastEvents['input_audio_buffer.speech_started']") is None
        await page.evaluate("realtalkConsole.toggleMute()")
        assert await page.evaluate(
            "document.getElementById('mute').getAttribute('aria-pressed')") == "false"
        assert page.problems() == []
    assert sim.stats.responses == 0 and sim.stats.input_audio_bytes >= 24000 * 2 * 4.5
