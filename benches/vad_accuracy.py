"""Accuracy of realtalk's Vad next to webrtcvad (all modes) on the regenerated espeak-ng set.

    python benches/vad_accuracy.py                    # full set: 16 and 24 kHz, 100 utterances
    python benches/vad_accuracy.py --utterances 30    # quicker
    python benches/vad_accuracy.py --recorded         # real speech: the alsa-utils recordings

Prints, per sample rate and condition, frame-level precision / recall / F1 (10 ms frames, the
detector's own decisions against the placement labels), then turn metrics with the server_vad
defaults (threshold 0.5, prefix_padding_ms 300, silence_duration_ms 500): the share of
utterances whose speech_started onset (audio_start_ms + padding) lands within 100 ms of the
true onset, false speech_started per minute of noise alone (60 s of each noise at -60..-20
dBFS), and the end latency beyond silence_duration_ms after the true offset (median).
webrtcvad works at 16 kHz: the 24 kHz audio is resampled to 16 kHz for it, and its frame
decisions drive the same server_vad state machine.

Needs espeak-ng, scipy and webrtcvad (the `bench` extra). The synthesised set is cached under
~/.cache/realtalk/vad.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).parent))
import vad_dataset as ds  # noqa: E402

from realtalk.audio import Vad  # noqa: E402

FRAME_MS = 10
PADDING_MS = 300
SILENCE_MS = 500
BAR_CONDITIONS = ["clean"] + [f"{n} {s} dB" for n in ("white", "pink") for s in ds.SNRS_DB]
LOW_SNR_CONDITIONS = [f"{n} {s} dB" for n in ("white", "pink") for s in (5, 0)]

Events = list[tuple[str, int]]
Detector = Callable[[NDArray[np.int16]], tuple[NDArray[np.bool_], Events]]


def frame_scores(decisions: NDArray[np.bool_], labels: NDArray[np.bool_]) -> tuple[float, float, float]:
    n = min(len(decisions), len(labels))
    d, l = decisions[:n], labels[:n]
    tp = float(np.sum(d & l))
    precision = tp / max(float(np.sum(d)), 1.0)
    recall = tp / max(float(np.sum(l)), 1.0)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return precision, recall, f1


def server_vad_events(decisions: Iterable[bool]) -> Events:
    """The server_vad turn machine over raw frame decisions (for webrtcvad)."""
    events: Events = []
    speaking = False
    silence = 0
    last_end = 0
    for i, speech in enumerate(decisions):
        start, end = i * FRAME_MS, (i + 1) * FRAME_MS
        if speech:
            if not speaking:
                speaking = True
                events.append(("speech_started", max(0, start - PADDING_MS)))
            last_end, silence = end, 0
        elif speaking:
            silence += FRAME_MS
            if silence >= SILENCE_MS:
                speaking = False
                events.append(("speech_stopped", last_end + SILENCE_MS))
    return events


def realtalk_detector(rate: int) -> Detector:
    def run(pcm: NDArray[np.int16]) -> tuple[NDArray[np.bool_], Events]:
        decisions = Vad(rate, frame_ms=FRAME_MS).classify(pcm)
        vad = Vad(rate, prefix_padding_ms=PADDING_MS, silence_duration_ms=SILENCE_MS, frame_ms=FRAME_MS)
        events: Events = [
            (e.type, e.audio_start_ms if e.audio_start_ms is not None else e.audio_end_ms)  # type: ignore[misc]
            for e in vad.process(pcm)
        ]
        return decisions, events

    return run


def webrtc_detector(rate: int, mode: int) -> Detector:
    import soxr
    import webrtcvad

    def run(pcm: NDArray[np.int16]) -> tuple[NDArray[np.bool_], Events]:
        audio = pcm if rate == 16000 else soxr.resample(pcm, rate, 16000)
        vad = webrtcvad.Vad(mode)
        n = 16000 * FRAME_MS // 1000
        raw = audio.astype("<i2").tobytes()
        decisions = np.array(
            [vad.is_speech(raw[2 * i : 2 * (i + n)], 16000) for i in range(0, len(audio) - n + 1, n)], dtype=bool
        )
        return decisions, server_vad_events(decisions)

    return run


def chunk_decisions_to_frames(chunk_speech: NDArray[np.bool_], chunk: int, samples: int) -> NDArray[np.bool_]:
    """10 ms decisions at 16 kHz from a detector's decisions on `chunk`-sample blocks: each
    frame takes the decision of the block holding its centre."""
    centres = np.arange(samples // 160) * 160 + 80
    return chunk_speech[np.minimum(centres // chunk, len(chunk_speech) - 1)]


def as_16k_float(pcm: NDArray[np.int16], rate: int) -> NDArray[np.float32]:
    import soxr

    audio = pcm.astype(np.float32) / 32768.0
    return audio if rate == 16000 else soxr.resample(audio, rate, 16000).astype(np.float32)


def silero_detector(rate: int) -> Detector:
    """Silero VAD v6 (the ONNX model the `silero-vad` wheel ships), run with onnxruntime and
    numpy alone: 512-sample blocks at 16 kHz, each with the previous block's last 64 samples
    as context, the recurrent state carried over; speech when the probability is >= 0.5."""
    from importlib.metadata import PackageNotFoundError, distribution

    import onnxruntime

    try:  # located without importing the package, whose __init__ needs torch
        model = str(distribution("silero-vad").locate_file("silero_vad/data/silero_vad.onnx"))
    except PackageNotFoundError as error:
        raise ImportError("silero-vad is not installed") from error

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])

    def run(pcm: NDArray[np.int16]) -> tuple[NDArray[np.bool_], Events]:
        audio = as_16k_float(pcm, rate)
        blocks = -(-len(audio) // 512)
        padded = np.concatenate([np.zeros(64, np.float32), audio, np.zeros(blocks * 512 - len(audio), np.float32)])
        state = np.zeros((2, 1, 128), np.float32)
        sr = np.array(16000, dtype=np.int64)
        probs = np.empty(blocks, np.float32)
        for k in range(blocks):
            window = padded[k * 512 : k * 512 + 576][None, :]
            out, state = session.run(None, {"input": window, "state": state, "sr": sr})
            probs[k] = out[0, 0]
        decisions = chunk_decisions_to_frames(probs >= 0.5, 512, len(audio))
        return decisions, server_vad_events(decisions)

    return run


def earshot_detector(rate: int) -> Detector:
    """earshot's `Detector` on 256-sample (16 ms) blocks at 16 kHz; speech when its score is >= 0.5."""
    import earshot

    def run(pcm: NDArray[np.int16]) -> tuple[NDArray[np.bool_], Events]:
        audio = as_16k_float(pcm, rate)
        blocks = len(audio) // 256
        detector = earshot.Detector()
        scores = np.array([detector.predict_f32(audio[k * 256 : (k + 1) * 256]) for k in range(blocks)])
        decisions = chunk_decisions_to_frames(scores >= 0.5, 256, len(audio))
        return decisions, server_vad_events(decisions)

    return run


def optional_detectors(rate: int) -> dict[str, Detector]:
    """Silero and earshot when they are installed (`pip install onnxruntime silero-vad earshot`;
    silero-vad's own torch dependency is not needed: `--no-deps`)."""
    found: dict[str, Detector] = {}
    for name, make in (("silero", silero_detector), ("earshot", earshot_detector)):
        try:
            found[name] = make(rate)
        except ImportError as error:
            print(f"({name} skipped: {error})", file=sys.stderr)
    return found


def turn_metrics(events: Events, segments_ms: NDArray[np.int64]) -> tuple[float, float]:
    """(share of onsets within 100 ms, median end latency beyond the silence duration)."""
    starts = np.array([ms + PADDING_MS for kind, ms in events if kind == "speech_started" and ms > 0])
    stops = np.array([ms - SILENCE_MS for kind, ms in events if kind == "speech_stopped"])
    hits = 0
    latencies = []
    for onset, offset in segments_ms:
        if len(starts) and np.min(np.abs(starts - onset)) <= 100:
            hits += 1
        after = stops[stops >= onset] if len(stops) else stops
        if len(after):
            latencies.append(after.min() - offset)
    return hits / len(segments_ms), float(np.median(latencies)) if latencies else float("nan")


def false_starts_per_minute(detector: Detector, rate: int, seed: int) -> float:
    starts = 0
    minutes = 0.0
    for kind in ("white", "pink"):
        for level_db in (-60, -50, -40, -30, -20):
            track = ds.noise(kind, 60 * rate, (seed + level_db) % 2**32, rate)  # RandomState takes no negative seed
            track *= 10 ** (level_db / 20) / np.sqrt(np.mean(track**2))
            _, events = detector(ds.to_int16(track))
            starts += sum(kind == "speech_started" for kind, _ in events)
            minutes += 1.0
    return starts / minutes


def load_set(rate: int, seed: int, utterances: int, cache: Path) -> tuple[ds.Timeline, dict[str, NDArray[np.int16]]]:
    path = cache / f"set-{rate}-{seed}-{utterances}.npz"
    if path.exists():
        data = np.load(path)
        t = ds.Timeline(rate, data["speech"].astype(np.float64) / 32768.0, data["segments"])
        return t, {c: data[f"mix {c}"] for c in ds.CONDITIONS}
    t = ds.timeline(seed, rate, utterances)
    mixes = {c: ds.to_int16(ds.mix(t, c, seed + i)) for i, c in enumerate(ds.CONDITIONS)}
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, speech=ds.to_int16(t.speech), segments=t.segments, **{f"mix {c}": m for c, m in mixes.items()})
    return t, mixes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=100)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--rates", type=int, nargs="+", default=[16000, 24000])
    parser.add_argument("--no-webrtc", action="store_true")
    parser.add_argument("--recorded", action="store_true",
                        help="the alsa-utils human recordings (vad_dataset.recorded_timeline) instead of espeak-ng")
    parser.add_argument("--no-optional", action="store_true", help="skip silero and earshot even if installed")
    cache_home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    parser.add_argument("--cache", type=Path, default=cache_home / "realtalk" / "vad")
    args = parser.parse_args()

    for rate in args.rates:
        if args.recorded:
            t = ds.recorded_timeline(args.seed, rate)
            mixes = {c: ds.to_int16(ds.mix(t, c, args.seed + i)) for i, c in enumerate(ds.CONDITIONS)}
        else:
            t, mixes = load_set(rate, args.seed, args.utterances, args.cache)
        labels = t.frame_labels(FRAME_MS)
        segments_ms = t.segments * 1000 // rate
        detectors: dict[str, Detector] = {"realtalk": realtalk_detector(rate)}
        if not args.no_webrtc:
            detectors |= {f"webrtcvad {m}": webrtc_detector(rate, m) for m in range(4)}
        if not args.no_optional:
            detectors |= optional_detectors(rate)
        minutes = len(t.speech) / rate / 60
        source = f"{len(t.segments)} words of alsa-utils recordings" if args.recorded else f"{len(t.segments)} espeak-ng utterances"
        print(f"\n## {rate} Hz: {source}, {minutes:.1f} min per condition, "
              f"{labels.mean():.0%} speech frames\n")
        header = "| condition | " + " | ".join(detectors) + " |"
        print("Frame-level F1 (precision / recall):\n")
        print(header)
        print("|" + "---|" * (len(detectors) + 1))
        f1s: dict[str, dict[str, float]] = {name: {} for name in detectors}
        turns: dict[str, dict[str, tuple[float, float]]] = {name: {} for name in detectors}
        for condition in ds.CONDITIONS:
            row = [condition]
            for name, detector in detectors.items():
                decisions, events = detector(mixes[condition])
                p, r, f1 = frame_scores(decisions, labels)
                f1s[name][condition] = f1
                turns[name][condition] = turn_metrics(events, segments_ms)
                row.append(f"**{f1:.3f}** ({p:.2f} / {r:.2f})")
            print("| " + " | ".join(row) + " |")
        for label, conditions in (("mean of the 9 bar conditions", BAR_CONDITIONS), ("mean at 5 and 0 dB", LOW_SNR_CONDITIONS)):
            print(f"| {label} | " + " | ".join(f"**{np.mean([f1s[n][c] for c in conditions]):.3f}**" for n in detectors) + " |")
        print("\nTurns (onsets within 100 ms / median end latency beyond silence_duration_ms, ms):\n")
        print(header)
        print("|" + "---|" * (len(detectors) + 1))
        for condition in ds.CONDITIONS:
            print(f"| {condition} | " + " | ".join(
                f"{turns[n][condition][0]:.0%} / {turns[n][condition][1]:.0f}" for n in detectors) + " |")
        print("| false starts per minute of noise alone | " + " | ".join(
            f"{false_starts_per_minute(d, rate, args.seed):.2f}" for d in detectors.values()) + " |")


if __name__ == "__main__":
    main()
