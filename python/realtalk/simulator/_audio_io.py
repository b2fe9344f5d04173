"""Audio at the simulator's edges, on realtalk's Rust core: the session's input formats into
samples for the turn detector (`realtalk.audio.Vad`), and synthesised pcm16 24 kHz into the
session's output format (`resample`, G.711)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from realtalk import audio

# semantic_vad has no silence knob; its eagerness decides how long a pause ends a turn.
SEMANTIC_SILENCE_MS = {"low": 800, "medium": 500, "auto": 500, "high": 250}

_PCM16 = np.dtype("<i2")

b64decode = audio.b64decode
b64encode = audio.b64encode


def encode_output(fmt: str, pcm24k: bytes) -> bytes:
    """Synthesised pcm16 at 24 kHz into the output format (G.711 is 8 kHz)."""
    if fmt == "pcm16":
        return pcm24k
    samples: NDArray[np.int16] = np.frombuffer(pcm24k, dtype="<i2")
    down = audio.resample(samples, 24000, 8000)
    encode = audio.ulaw_encode if fmt == "g711_ulaw" else audio.alaw_encode
    return encode(down).tobytes()


class SessionVad:
    """`server_vad` / `semantic_vad` turn detection for one session's input: feeds the
    session's input bytes (pcm16 24 kHz or G.711 8 kHz) to `realtalk.audio.Vad` and reports
    ``("speech_started", audio_start_ms)`` / ``("speech_stopped", audio_end_ms)``, in ms from
    the detector's first sample."""

    def __init__(self, turn_detection: dict[str, Any], input_format: str) -> None:
        if turn_detection.get("type") == "semantic_vad":
            threshold, prefix_ms = 0.5, 300
            silence_ms = SEMANTIC_SILENCE_MS[turn_detection.get("eagerness", "auto")]
        else:
            threshold = float(turn_detection.get("threshold", 0.5))
            prefix_ms = int(turn_detection.get("prefix_padding_ms", 300))
            silence_ms = int(turn_detection.get("silence_duration_ms", 200))
        self.format = input_format
        rate = 24000 if input_format == "pcm16" else 8000
        self._vad = audio.Vad(
            rate,
            threshold=threshold,
            prefix_padding_ms=prefix_ms,
            silence_duration_ms=silence_ms,
        )
        self._odd_byte = b""

    def process(self, data: bytes) -> list[tuple[str, float]]:
        if self.format == "pcm16":
            if self._odd_byte or len(data) % 2:
                data = self._odd_byte + data
                usable = len(data) - len(data) % 2
                self._odd_byte = data[usable:]
                data = data[:usable]
            samples = np.frombuffer(data, _PCM16)
        elif self.format == "g711_ulaw":
            samples = audio.ulaw_decode(data)
        else:
            samples = audio.alaw_decode(data)
        found = self._vad.process(samples)
        events: list[tuple[str, float]] = []
        if not found:  # nearly every frame
            return events
        for event in found:
            if event.type == "speech_started":
                events.append(("speech_started", float(event.audio_start_ms or 0)))
            else:
                events.append(("speech_stopped", float(event.audio_end_ms or 0)))
        return events


def make_vad(turn_detection: dict[str, Any], input_format: str) -> SessionVad:
    return SessionVad(turn_detection, input_format)
