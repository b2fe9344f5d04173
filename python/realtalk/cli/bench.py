"""``realtalk bench``: realtalk next to the usual Python way, on this machine, per 20 ms frame.

Only what needs no extra setup runs: numpy and the stdlib are always there; soxr and audioop
rows appear when those are importable, and a note under the table names each one left out. The full benchmark suites live in the repository's
``benches/`` (criterion and pytest-benchmark).
"""

from __future__ import annotations

import base64
import json
import timeit
from collections.abc import Callable
from typing import Any

import numpy as np

from realtalk import audio

FRAME_MS = 20


def _best_us(fn: Callable[[], object], budget_s: float = 0.15) -> float:
    """Best per-call time of several timed batches, in microseconds."""
    timer = timeit.Timer(fn)
    calls, elapsed = timer.autorange()
    per_batch = max(1, int(calls * budget_s / max(elapsed, 1e-9) / 5))
    return min(timer.repeat(repeat=5, number=per_batch)) / per_batch * 1e6


def _rows(left_out: list[str]) -> list[tuple[str, float, str, float]]:
    rng = np.random.default_rng(7)
    mic24 = (rng.standard_normal(24000 * FRAME_MS // 1000) * 0.1).astype(np.float32)
    mic48 = (rng.standard_normal(48000 * FRAME_MS // 1000) * 0.1).astype(np.float32)
    pcm = audio.float_to_pcm16(mic24)
    delta = json.dumps({"type": "response.output_audio.delta", "event_id": "event_1",
                        "response_id": "resp_1", "item_id": "item_1", "output_index": 0,
                        "content_index": 0, "delta": base64.b64encode(pcm.tobytes()).decode()})
    rows: list[tuple[str, float, str, float]] = []

    def numpy_pcm16(x: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(x * 32767), -32768, 32767).astype(np.int16)

    rows.append(("float32 -> pcm16", _best_us(lambda: audio.float_to_pcm16(mic24)),
                 "numpy clip/rint/astype", _best_us(lambda: numpy_pcm16(mic24))))
    rows.append(("base64 encode", _best_us(lambda: audio.pcm16_to_base64(pcm)),
                 "stdlib base64", _best_us(lambda: base64.b64encode(pcm.tobytes()).decode())))
    encoded = audio.pcm16_to_base64(pcm)
    rows.append(("base64 decode", _best_us(lambda: audio.pcm16_from_base64(encoded)),
                 "stdlib base64", _best_us(lambda: np.frombuffer(
                     base64.b64decode(encoded, validate=True), dtype=np.int16))))
    try:
        import audioop  # stdlib up to 3.12, audioop-lts after
    except ImportError:
        left_out.append("audioop is not importable: the mu-law row is left out "
                        "(Python 3.13 and later: pip install audioop-lts)")
    else:
        raw = pcm.tobytes()
        rows.append(("mu-law encode", _best_us(lambda: audio.ulaw_encode(pcm)),
                     "audioop.lin2ulaw", _best_us(lambda: audioop.lin2ulaw(raw, 2))))

    uplink24 = audio.Uplink(24000)
    rows.append(("uplink 24 kHz mic frame -> append JSON", _best_us(lambda: uplink24.encode(mic24)),
                 "numpy + base64 + json.dumps", _best_us(lambda: json.dumps({
                     "type": "input_audio_buffer.append",
                     "audio": base64.b64encode(numpy_pcm16(mic24).tobytes()).decode()}))))
    downlink24 = audio.Downlink(24000)

    def usual_downlink(resample: Callable[[np.ndarray], np.ndarray] | None = None) -> object:
        event = json.loads(delta)
        samples = np.frombuffer(base64.b64decode(event["delta"]), dtype=np.int16) / 32768.0
        return resample(samples) if resample else samples.astype(np.float32)

    rows.append(("downlink delta JSON -> 24 kHz float32", _best_us(lambda: downlink24.decode(delta)),
                 "json.loads + base64 + numpy", _best_us(usual_downlink)))
    try:
        import soxr
    except ImportError:
        left_out.append("soxr is not installed: the 48 kHz rows (resampling next to soxr) "
                        "are left out (pip install soxr)")
    else:
        uplink48 = audio.Uplink(48000)
        downlink48 = audio.Downlink(48000)
        # realtalk's "high" rejects aliases and images by 104-118 dB; soxr HQ by 127-141 dB
        # and soxr MQ by 107-131 dB (tests/test_resample.py measures all three), so both soxr
        # qualities are shown: MQ is the closer match, HQ the stricter one.
        for quality in ("HQ", "MQ"):
            down_stream = soxr.ResampleStream(24000, 48000, 1, dtype="float32", quality=quality)
            up_stream = soxr.ResampleStream(48000, 24000, 1, dtype="float32", quality=quality)

            def soxr_uplink(stream: Any = up_stream) -> str:
                return json.dumps({"type": "input_audio_buffer.append",
                                   "audio": base64.b64encode(numpy_pcm16(
                                       stream.resample_chunk(mic48)).tobytes()).decode()})

            def soxr_downlink(stream: Any = down_stream) -> object:
                return usual_downlink(lambda x: stream.resample_chunk(x.astype(np.float32)))

            rows.append(("uplink 48 kHz mic frame -> append JSON",
                         _best_us(lambda: uplink48.encode(mic48)),
                         f"soxr {quality} + numpy + base64 + json", _best_us(soxr_uplink)))
            rows.append(("downlink delta JSON -> 48 kHz float32",
                         _best_us(lambda: downlink48.decode(delta)),
                         f"json + base64 + numpy + soxr {quality}", _best_us(soxr_downlink)))
    return rows


def run() -> int:
    """Print the table; the exit status."""
    print("realtalk bench: best of 5 timed batches, microseconds (u) per 20 ms frame\n")
    left_out: list[str] = []
    rows = _rows(left_out)
    width = max(len(r[0]) for r in rows)
    other = max(len(r[2]) for r in rows)
    print(f"  {'work':<{width}}  {'realtalk':>9}  {'usual way':<{other}}  {'':>9}  speed-up")
    for name, ours, alternative, theirs in rows:
        print(f"  {name:<{width}}  {ours:8.2f}u  {alternative:<{other}}  {theirs:8.2f}u  "
              f"{theirs / ours:6.1f}x")
    for note in left_out:
        print(f"\nnote: {note}")
    return 0
