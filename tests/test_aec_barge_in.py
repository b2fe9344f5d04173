"""The echo canceller's output must not make a voice activity detector hear the agent (issue
19: "no false barge-ins in single talk"), yet must keep the user's voice in double talk.

The scene, built with numpy: a speech-like far end through a soft-clipping loudspeaker (so a
residual the linear filter cannot model remains) and a reverberant room, background noise
20 dB under the echo, and in double talk a second talker from half-way. The oracle is the
library's own `Vad` (the local detector with the server's semantics): on the raw microphone
it calls the agent's voice speech; on the cleaned output it must call (almost) nothing once
the canceller has converged, and on double talk it must find the near end where the same `Vad`
finds it on the clean near-end signal.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from realtalk.audio import EchoCanceller, Vad
from tests.test_aec import room, run, talker

RATE = 16000
SECONDS = 10.0
#: The canceller's time to converge on the far end's speech (it needs about 1 s here).
CONVERGED_S = 2.0
NEAR_FROM_S = 5.0


Signal = NDArray[np.float32]


def scene(double_talk: bool) -> tuple[Signal, Signal, Signal, Signal]:
    """(microphone, reference, near end as it reaches the microphone, background noise)."""
    far = talker(RATE, SECONDS, 130.0, seed=21)
    # Sentences with pauses, like a voice agent's reply (the canceller learns the background
    # in the far end's pauses: a far end that never pauses leaves it only the residual's floor).
    t = np.arange(far.size) / RATE
    far = (far * ((t % 1.6) < 1.2)).astype(np.float32)
    echo = np.convolve(np.tanh(3.0 * far) / 3.0, 4.0 * room(RATE, seed=22, rt60=0.4))[: far.size]
    rng = np.random.default_rng(23)
    noise = np.cumsum(rng.standard_normal(far.size)) * 0.02  # a red-tinted background...
    noise -= np.convolve(noise, np.ones(400) / 400, mode="same")  # ...without its drift
    noise *= np.sqrt(np.mean(echo**2) / np.mean(noise**2)) * 10 ** (-20 / 20)
    near = np.zeros(far.size)
    if double_talk:
        start = int(NEAR_FROM_S * RATE)
        user = talker(RATE, SECONDS - NEAR_FROM_S, 230.0, seed=24)
        near[start:] = np.convolve(user, room(RATE, seed=25, direct_ms=12.0, rt60=0.4))[: far.size - start]
        near *= np.sqrt(np.mean(echo[start:] ** 2) / np.mean(near[start:] ** 2))
    mic = (echo + noise + near).astype(np.float32)
    return mic, far, near.astype(np.float32), noise.astype(np.float32)


def onsets_ms(signal: NDArray[np.float32]) -> list[int]:
    """When a fresh `Vad` hears speech start (the onset, not the padded `audio_start_ms`)."""
    vad = Vad(RATE)
    return [(e.audio_start_ms or 0) + vad.prefix_padding_ms for e in vad.process(signal) if e.type == "speech_started"]


def test_the_agent_alone_is_not_speech_once_converged() -> None:
    mic, reference, _, noise = scene(double_talk=False)
    converged = int(CONVERGED_S * 100)
    # The oracle hears the agent on the raw microphone: the test has something to remove.
    assert np.mean(Vad(RATE).classify(mic)[converged:]) > 0.5
    canceller = EchoCanceller(RATE)
    out = run(canceller, mic, reference)
    # Before the far-end-only suppression the Vad called 90 % of these frames speech; with it
    # but before far-end-only held until near-end speech is confirmed (and before "the filter
    # removed little" counted only while echo is present), 11 % with onsets after convergence.
    # Here: none (issue 19's table has the rooms where one onset is still left).
    assert np.mean(Vad(RATE).classify(out)[converged:]) < 0.02
    assert [ms for ms in onsets_ms(out) if ms >= CONVERGED_S * 1000] == []
    # The output is comfort noise at the background's level, not silence (a server VAD would
    # hear the return of the background as an onset).
    tail = slice(int(CONVERGED_S * RATE), mic.size - RATE // 10)
    out_tail, noise_tail = out[tail].astype(np.float64), noise[tail].astype(np.float64)
    level_db = 10 * np.log10(np.mean(out_tail**2) / np.mean(noise_tail**2))
    assert -6.0 < level_db < 6.0, level_db


def test_double_talk_keeps_the_near_end() -> None:
    mic, reference, near, _ = scene(double_talk=True)
    out = run(EchoCanceller(RATE), mic, reference)
    first = int(NEAR_FROM_S * 100)
    truth = Vad(RATE).classify(near)[first:]
    found = Vad(RATE).classify(out)[first : first + truth.size]
    f1 = 2 * np.sum(truth & found) / (np.sum(truth) + np.sum(found))
    assert f1 > 0.9, f1
    # The near end's words come through: most of its energy is in the output where it talks.
    talk = slice(int(NEAR_FROM_S * RATE), mic.size - RATE // 10)
    near_talk, out_talk = near[talk].astype(np.float64), out[talk].astype(np.float64)
    kept_db = 10 * np.log10(np.sum(near_talk**2) / np.sum((out_talk - near_talk) ** 2))
    assert kept_db > 5.0, kept_db


def test_far_end_only_says_when_the_output_is_comfort_noise() -> None:
    mic, reference, near, _ = scene(double_talk=True)
    canceller, linear = EchoCanceller(RATE), EchoCanceller(RATE, suppress=False)
    n = canceller.frame_samples
    flags = []
    for i in range(0, mic.size - n + 1, n):
        canceller.process(mic[i : i + n], reference[i : i + n])
        linear.process(mic[i : i + n], reference[i : i + n])
        flags.append(canceller.far_end_only)
        assert not linear.far_end_only
    converged, near_from = int(CONVERGED_S * 100), int(NEAR_FROM_S * 100)
    assert np.mean(flags[converged:near_from]) > 0.8  # the agent alone
    talking = Vad(RATE).classify(near)[near_from:]
    assert np.mean(np.array(flags[near_from:])[talking[: len(flags) - near_from]]) < 0.2  # the user too
    # Without a reference there is no far end at all.
    canceller.reset()
    for i in range(0, RATE, n):
        canceller.process(mic[i : i + n], np.zeros(n, np.float32))
        assert not canceller.far_end_only
