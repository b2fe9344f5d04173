"""``RealtimeClient(echo_cancel=True)`` (realtalk._echo) against the simulator, on asyncio and
trio: a duplex device simulated in the test (the speaker's blocks pulled from
``client.playback``, the microphone hearing them through a synthetic room a device latency
later) sends the wire less of the echo than it heard, a local VAD no longer takes the agent's
own voice for the user's, alignment is by the sample clocks (a late loop changes nothing),
and misuse is refused with a clear error. The oracle is numpy: the room's convolution and the
energies of what the mic heard and what went on the wire (decoded with the stdlib's base64).
"""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import anyio
import numpy as np
import numpy.typing as npt
import pytest
from client_helpers import Recorder, until

from realtalk import InputBackpressure, RealtimeClient
from realtalk._echo import DEFAULT_DELAY_MS
from realtalk.audio import EchoCanceller, resample
from realtalk.simulator import Simulator, synthesize_speech

MANUAL_TURNS = {"audio": {"input": {"turn_detection": None}}}
PLAYBACK_RATE = 24000
FAR = np.frombuffer(synthesize_speech(
    "Hello there, this is the agent talking about the weather and the sea for a while.").pcm,
    dtype=np.int16)


def room(rate: int, latency_ms: int = 20, rt60_s: float = 0.15, gain: float = 0.5,
         seed: int = 1) -> npt.NDArray[np.float64]:
    """A speaker-to-mic impulse response: the device latency, then exponentially decaying
    noise (a small reverberant room) of total energy ``gain**2``."""
    rng = np.random.default_rng(seed)
    t = np.arange(rate * 120 // 1000) / rate
    tail = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60_s)
    tail *= gain / np.sqrt(np.sum(tail**2))
    return np.concatenate([np.zeros(rate * latency_ms // 1000), tail])


def play_reply(client: RealtimeClient) -> npt.NDArray[np.float32]:
    """Queue the far-end speech and pull it all (and 0.5 s of silence) as a sound card would:
    what the speaker played, float32 at the playback rate."""
    client.playback.push("item_far", 0, FAR)
    block = PLAYBACK_RATE // 100
    played = [client.playback.pull(block) for _ in range(len(FAR) // block + 50)]
    return np.concatenate(played).astype(np.float32) / 32768


def heard(played: npt.NDArray[np.float32], rate: int, **room_args: Any) -> npt.NDArray[np.float32]:
    """What the microphone captured, at ``rate``: the played audio through the room."""
    at_rate = played if rate == PLAYBACK_RATE else resample(played, PLAYBACK_RATE, rate)
    mic = np.convolve(at_rate, room(rate, **room_args))[: len(at_rate)]
    return mic.astype(np.float32)


def sent_audio(recorder: Recorder) -> npt.NDArray[np.float32]:
    """Every appended frame as it went on the wire (pcm16, 24 kHz), concatenated."""
    chunks = [np.frombuffer(base64.b64decode(e["audio"]), "<i2")
              for e in recorder.wire("client", "input_audio_buffer.append")]
    return np.concatenate([np.zeros(0, "<i2"), *chunks]).astype(np.float32) / 32768


async def all_sent(recorder: Recorder, at_least: int) -> npt.NDArray[np.float32]:
    """What went on the wire once at least ``at_least`` samples did and 0.2 s passed without
    another frame."""
    await until(lambda: len(sent_audio(recorder)) >= at_least, 5)
    count = -1
    while count != len(recorder.wire("client", "input_audio_buffer.append")):
        count = len(recorder.wire("client", "input_audio_buffer.append"))
        await anyio.sleep(0.2)
    return sent_audio(recorder)


def echo_reduction_db(mic: npt.NDArray[np.float32], rate: int,
                      sent: npt.NDArray[np.float32]) -> float:
    """How much quieter the second half of the wire is than what the mic heard (the first
    half is the canceller's convergence)."""
    mic = mic if rate == PLAYBACK_RATE else resample(mic, rate, PLAYBACK_RATE)
    half = len(sent) // 2
    end = min(len(sent), len(mic))
    return float(10 * np.log10(np.sum(mic[half:end] ** 2) / np.sum(sent[half:end] ** 2)))


async def run_duplex(echo_cancel: bool, rate: int, *, frame_ms: int = 10,
                     **client_args: Any) -> tuple[RealtimeClient, npt.NDArray[np.float32],
                                                  npt.NDArray[np.float32]]:
    """Play the reply, then give the client what the mic heard in ``frame_ms`` frames from
    the loop: the client, the mic's signal and what went on the wire."""
    async with Simulator() as sim:
        client = RealtimeClient(sim.url, api_key="sk-test", input_rate=rate, session=MANUAL_TURNS,
                                echo_cancel=echo_cancel, **client_args)
        recorder = Recorder(client)
        async with client:
            mic = heard(play_reply(client), rate)
            step = rate * frame_ms // 1000
            for start in range(0, len(mic), step):
                client.append_input_audio(mic[start : start + step])
                await anyio.sleep(0)
            expected = len(mic) // client._echo.canceller.frame_samples if echo_cancel else 0
            await until(lambda: client.metrics.echo_frames_cleaned == expected, 5)
            sent = await all_sent(recorder, len(mic) * 24000 // rate - 480)
    return client, mic, sent


@pytest.mark.anyio
@pytest.mark.parametrize("rate", [24000, 16000])
async def test_the_wire_carries_less_echo_than_the_mic_heard(rate: int) -> None:
    plain, mic, sent = await run_duplex(False, rate)
    assert abs(echo_reduction_db(mic, rate, sent)) < 0.5  # no canceller: the echo as heard
    client, mic, sent = await run_duplex(True, rate)
    # Today's canceller takes 10-20 dB off this room (benches/README.md has its ERLE).
    assert echo_reduction_db(mic, rate, sent) > 6
    frames = len(mic) // (rate // 100)
    assert client.metrics.echo_frames_cleaned == frames
    assert client.metrics.echo_reference_underruns == 0  # the speaker played before the mic
    assert plain.metrics.echo_frames_cleaned == 0


@pytest.mark.anyio
async def test_frames_of_any_size_are_cleaned_whole_and_nothing_is_lost_or_reordered() -> None:
    # 7 ms frames: the canceller's 10 ms frames straddle them; the wire still gets every
    # sample but the last partial frame, in order (less the uplink resampler's lag).
    rate = 16000
    _, mic, sent_7 = await run_duplex(True, rate, frame_ms=7)
    _, _, sent_10 = await run_duplex(True, rate, frame_ms=10)
    length = len(mic) // 160 * 160 * 24000 // rate
    assert 0 <= length - len(sent_7) <= 120 and 0 <= length - len(sent_10) <= 120
    # The same samples through the same canceller: the same output, whatever the framing.
    end = min(len(sent_7), len(sent_10)) - 480
    np.testing.assert_allclose(sent_7[:end], sent_10[:end], atol=2 / 32768)


@pytest.mark.anyio
async def test_a_late_reference_is_counted_and_the_mic_still_goes_out() -> None:
    # The mic runs ahead of a speaker that never plays: every frame's reference is missing.
    async with Simulator() as sim:
        client = RealtimeClient(sim.url, api_key="sk-test", input_rate=16000,
                                session=MANUAL_TURNS, echo_cancel=True)
        recorder = Recorder(client)
        async with client:
            await until(lambda: client.connected, 5)
            voice = (0.3 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000)).astype(np.float32)
            for start in range(0, len(voice), 320):
                client.append_input_audio(voice[start : start + 320])
            await until(lambda: client.metrics.echo_frames_cleaned == 100, 5)
            # All but the first DEFAULT_DELAY_MS: nothing played could reach the mic before.
            assert client.metrics.echo_reference_underruns == 100 - DEFAULT_DELAY_MS // 10
            sent = await all_sent(recorder, 23500)
    # Nothing to cancel: the mic's tone goes out at its level.
    level = np.sqrt(np.mean(sent[4800:] ** 2))
    assert 0.3 / np.sqrt(2) * 0.8 < level < 0.3 / np.sqrt(2) * 1.2


class FramesSeen:
    """A turn detector (``realtalk.audio.TurnDetector``) that keeps what it was given."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.frames: list[npt.NDArray[np.float32]] = []

    def process(self, samples: npt.NDArray[np.float32]) -> list[object]:
        self.frames.append(np.array(samples, dtype=np.float32))
        return []


@pytest.mark.anyio
async def test_a_local_vad_hears_the_cleaned_microphone_not_the_echo() -> None:
    # Manual turns with a local turn detector: it gets exactly what went on the wire (before
    # the uplink's resampling), the mic less the echo.
    rate = 16000
    async with Simulator() as sim:
        detector = FramesSeen(rate)
        client = RealtimeClient(sim.url, api_key="sk-test", input_rate=rate,
                                session=MANUAL_TURNS, local_vad=detector, echo_cancel=True)
        recorder = Recorder(client)
        async with client:
            # The local detector runs once the server confirmed manual turns.
            await until(lambda: recorder.wire("server", "session.updated"), 5)
            mic = heard(play_reply(client), rate)
            for start in range(0, len(mic), 320):
                client.append_input_audio(mic[start : start + 320])
                await anyio.sleep(0)
            sent = await all_sent(recorder, len(mic) * 3 // 2 - 480)
    seen = np.concatenate(detector.frames)
    assert len(seen) == len(mic) // 160 * 160
    assert echo_reduction_db(mic, rate, resample(seen, rate, PLAYBACK_RATE)) > 6
    wire = resample(seen, rate, PLAYBACK_RATE)
    end = min(len(wire), len(sent)) - 480
    np.testing.assert_allclose(sent[:end], wire[:end], atol=0.02)


async def run_device_thread(uplink_queue_frames: int) -> tuple[
        RealtimeClient, list[npt.NDArray[np.float32]], list[npt.NDArray[np.float32]],
        list[bool], npt.NDArray[np.float32]]:
    """A duplex device thread: each 10 ms callback pulls the speaker's block and appends the
    mic's, which hears the speaker through the room; the loop stalls now and then, so frames
    wait in the hand-off (and, when it is small, some are refused). The client, what the
    speaker played and the mic heard per block, which blocks were taken, and what the local
    detector got."""
    rate = PLAYBACK_RATE
    block = rate // 100
    response = room(rate)
    played: list[npt.NDArray[np.float32]] = []
    mic: list[npt.NDArray[np.float32]] = []
    taken: list[bool] = []
    async with Simulator() as sim:
        detector = FramesSeen(rate)
        client = RealtimeClient(sim.url, api_key="sk-test", input_rate=rate,
                                session=MANUAL_TURNS, local_vad=detector, echo_cancel=True,
                                uplink_queue_frames=uplink_queue_frames)
        recorder = Recorder(client)
        async with client:
            await until(lambda: recorder.wire("server", "session.updated"), 5)
            client.playback.push("item_far", 0, FAR[: rate * 3])

            def device() -> None:
                # The last samples played, and room for this block's: the room's output for
                # the block is the "valid" part of the convolution, exactly.
                history = np.zeros(len(response) - 1 + block, dtype=np.float32)
                for _ in range(300):
                    out = np.zeros(block, dtype=np.int16)
                    client.playback.pull_into(out)
                    speaker = out.astype(np.float32) / 32768
                    history = np.concatenate((history[block:], speaker))
                    played.append(speaker)
                    mic.append(np.convolve(history, response, "valid").astype(np.float32))
                    try:
                        client.append_input_audio(mic[-1])
                        taken.append(True)
                    except InputBackpressure:
                        taken.append(False)
                    time.sleep(0.001)

            thread = threading.Thread(target=device)
            thread.start()
            while thread.is_alive():
                time.sleep(0.03)  # the loop is late: frames pile up in the hand-off
                await anyio.sleep(0.01)
            thread.join()
            await until(lambda: client.metrics.echo_frames_cleaned == sum(taken), 5)
    return client, played, mic, taken, np.concatenate(detector.frames)


def offline(played: list[npt.NDArray[np.float32]], mic: list[npt.NDArray[np.float32]],
            taken: list[bool]) -> npt.NDArray[np.float32]:
    """The canceller run on the blocks taken, each against the speaker's samples
    DEFAULT_DELAY_MS before it on the common clock."""
    block = len(mic[0])
    delay = PLAYBACK_RATE * DEFAULT_DELAY_MS // 1000
    reference = np.concatenate((np.zeros(delay, dtype=np.float32), *played))
    canceller = EchoCanceller(PLAYBACK_RATE)
    return np.concatenate([canceller.process(mic[k], reference[k * block:(k + 1) * block])
                           for k in range(len(mic)) if taken[k]])


@pytest.mark.anyio
async def test_alignment_is_by_sample_clock_however_late_the_loop_drains() -> None:
    client, played, mic, taken, seen = await run_device_thread(256)
    assert all(taken) and client.metrics.echo_reference_underruns == 0
    np.testing.assert_array_equal(seen, offline(played, mic, taken))


@pytest.mark.anyio
async def test_frames_refused_by_a_full_hand_off_keep_the_clocks_aligned() -> None:
    # A 4-frame hand-off and a stalling loop: blocks are refused; those after must still be
    # cleaned against the speaker's samples of their own time.
    client, played, mic, taken, seen = await run_device_thread(4)
    assert not all(taken) and sum(taken) > 50
    assert client.metrics.input_frames_refused == taken.count(False)
    np.testing.assert_array_equal(seen, offline(played, mic, taken))


def test_stereo_int16_frames_are_cleaned_at_their_own_scale() -> None:
    # The mic mixed down and scaled like mono int16 (sample / 32768), not as a mean of int16
    # taken as float (thousands, which the canceller and the uplink clip to full scale).
    from types import SimpleNamespace

    from realtalk import audio
    from realtalk._echo import EchoCancel

    rng = np.random.default_rng(5)
    mono = (rng.standard_normal(1600) * 3000).astype(np.int16)
    outputs = []
    for frame in (mono, np.stack([mono, mono], axis=1)):
        metrics = SimpleNamespace(echo_frames_cleaned=0, echo_reference_underruns=0)
        echo = EchoCancel(audio.PlaybackBuffer(16000), 16000, metrics)
        outputs.append(echo.clean(frame))
    np.testing.assert_allclose(outputs[1], outputs[0], atol=1e-6)
    assert np.max(np.abs(outputs[0])) < 0.5


@pytest.mark.anyio
async def test_misuse_is_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="local_playback=True"):
        RealtimeClient("ws://127.0.0.1:9", echo_cancel=True, local_playback=False)
    for bad in (-1, 1001, 2.5, True):
        with pytest.raises(ValueError, match="echo_delay_ms"):
            RealtimeClient("ws://127.0.0.1:9", echo_cancel=True, echo_delay_ms=bad)
    async with Simulator() as sim:
        client = RealtimeClient(sim.url, api_key="sk-test", input_rate=16000, echo_cancel=True)
        async with client:
            with pytest.raises(ValueError, match="input rate"):
                client.append_input_audio(np.zeros(480, dtype=np.float32), sample_rate=48000)
            client.append_input_audio(np.zeros(320, dtype=np.float32))
            await until(lambda: client.metrics.echo_frames_cleaned == 2, 5)
