"""A speakerphone device loop with echo cancellation: one duplex audio callback plays
``client.playback`` and hands the microphone to ``append_input_audio``; with
``RealtimeClient(echo_cancel=True)`` the client takes what the speaker played out of the
microphone before the server's VAD hears it, so the agent does not interrupt itself, while
the user can still barge in.

By default the device is simulated: a small room (a synthetic exponentially decaying impulse
response, the device's 20 ms output-to-input latency, a little noise) carries the speaker into
the microphone; ``--barge-in`` also has a user say something over the reply. ``--device`` uses
the real sound card (``pip install 'realtalk[devices]'``).

    python examples/echo_device.py [--no-echo-cancel] [--barge-in] [--device] [URL]
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from typing import Any

import anyio
import numpy as np
import numpy.typing as npt

from realtalk import RealtimeClient
from realtalk.audio import resample
from realtalk.simulator import Simulator, synthesize_speech
from realtalk.simulator.responder import Audio, ResponseContext

RATE = 16000  # the device's rate, both ways (a duplex stream has one)
BLOCK = RATE // 100  # 10 ms
REPLY_TEXT = "Sure. The forecast says sun in the morning, some clouds after noon, and rain late."
USER_TEXT = "Stop, wait a moment."
BARGE_IN_AT_S = 1.5  # into the reply
LATENCY_MS = 20  # the simulated device's output-to-input latency
# What the canceller is told of it: a little less than the latency, so the room's direct path
# stays inside its filter. On a real device, measure it: the canceller's
# ``estimated_delay_ms`` reports it once the agent has talked for a second or two.
ECHO_DELAY_MS = 18
# The server VAD's threshold: a speakerphone raises it a little above the default (0.5) so
# the canceller's residual stays under it.
VAD_THRESHOLD = 0.7


class SimulatedRoom:
    """A duplex sound device in a room, called back like ``sounddevice.Stream``: every 10 ms
    of real time ``callback(indata, outdata, frames, time, status)`` gets the microphone's
    block and fills the speaker's. The microphone hears the speaker through the room
    ``latency_ms`` later, plus noise and ``near_end`` (a user's voice) from ``near_end_at``
    seconds on."""

    def __init__(self, callback: Any, *, latency_ms: int = LATENCY_MS, rt60_s: float = 0.2,
                 echo_gain: float = 0.2, noise: float = 0.003, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        t = np.arange(RATE * 150 // 1000) / RATE
        tail = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60_s)
        self.response = np.concatenate([np.zeros(RATE * latency_ms // 1000),
                                        tail * echo_gain / np.sqrt(np.sum(tail**2))])
        self._noise = (noise * rng.standard_normal(RATE * 60)).astype(np.float32)
        self.callback = callback
        self.near_end: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)
        self.near_end_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        # The last samples played, and room for this block's (not played yet: the latency is
        # longer than a block, so the taps that would reach them are zero).
        history = np.zeros(len(self.response) - 1 + BLOCK, dtype=np.float32)
        start = time.monotonic()
        index = 0
        near_from: int | None = None
        while not self._stop.is_set():
            # The mic's block: what the speaker played, through the room.
            echo = np.convolve(history, self.response, "valid")
            mic = echo + self._noise[(index * BLOCK) % len(self._noise):][:BLOCK]
            if self.near_end_at is not None and near_from is None:
                near_from = index + round(self.near_end_at * RATE / BLOCK)
            if near_from is not None and index >= near_from:
                piece = self.near_end[(index - near_from) * BLOCK:][:BLOCK]
                mic[: len(piece)] += piece
            indata = mic.astype(np.float32).reshape(-1, 1)
            outdata = np.zeros((BLOCK, 1), dtype=np.float32)
            self.callback(indata, outdata, BLOCK, None, None)
            history[-BLOCK:] = outdata[:, 0]
            history = np.concatenate((history[BLOCK:], np.zeros(BLOCK, dtype=np.float32)))
            index += 1
            delay = start + index * BLOCK / RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def reply_responder(ctx: ResponseContext) -> Any:
    return Audio(synthesize_speech(REPLY_TEXT).pcm, REPLY_TEXT)


async def main(args: argparse.Namespace) -> None:
    async with contextlib.AsyncExitStack() as stack:
        url = args.url or (await stack.enter_async_context(
            Simulator(responder=reply_responder))).url
        session = {"audio": {"input": {"turn_detection": {
            "type": "server_vad", "threshold": VAD_THRESHOLD, "silence_duration_ms": 300}}}}
        client = RealtimeClient(url, api_key="sk-local", session=session, playback_rate=RATE,
                                input_rate=RATE, echo_cancel=not args.no_echo_cancel,
                                echo_delay_ms=ECHO_DELAY_MS)
        await stack.enter_async_context(client)
        speech_starts: list[float] = []
        client.on("input_audio_buffer.speech_started",
                  lambda event: speech_starts.append(time.monotonic()))

        def callback(indata: Any, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
            # The device thread: the speaker first, then the microphone (one Rust call each).
            client.playback.pull_into(outdata)
            with contextlib.suppress(Exception):  # a full hand-off drops the block (counted)
                client.append_input_audio(indata[:, 0].copy())

        if args.device:
            import sounddevice  # type: ignore[import-not-found]

            device = sounddevice.Stream(samplerate=RATE, blocksize=BLOCK, channels=1,
                                        dtype="float32", callback=callback)
        else:
            device = SimulatedRoom(callback)
            if args.barge_in:
                user = np.frombuffer(synthesize_speech(USER_TEXT).pcm, dtype=np.int16)
                device.near_end = resample(user.astype(np.float32) / np.float32(32768), 24000,
                                           RATE)
        device.start()
        stack.callback(device.stop)

        await client.send_user_message_content("What's the weather going to be like?")
        await client.create_response()
        reply_started = None
        with anyio.fail_after(30):
            while reply_started is None or client.playback.queued or client.response_active:
                if reply_started is None and client.playback.queued:
                    reply_started = time.monotonic()
                    if args.barge_in and isinstance(device, SimulatedRoom):
                        device.near_end_at = BARGE_IN_AT_S
                await anyio.sleep(0.02)
        await anyio.sleep(0.3)
        replies = [item for item in client.conversation.items if item.role == "assistant"]
        played_s = client.playback.played(replies[0].id) / RATE if replies else 0.0
        full_s = len(synthesize_speech(REPLY_TEXT).pcm) / 2 / 24000
        starts = [round(at - reply_started, 2) for at in speech_starts] if reply_started else []
        print(f"echo cancellation {'off' if args.no_echo_cancel else 'on'}: the reply played "
              f"{played_s:.2f} s of {full_s:.2f} s; speech heard at {starts} s into it")
        metrics = client.metrics
        print(f"frames cleaned {metrics.echo_frames_cleaned}, reference underruns "
              f"{metrics.echo_reference_underruns}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", help="a Realtime endpoint (default: the simulator)")
    parser.add_argument("--no-echo-cancel", action="store_true")
    parser.add_argument("--barge-in", action="store_true", help="a user speaks over the reply")
    parser.add_argument("--device", action="store_true", help="the real sound card")
    anyio.run(main, parser.parse_args())
