"""Audio at the simulator's edges: the session's input formats into samples for the turn
detector, and synthesised pcm16 24 kHz into the session's output format."""

from __future__ import annotations

from typing import Any

import numpy as np

from realtalk import audio as _audio

# semantic_vad has no silence knob; its eagerness decides how long a pause ends a turn.
SEMANTIC_SILENCE_MS = {"low": 800, "medium": 500, "auto": 500, "high": 250}


def input_samples(fmt: str, data: bytes) -> tuple[np.ndarray, int]:
    """pcm16 samples and their rate for audio in a session input format."""
    if fmt == "pcm16":
        usable = len(data) - len(data) % 2
        return np.frombuffer(data[:usable], dtype="<i2"), 24000
    decode = getattr(_audio, "ulaw_decode" if fmt == "g711_ulaw" else "alaw_decode", None)
    if decode is None:
        return _g711_decode(fmt, data), 8000
    return np.asarray(decode(data), dtype=np.int16), 8000


def encode_output(fmt: str, pcm24k: bytes) -> bytes:
    """Synthesised pcm16 at 24 kHz into the output format (G.711 is 8 kHz)."""
    if fmt == "pcm16":
        return pcm24k
    samples = np.frombuffer(pcm24k, dtype="<i2")
    # 24 kHz -> 8 kHz: the synthetic voice has little energy above 3 kHz, and a 3-tap box
    # average before decimation keeps what aliasing remains inaudible for a test signal.
    usable = len(samples) - len(samples) % 3
    down = samples[:usable].astype(np.int32).reshape(-1, 3).mean(axis=1).astype(np.int16)
    encode = getattr(_audio, "ulaw_encode" if fmt == "g711_ulaw" else "alaw_encode", None)
    if encode is None:
        return _g711_encode(fmt, down)
    return bytes(encode(down))


# G.711 per ITU-T: used until the core's codec is available in realtalk.audio.
def _g711_encode(fmt: str, samples: np.ndarray) -> bytes:
    import audioop

    width_bytes = samples.astype("<i2").tobytes()
    return audioop.lin2ulaw(width_bytes, 2) if fmt == "g711_ulaw" else audioop.lin2alaw(width_bytes, 2)


def _g711_decode(fmt: str, data: bytes) -> np.ndarray:
    import audioop

    raw = audioop.ulaw2lin(data, 2) if fmt == "g711_ulaw" else audioop.alaw2lin(data, 2)
    return np.frombuffer(raw, dtype="<i2")


class EnergyVad:
    """Turn detection with server_vad's knobs on 10 ms frames: a frame is speech when its level
    maps above ``threshold`` (0.5 is about -35 dBFS); speech starts at the first speech frame
    (reported ``prefix_padding_ms`` earlier) and stops after ``silence_duration_ms`` without
    speech (reported at that moment, so the end includes the silence tail)."""

    def __init__(self, turn_detection: dict[str, Any], input_format: str) -> None:
        self.format = input_format
        self.threshold = float(turn_detection.get("threshold", 0.5))
        self.prefix_ms = float(turn_detection.get("prefix_padding_ms", 300))
        if turn_detection.get("type") == "semantic_vad":
            self.threshold = 0.5
            self.prefix_ms = 300.0
            self.silence_ms = float(
                SEMANTIC_SILENCE_MS[turn_detection.get("eagerness", "auto")]
            )
        else:
            self.silence_ms = float(turn_detection.get("silence_duration_ms", 200))
        self.rate = 24000 if input_format == "pcm16" else 8000
        self.frame = self.rate // 100
        self._pending = np.zeros(0, dtype=np.int16)
        self._pending_bytes = b""
        self._frames = 0
        self._in_speech = False
        self._silent_frames = 0
        self._silence_frames = max(1, round(self.silence_ms / 10))
        # A frame is speech when its level, mapped from -60..-10 dBFS onto 0..1, exceeds the
        # threshold: compare the frame's energy with the energy at that level instead.
        threshold_db = self.threshold * 50 - 60
        rms = 32768.0 * 10 ** (threshold_db / 20)
        self._energy_threshold = float(self.frame * rms * rms)

    def process(self, data: bytes) -> list[tuple[str, float]]:
        if self.format == "pcm16":
            if self._pending_bytes:
                data = self._pending_bytes + data
            usable = len(data) - len(data) % 2
            self._pending_bytes = data[usable:]
            samples, _ = input_samples(self.format, data[:usable])
        else:
            samples, _ = input_samples(self.format, data)
        if len(self._pending):
            samples = np.concatenate([self._pending, samples])
        whole = len(samples) - len(samples) % self.frame
        self._pending = samples[whole:]
        if whole == 0:
            return []
        frames = samples[:whole].astype(np.float32).reshape(-1, self.frame)
        energy = np.einsum("ij,ij->i", frames, frames)
        events: list[tuple[str, float]] = []
        silence_frames = self._silence_frames
        for is_speech in (energy > self._energy_threshold).tolist():
            self._frames += 1
            if is_speech:
                self._silent_frames = 0
                if not self._in_speech:
                    self._in_speech = True
                    start_ms = self._frames * 10.0 - 10 - self.prefix_ms
                    events.append(("speech_started", max(0.0, start_ms)))
            elif self._in_speech:
                self._silent_frames += 1
                if self._silent_frames >= silence_frames:
                    self._in_speech = False
                    self._silent_frames = 0
                    events.append(("speech_stopped", self._frames * 10.0))
        return events


def make_vad(turn_detection: dict[str, Any], input_format: str) -> EnergyVad:
    return EnergyVad(turn_detection, input_format)
