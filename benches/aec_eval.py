"""Echo cancellation table (issue 19): realtalk's EchoCanceller next to speexdsp's and WebRTC's.

For each condition of benches/aec_dataset.py (16 kHz scenes), and each canceller that loads:

- ERLE: microphone over output power in far-end single talk from 8 s on (the noise passes
  through, so the SNR column is its ceiling), and the convergence time (the first 0.5 s
  window within 3 dB of that steady ERLE); then the same on the scene without its noise (the
  microphone is the echo alone), which the noise does not cap;
- near-end segmental SNR in double talk (20 ms segments where the near end is active, each
  clipped to [-10, 35] dB, against the near end as it reaches the microphone);
- the local `Vad`'s F1 on the near end while the agent talks (truth: the same Vad on the
  clean near-end signal), per 10 ms frame;
- false barge-ins: `speech_started` events of a local `Vad` on the single-talk output (the
  agent's own voice alone), against the raw microphone's, counted separately for onsets in
  the first 2 s (while the canceller converges) and after, with the share of frames the Vad
  calls speech after 2 s;
- realtalk's delay estimate (`estimated_delay_ms`) on each scene against its device latency
  (pyroomacoustics' responses add 2.5 ms at 16 kHz: their fractional-delay filter's 40
  samples, and the 10 cm path 0.3 ms);
- CPU per 10 ms frame at 16 and 48 kHz (process time over a 16 s scene, Python call
  included: the speexdsp wrapper's own Python buffering counts in its figure).

    python benches/aec_eval.py [--conditions N] [--rates 16000 48000]

Peers: `speexdsp-aec` (ctypes over libspeexdsp; set SPEEXDSP_LIB to the library if it is not
installed system-wide) and `pywebrtc-audio` (WebRTC AEC3). A peer that does not load is
reported and skipped.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).parent))
from aec_dataset import CONDITIONS, NEAR_FROM_S, Condition, Scene, scene  # noqa: E402

from realtalk.audio import EchoCanceller, Vad  # noqa: E402

Frame = Callable[[NDArray[np.float32], NDArray[np.float32]], NDArray[np.float32]]


def ours(rate: int, suppress: bool = True) -> tuple[Frame, int]:
    canceller = EchoCanceller(rate, suppress=suppress)
    return canceller.process, canceller.latency_samples


def speex(rate: int) -> tuple[Frame, int]:
    from speexdsp_aec import SpeexAec

    aec = SpeexAec(rate, frame_ms=10, filter_tail_ms=250)

    def process(mic: NDArray[np.float32], reference: NDArray[np.float32]) -> NDArray[np.float32]:
        to16 = lambda x: np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)  # noqa: E731
        return np.frombuffer(aec.process(to16(mic), to16(reference)), np.int16).astype(np.float32) / 32768

    return process, 0


def webrtc(rate: int) -> tuple[Frame, int]:
    from pywebrtc_audio import EchoCanceller as Aec3

    aec = Aec3(rate, 1, 0)
    return aec.process, 0


CANCELLERS: dict[str, Callable[[int], tuple[Frame, int]]] = {
    "realtalk": ours,
    "realtalk linear": lambda rate: ours(rate, suppress=False),
    "speexdsp": speex,
    "WebRTC AEC3": webrtc,
}


def run(make: Callable[[int], tuple[Frame, int]], s: Scene) -> tuple[NDArray[np.float64], float]:
    """The output realigned with the microphone, and the CPU seconds per 10 ms frame."""
    process, latency = make(s.rate)
    n = s.rate // 100
    frames = len(s.mic) // n
    out = np.zeros(frames * n, np.float32)
    start = time.process_time()
    for i in range(frames):
        span = slice(i * n, (i + 1) * n)
        out[span] = process(s.mic[span], s.reference[span])
    cpu = (time.process_time() - start) / frames
    aligned = np.zeros(len(s.mic))
    aligned[: len(out) - latency] = out[latency:]
    return aligned, cpu


def db(x: float) -> float:
    return float(10 * np.log10(max(x, 1e-20)))


def power(x: NDArray) -> float:
    """Mean square, floored at -300 dB (a canceller may output exact zeros for a while)."""
    return max(float(np.mean(np.asarray(x, np.float64) ** 2)), 1e-30)


def erle_and_convergence(s: Scene, out: NDArray) -> tuple[float, float]:
    tail = slice(int(NEAR_FROM_S * s.rate), len(s.mic) - s.rate // 10)
    steady = db(power(s.mic[tail]) / power(out[tail]))
    window = s.rate // 2
    for start in range(0, len(s.mic) - window, s.rate // 10):
        span = slice(start, start + window)
        if db(power(s.mic[span]) / power(out[span])) >= steady - 3:
            return steady, (start + window) / s.rate
    return steady, float("nan")


def segmental_snr(s: Scene, out: NDArray) -> float:
    n = s.rate // 50
    values = []
    for start in range(int(NEAR_FROM_S * s.rate), len(s.mic) - n - s.rate // 10, n):
        near = s.near[start : start + n].astype(np.float64)
        if power(near) < 1e-5:  # -50 dBFS: a pause
            continue
        values.append(np.clip(db(power(near) / power(out[start : start + n] - near)), -10, 35))
    return float(np.mean(values))


def vad_f1(s: Scene, out: NDArray) -> float:
    truth = Vad(s.rate).classify(s.near)
    found = Vad(s.rate).classify(np.asarray(out, np.float32))
    first = int(NEAR_FROM_S * 100)
    t, f = truth[first:], found[first : len(truth)]
    hits = np.sum(t & f)
    return float(2 * hits / max(np.sum(t) + np.sum(f), 1))



CONVERGING_MS = 2000


def barge_ins(s: Scene, signal: NDArray) -> str:
    """`speech_started` events of a fresh local Vad on `signal` whose onset (the event's
    `audio_start_ms` plus the prefix padding) falls in the first 2 s and after, and the share
    of frames it calls speech from 2 s on (once a canceller has had time to converge)."""
    signal = np.asarray(signal, np.float32)
    vad = Vad(s.rate)
    onsets = [(e.audio_start_ms or 0) + vad.prefix_padding_ms for e in vad.process(signal) if e.type == "speech_started"]
    early = sum(onset < CONVERGING_MS for onset in onsets)
    speech = Vad(s.rate).classify(signal)[CONVERGING_MS // 10 :]
    return f"{early} + {len(onsets) - early} ({float(np.mean(speech)):.0%})"


def noiseless(s: Scene) -> Scene:
    """The scene without its background noise: the microphone is the echo (and near end)."""
    return replace(s, mic=(s.echo + s.near).astype(np.float32), noise=np.zeros_like(s.noise))


def print_delay_estimates(conditions: list[Condition]) -> None:
    """realtalk's `estimated_delay_ms` on each scene after 2 and 16 s, against the latency."""
    print("| condition | device latency ms | estimated_delay_ms single talk (2 s, 16 s) | double talk (2 s, 16 s) |")
    print("|---|---|---|---|")
    for condition in conditions:
        found = []
        for double_talk in (False, True):
            s = scene(condition, 16000, double_talk)
            canceller, n, at = EchoCanceller(s.rate), s.rate // 100, []
            for i in range(len(s.mic) // n):
                canceller.process(s.mic[i * n : (i + 1) * n], s.reference[i * n : (i + 1) * n])
                if i + 1 in (200, len(s.mic) // n):
                    at.append(canceller.estimated_delay_ms)
            found.append(f"{at[0]}, {at[1]}")
        print(f"| {condition.name} | {condition.latency_ms:.0f} | {found[0]} | {found[1]} |")


def available() -> dict[str, Callable[[int], tuple[Frame, int]]]:
    found = {}
    for name, make in CANCELLERS.items():
        try:
            process, _ = make(16000)
            process(np.zeros(160, np.float32), np.zeros(160, np.float32))
            found[name] = make
        except Exception as error:  # a peer that does not load is reported, not fatal
            print(f"# {name}: not available ({type(error).__name__}: {error})")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conditions", type=int, default=len(CONDITIONS))
    parser.add_argument("--rates", type=int, nargs="+", default=[16000, 48000], help="rates of the CPU column")
    args = parser.parse_args()
    cancellers = available()
    print(f"# load average {os.getloadavg()[0]:.2f} (busy shared machine: CPU figures are indicative)")
    print(
        "| condition | canceller | ERLE dB (SNR cap) | converged s | ERLE without noise dB | converged s "
        "| DT segSNR dB | DT VAD F1 | false barge-ins first 2 s + after (speech frames after 2 s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for condition in CONDITIONS[: args.conditions]:
        single, double = scene(condition, 16000, False), scene(condition, 16000, True)
        cap = db(power(single.mic) / power(single.noise))
        clean = noiseless(single)
        print(
            f"| {condition.name} | none (raw mic) | 0.0 ({cap:.0f}) | - | 0.0 | - | {segmental_snr(double, double.mic):.1f} "
            f"| {vad_f1(double, double.mic):.2f} | {barge_ins(single, single.mic)} |"
        )
        for name, make in cancellers.items():
            out, _ = run(make, single)
            erle, converged = erle_and_convergence(single, out)
            clean_erle, clean_converged = erle_and_convergence(clean, run(make, clean)[0])
            dt, _ = run(make, double)
            print(
                f"| {condition.name} | {name} | {erle:.1f} ({cap:.0f}) | {converged:.1f} | {clean_erle:.1f} "
                f"| {clean_converged:.1f} | {segmental_snr(double, dt):.1f} | {vad_f1(double, dt):.2f} "
                f"| {barge_ins(single, out)} |"
            )
    print()
    print_delay_estimates(CONDITIONS[: args.conditions])
    print()
    print("| canceller | " + " | ".join(f"CPU per 10 ms frame at {rate // 1000} kHz, us" for rate in args.rates) + " |")
    print("|---" * (len(args.rates) + 1) + "|")
    scenes = {rate: scene(CONDITIONS[1], rate, False) for rate in args.rates}
    for name, make in cancellers.items():
        cpu = [run(make, scenes[rate])[1] * 1e6 for rate in args.rates]
        print(f"| {name} | " + " | ".join(f"{c:.0f}" for c in cpu) + " |")
    print(f"# load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
