"""Labelled voice activity set, synthesised with Debian's espeak-ng and deterministic from a seed.

Each "timeline" is a sequence of utterances (varied voices, pitch, speed and length) separated
by silences of known length. The labels are where each utterance was placed, trimmed to its
true onset and offset (the first and last sample within 40 dB of the utterance's peak), so they
cover the pauses inside an utterance, as a turn detector should. Conditions mix the clean
timeline with white, pink or babble-like noise (six overlapping synthetic talkers) at 20, 10,
5 and 0 dB SNR (active-speech power over noise power).

Noise comes from numpy's legacy ``RandomState``, whose streams numpy keeps stable, so the tests
can rebuild any condition from the committed clean subset.

    python benches/vad_dataset.py --subset tests/data/vad/subset.npz   # the committed subset
    (benches/vad_accuracy.py calls `timeline()` and `mix()` for the full set)

Needs the ``espeak-ng`` program (Debian: ``apt-get install espeak-ng``) for synthesis only.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import wave
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

SENTENCES = [
    "Hello, can you hear me?",
    "I would like to book a table for two at seven thirty tonight.",
    "What is the weather going to be like tomorrow morning?",
    "Please turn off the lights in the kitchen.",
    "Yes.",
    "No, that is not what I meant at all.",
    "Could you read me the last message again, slowly?",
    "The quick brown fox jumps over the lazy dog.",
    "Remind me to call my sister when I get home.",
    "How long does it take to drive from Boston to New York?",
    "Okay, thanks.",
    "Set a timer for twelve minutes.",
    "I think the meeting has been moved to Thursday afternoon.",
    "Play something relaxing, maybe some jazz.",
    "Wait, stop.",
    "Can you spell that for me? It is important.",
    "My account number is four five nine, two two one, eight.",
    "Tell me a short story about a dragon who learns to bake bread.",
    "Sure, go ahead.",
    "Actually, cancel the order and send me a refund instead.",
    "Where is the nearest pharmacy that is still open?",
    "Translate good morning into French and Spanish.",
    "Hmm, let me think about it for a second.",
    "Seventeen.",
    "The train leaves from platform nine at a quarter past six.",
]
VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp"]
VARIANTS = ["m1", "m2", "m3", "m4", "m7", "f1", "f2", "f3", "f4", "klatt", "klatt3"]
ESPEAK_RATE = 22050
SNRS_DB = [20, 10, 5, 0]
NOISES = ["white", "pink", "babble"]
CONDITIONS = ["clean"] + [f"{noise} {snr} dB" for noise in NOISES for snr in SNRS_DB]


def espeak(text: str, voice: str, pitch: int, speed: int) -> NDArray[np.float64]:
    """One utterance at espeak-ng's own 22050 Hz, as floats."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "--stdout", text],
        check=True,
        capture_output=True,
    ).stdout
    with wave.open(io.BytesIO(wav)) as reader:
        assert reader.getframerate() == ESPEAK_RATE and reader.getsampwidth() == 2
        pcm = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    return pcm.astype(np.float64) / 32768.0


def resample(x: NDArray[np.float64], rate_in: int, rate_out: int) -> NDArray[np.float64]:
    from scipy.signal import resample_poly

    g = gcd(rate_in, rate_out)
    return np.asarray(resample_poly(x, rate_out // g, rate_in // g), dtype=np.float64)


def trim(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """The utterance between its true onset and offset (within 40 dB of its peak)."""
    loud = np.flatnonzero(np.abs(x) > 0.01 * np.abs(x).max())
    return x[loud[0] : loud[-1] + 1]


@dataclass
class Timeline:
    rate: int
    speech: NDArray[np.float64]
    segments: NDArray[np.int64]  # (n, 2) sample [onset, offset) of each utterance

    def frame_labels(self, frame_ms: int) -> NDArray[np.bool_]:
        """A frame is speech when at least half of it lies inside an utterance."""
        n = self.rate * frame_ms // 1000
        inside = np.zeros(len(self.speech), dtype=np.int32)
        for onset, offset in self.segments:
            inside[onset:offset] = 1
        frames = len(self.speech) // n
        return inside[: frames * n].reshape(frames, n).sum(axis=1) * 2 >= n


def timeline(seed: int, rate: int, utterances: int, talker_voices: bool = True) -> Timeline:
    """Utterances separated by 0.8-3 s of silence, after 1 s of lead-in, at -35..-20 dBFS."""
    rng = np.random.RandomState(seed)
    pieces: list[NDArray[np.float64]] = [np.zeros(rate)]
    segments = []
    position = rate
    for _ in range(utterances):
        text = SENTENCES[rng.randint(len(SENTENCES))]
        voice = VOICES[rng.randint(len(VOICES))] + "+" + VARIANTS[rng.randint(len(VARIANTS))]
        clip = trim(resample(espeak(text, voice, rng.randint(20, 81), rng.randint(130, 211)), ESPEAK_RATE, rate))
        level_db = rng.uniform(-35.0, -20.0)
        clip *= 10 ** (level_db / 20) / np.sqrt(np.mean(clip**2))
        pieces.append(clip)
        segments.append((position, position + len(clip)))
        position += len(clip)
        gap = int(rng.uniform(0.8, 3.0) * rate)
        pieces.append(np.zeros(gap))
        position += gap
    return Timeline(rate, np.concatenate(pieces), np.array(segments, dtype=np.int64))


# Real speech: the eight human recordings Debian's `alsa-utils` ships ("Front Center", "Rear
# Left", ...; 48 kHz mono, two words each, 1.3-1.5 s), labelled word by word and checked by
# hand: for each file the 5 ms RMS envelope (dBFS) was printed and read around each boundary.
# A word's onset is where its first consonant rises out of the background (-60 dBFS and below,
# or digital silence where the recording was gated); its offset is where its last sound (the
# vowel's decay, or the release and aspiration of a final "t") falls back to within about
# 10 dB of that background. Every boundary agrees, within 5 ms, with the synthetic set's rule
# (first and last sample within 40 dB of the file's peak, applied to each word's half). The
# 125-340 ms of silence between the two words is not speech: those recordings were edited, the
# pause is true silence, so here the words are the units (in the synthetic set the unit is the
# utterance, whose short pauses count as speech).
RECORDINGS_DIR = Path("/usr/share/sounds/alsa")
RECORDED_RATE = 48000
RECORDED_WORDS_MS = {
    "Front_Center.wav": ((28, 461), (798, 1360)),
    "Front_Left.wav": ((23, 470), (748, 1310)),
    "Front_Right.wav": ((50, 576), (878, 1397)),
    "Rear_Center.wav": ((30, 511), (660, 1201)),
    "Rear_Left.wav": ((26, 474), (824, 1296)),
    "Rear_Right.wav": ((46, 577), (918, 1423)),
    "Side_Left.wav": ((35, 578), (820, 1310)),
    "Side_Right.wav": ((21, 587), (830, 1262)),
}


def read_recording(name: str, directory: Path = RECORDINGS_DIR) -> NDArray[np.float64]:
    """One of the alsa-utils recordings at 48 kHz, as floats."""
    path = directory / name
    if not path.exists():
        raise RuntimeError(f"{path} is missing (Debian: apt-get install alsa-utils)")
    with wave.open(str(path)) as reader:
        assert reader.getframerate() == RECORDED_RATE and reader.getsampwidth() == 2 and reader.getnchannels() == 1
        pcm = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    return pcm.astype(np.float64) / 32768.0


def recorded_timeline(seed: int, rate: int, repeats: int = 4, directory: Path = RECORDINGS_DIR) -> Timeline:
    """The recordings, each `repeats` times in a seeded order, placed like `timeline`'s
    utterances (1 s lead-in, 0.8-3 s apart, -35..-20 dBFS over the words); one segment per word."""
    rng = np.random.RandomState(seed)
    names = [name for name in RECORDED_WORDS_MS for _ in range(repeats)]
    rng.shuffle(names)
    pieces: list[NDArray[np.float64]] = [np.zeros(rate)]
    segments = []
    position = rate
    for name in names:
        clip = resample(read_recording(name, directory), RECORDED_RATE, rate)
        words = [(onset_ms * rate // 1000, offset_ms * rate // 1000) for onset_ms, offset_ms in RECORDED_WORDS_MS[name]]
        level_db = rng.uniform(-35.0, -20.0)
        clip *= 10 ** (level_db / 20) / np.sqrt(np.mean(np.concatenate([clip[a:b] for a, b in words]) ** 2))
        pieces.append(clip)
        segments += [(position + onset, position + offset) for onset, offset in words]
        position += len(clip)
        gap = int(rng.uniform(0.8, 3.0) * rate)
        pieces.append(np.zeros(gap))
        position += gap
    return Timeline(rate, np.concatenate(pieces), np.array(segments, dtype=np.int64))


def white(n: int, seed: int) -> NDArray[np.float64]:
    return np.random.RandomState(seed).standard_normal(n)


def pink(n: int, seed: int) -> NDArray[np.float64]:
    """1/f power: white noise shaped by 1/sqrt(f) in the frequency domain."""
    spectrum = np.fft.rfft(np.random.RandomState(seed).standard_normal(n))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spectrum / np.sqrt(f), n)


def babble(n: int, seed: int, rate: int, talkers: int = 6) -> NDArray[np.float64]:
    """Six overlapping talkers, each a continuous stream of synthetic speech."""
    rng = np.random.RandomState(seed)
    out = np.zeros(n)
    for _ in range(talkers):
        stream: list[NDArray[np.float64]] = []
        length = 0
        while length < n:
            voice = VOICES[rng.randint(len(VOICES))] + "+" + VARIANTS[rng.randint(len(VARIANTS))]
            text = SENTENCES[rng.randint(len(SENTENCES))]
            clip = trim(resample(espeak(text, voice, rng.randint(20, 81), rng.randint(150, 211)), ESPEAK_RATE, rate))
            stream.append(clip / np.sqrt(np.mean(clip**2)))
            length += len(clip)
        joined = np.concatenate(stream)
        start = rng.randint(len(joined) - n + 1) if len(joined) > n else 0
        out += joined[start : start + n]
    return out


def noise(kind: str, n: int, seed: int, rate: int) -> NDArray[np.float64]:
    if kind == "white":
        return white(n, seed)
    if kind == "pink":
        return pink(n, seed)
    if kind == "babble":
        return babble(n, seed, rate)
    raise ValueError(kind)


def mix(t: Timeline, condition: str, seed: int, noise_track: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
    """The timeline under `condition` ("clean" or "<noise> <snr> dB"), as float64 in [-1, 1]."""
    if condition == "clean":
        return t.speech.copy()
    kind, snr, _ = condition.split()
    track = noise(kind, len(t.speech), seed, t.rate) if noise_track is None else noise_track
    active = np.concatenate([t.speech[a:b] for a, b in t.segments])
    speech_power = np.mean(active**2)
    track = track * np.sqrt(speech_power / np.mean(track**2) / 10 ** (int(snr) / 10))
    return np.clip(t.speech + track, -1.0, 1.0)


def to_int16(x: NDArray[np.float64]) -> NDArray[np.int16]:
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def write_subset(path: Path, seed: int, utterances: int) -> None:
    """The committed subset: the clean 16 kHz timeline as int16 plus its segments."""
    t = timeline(seed, 16000, utterances)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, rate=np.int64(16000), speech=to_int16(t.speech), segments=t.segments, seed=np.int64(seed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subset", type=Path, required=True, help="where to write the committed subset (.npz)")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--utterances", type=int, default=16)
    args = parser.parse_args()
    write_subset(args.subset, args.seed, args.utterances)


if __name__ == "__main__":
    main()
