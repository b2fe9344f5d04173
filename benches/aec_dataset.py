"""Echo cancellation evaluation set (issue 19): simulated rooms, espeak-ng talkers, seeded.

Each condition is a room (a shoebox from pyroomacoustics' image-source method, sized and
absorbing to reach a target RT60 between 0.2 and 0.8 s), a device latency (5-40 ms) and a
loudspeaker that soft-clips (tanh: peaks at 0.5 come out 8% low). The far end (the agent's voice, one espeak-ng voice) is
played through the loudspeaker and the room into the microphone; the near end (the user, a
different voice) speaks from elsewhere in the room; background noise (pink) at 10-30 dB SNR
is added. Two scenes per condition, 16 s each:

- single talk: the far end talks throughout, the near end is silent (ERLE, convergence,
  false barge-ins);
- double talk: the far end talks throughout, the near end from 8 s on (near-end
  preservation, the local VAD's F1 on the near end).

Signals are built at 16 and 48 kHz and cached under ~/.cache/realtalk/aec (one .npz per
condition, rate and scene), keyed by the seed: rebuilding gives the same arrays.

    python benches/aec_dataset.py            # build (or check) the cache
    (benches/aec_eval.py calls `scene()`)

Needs espeak-ng (Debian package) and pyroomacoustics (pip; wheels for CPython on Linux).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).parent))
from vad_dataset import ESPEAK_RATE, SENTENCES, espeak, pink, resample, trim  # noqa: E402

CACHE = Path.home() / ".cache" / "realtalk" / "aec"
SECONDS = 16.0
NEAR_FROM_S = 8.0


@dataclass(frozen=True)
class Condition:
    name: str
    room_m: tuple[float, float, float]
    rt60_s: float
    latency_ms: float
    snr_db: float
    seed: int


CONDITIONS = [
    Condition("small room, RT60 0.2 s, 5 ms, 30 dB", (4.0, 3.5, 2.7), 0.2, 5.0, 30.0, 1),
    Condition("office, RT60 0.4 s, 20 ms, 20 dB", (6.0, 4.5, 3.0), 0.4, 20.0, 20.0, 2),
    Condition("living room, RT60 0.6 s, 30 ms, 20 dB", (7.0, 5.0, 2.8), 0.6, 30.0, 20.0, 3),
    Condition("hall, RT60 0.8 s, 40 ms, 10 dB", (10.0, 7.0, 3.5), 0.8, 40.0, 10.0, 4),
]


def speech(rate: int, voice: str, seconds: float, seed: int) -> NDArray[np.float64]:
    """Sentences in one voice, back to back with short pauses, `seconds` long, at -20 dBFS RMS."""
    rng = np.random.RandomState(seed)
    pieces, total = [], 0
    while total < seconds * rate:
        text = SENTENCES[rng.randint(len(SENTENCES))]
        clip = trim(resample(espeak(text, voice, rng.randint(30, 70), rng.randint(150, 190)), ESPEAK_RATE, rate))
        pause = np.zeros(int(rng.uniform(0.15, 0.6) * rate))
        pieces += [clip, pause]
        total += len(clip) + len(pause)
    x = np.concatenate(pieces)[: int(seconds * rate)]
    return x * 0.1 / np.sqrt(np.mean(x**2))


def impulse_responses(condition: Condition, rate: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Loudspeaker-to-mic and talker-to-mic responses of the condition's room."""
    import pyroomacoustics as pra

    absorption, max_order = pra.inverse_sabine(condition.rt60_s, list(condition.room_m))
    room = pra.ShoeBox(
        list(condition.room_m), fs=rate, materials=pra.Material(absorption), max_order=min(max_order, 40)
    )
    rng = np.random.RandomState(condition.seed)
    x, y, z = condition.room_m
    device = np.array([x * 0.4, y * 0.5, 1.0])
    room.add_source(device + [0.1, 0.0, 0.0])  # the loudspeaker, 10 cm from the microphone
    room.add_source([x * rng.uniform(0.6, 0.8), y * rng.uniform(0.2, 0.8), 1.6])  # the user
    room.add_microphone(device)
    room.compute_rir()
    return np.asarray(room.rir[0][0]), np.asarray(room.rir[0][1])


@dataclass
class Scene:
    rate: int
    mic: NDArray[np.float32]
    reference: NDArray[np.float32]  # what the device played (before its own latency)
    echo: NDArray[np.float32]  # the far end's part of mic
    near: NDArray[np.float32]  # the near end's part of mic (through the room)
    noise: NDArray[np.float32]


def build(condition: Condition, rate: int, double_talk: bool) -> Scene:
    far = speech(rate, "en-us", SECONDS, seed=100 + condition.seed)
    speaker_ir, talker_ir = impulse_responses(condition, rate)
    n = len(far)
    played = np.tanh(far)  # a loudspeaker near its limit: soft clipping (-8% at 0.5)
    lag = int(condition.latency_ms * rate / 1000)
    echo = np.concatenate([np.zeros(lag), np.convolve(played, speaker_ir)])[:n]
    near = np.zeros(n)
    if double_talk:
        start = int(NEAR_FROM_S * rate)
        user = speech(rate, "en-us+f3", SECONDS - NEAR_FROM_S, seed=200 + condition.seed)
        near[start:] = np.convolve(user, talker_ir)[: n - start]
        near *= np.sqrt(np.mean(echo[start:] ** 2) / np.mean(near[start:] ** 2))  # 0 dB near/echo
    noise = pink(n, condition.seed)
    noise *= np.sqrt(np.mean(echo**2)) * 10 ** (-condition.snr_db / 20) / np.sqrt(np.mean(noise**2))
    mic = echo + near + noise
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    return Scene(rate, f32(mic), f32(far), f32(echo), f32(near), f32(noise))


def scene(condition: Condition, rate: int, double_talk: bool) -> Scene:
    """The scene from the cache, built (and cached) the first time."""
    path = CACHE / f"{condition.seed}-{rate}-{'double' if double_talk else 'single'}.npz"
    if path.exists():
        data = np.load(path)
        return Scene(rate, *(data[k] for k in ("mic", "reference", "echo", "near", "noise")))
    built = build(condition, rate, double_talk)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, mic=built.mic, reference=built.reference, echo=built.echo, near=built.near, noise=built.noise)
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[16000, 48000])
    args = parser.parse_args()
    for condition in CONDITIONS:
        for rate in args.rates:
            for double_talk in (False, True):
                s = scene(condition, rate, double_talk)
                print(f"{condition.name} @ {rate} Hz {'double' if double_talk else 'single'} talk: {len(s.mic) / rate:.0f} s")


if __name__ == "__main__":
    main()
