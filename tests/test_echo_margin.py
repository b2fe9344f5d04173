"""How much margin today's canceller has in examples/echo_device.py's room, offline: the
example's own room (impulse response, noise) and server VAD threshold, the agent's reply
and the user's barge-in, with the reply starting at random moments; the server's VAD is the
simulator's (``realtalk.audio.Vad`` on the wire's 24 kHz). The default run checks the
example's setting on a few starts; ``REALTALK_ECHO_MARGIN=1`` also prints the table of
louder echoes, lower thresholds and quieter rooms (what the report's margin figures are)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from realtalk.audio import EchoCanceller, Vad, resample
from realtalk.simulator import synthesize_speech


def load_example() -> ModuleType:
    path = Path(__file__).parents[1] / "examples" / "echo_device.py"
    spec = importlib.util.spec_from_file_location("echo_device", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLE = load_example()
RATE = EXAMPLE.RATE


def speech(text: str) -> npt.NDArray[np.float32]:
    pcm = np.frombuffer(synthesize_speech(text).pcm, dtype=np.int16)
    return resample(pcm.astype(np.float32) / np.float32(32768), 24000, RATE)


REPLY, USER = speech(EXAMPLE.REPLY_TEXT), speech(EXAMPLE.USER_TEXT)


def speech_starts(signal: npt.NDArray[np.float32], threshold: float) -> list[float]:
    """When the server's VAD hears speech start (s), on the wire's 24 kHz."""
    vad = Vad(24000, threshold=threshold, silence_duration_ms=300)
    events = vad.process(resample(signal, RATE, 24000))
    # audio_start_ms includes the 300 ms prefix padding.
    return [(event.audio_start_ms + 300) / 1000 for event in events
            if event.type == "speech_started"]


def cleaned(mic: npt.NDArray[np.float32], speaker: npt.NDArray[np.float32]) -> Any:
    """What echo_cancel=True sends: the canceller against the speaker the example's
    ``echo_delay_ms`` back."""
    delay = RATE * EXAMPLE.ECHO_DELAY_MS // 1000
    reference = np.concatenate((np.zeros(delay, dtype=np.float32), speaker))
    canceller = EchoCanceller(RATE)
    step = canceller.frame_samples
    return np.concatenate([canceller.process(mic[k:k + step], reference[k:k + step])
                           for k in range(0, len(mic) // step * step, step)])


def outcomes(echo_gain: float, noise: float, threshold: float, starts: int
             ) -> tuple[int, int, int]:
    """Of ``starts`` replies: how many the raw echo interrupts, how many the cleaned echo
    interrupts, and how many barge-ins (the user 1.5 s in) are heard on time."""
    room = EXAMPLE.SimulatedRoom(None, echo_gain=echo_gain, noise=noise)
    raw_hits = clean_hits = barge_ins = 0
    for seed in range(starts):
        rng = np.random.default_rng(200 + seed)
        lead = int(RATE * (0.5 + 3 * rng.random()))
        speaker = np.concatenate([np.zeros(lead, dtype=np.float32), REPLY,
                                  np.zeros(RATE // 2, dtype=np.float32)])
        echo = np.convolve(speaker, room.response)[: len(speaker)].astype(np.float32)
        mic = echo + (noise * rng.standard_normal(len(speaker))).astype(np.float32)
        at = lead + int(EXAMPLE.BARGE_IN_AT_S * RATE)
        with_user = mic.copy()
        with_user[at : at + len(USER)] += USER[: len(mic) - at]
        begin = lead / RATE
        raw_hits += bool(speech_starts(mic, threshold))
        clean_hits += bool(speech_starts(cleaned(mic, speaker), threshold))
        heard = [t - begin for t in speech_starts(cleaned(with_user, speaker), threshold)]
        barge_ins += bool(heard) and EXAMPLE.BARGE_IN_AT_S - 0.1 < heard[0] < 1.9
    return raw_hits, clean_hits, barge_ins


def test_the_examples_room_needs_the_canceller_and_it_suffices() -> None:
    raw, clean, barge_ins = outcomes(0.2, 0.003, EXAMPLE.VAD_THRESHOLD, 3)
    assert (raw, clean, barge_ins) == (3, 0, 3)


@pytest.mark.skipif(not os.environ.get("REALTALK_ECHO_MARGIN"),
                    reason="set REALTALK_ECHO_MARGIN=1 for the margin table")
def test_print_the_margin_table() -> None:
    print(f"\n{'echo gain':>9} {'noise':>6} {'threshold':>9}   interrupted: raw / cleaned, "
          "barge-ins heard (of 8)")
    for gain, noise, threshold in [(0.2, 0.003, 0.5), (0.3, 0.003, 0.5), (0.2, 0.003, 0.7), (0.25, 0.003, 0.7), (0.3, 0.003, 0.7),
                                   (0.4, 0.003, 0.7), (0.2, 0.003, 0.65), (0.2, 0.003, 0.6),
                                   (0.2, 0.002, 0.7), (0.2, 0.0015, 0.7), (0.15, 0.003, 0.7)]:
        raw, clean, barge_ins = outcomes(gain, noise, threshold, 8)
        print(f"{gain:>9} {noise:>6} {threshold:>9}   {raw} / {clean}, {barge_ins}")
