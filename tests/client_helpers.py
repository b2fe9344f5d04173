"""What the RealtimeClient tests share: a recorder of the client's notifications, a bounded
wait, and speech-like input streamed in frames."""

from __future__ import annotations

from typing import Any

import anyio
import numpy as np

from realtalk.client import Notification, RealtimeClient


class Recorder:
    """Every client notification, and the wire events in each direction."""

    def __init__(self, client: RealtimeClient) -> None:
        self.events: list[Notification] = []
        client.on("*", self.events.append)

    def names(self) -> list[str]:
        return [e.type for e in self.events]

    def errors(self, code: str | None = None) -> list[dict[str, Any]]:
        """The payloads of the error notifications, those with ``code`` if given."""
        return [dict(e["error"]) for e in self.events if e.type == "error"
                and (code is None or e["error"].get("code") == code)]

    def wire(self, source: str, kind: str | None = None) -> list[dict[str, Any]]:
        return [e["event"] for e in self.events if e.type == "realtime.event"
                and e["source"] == source and (kind is None or e["event"].get("type") == kind)]


async def until(condition: Any, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.005)


def speech_then_silence(speech_ms: int, silence_ms: int, rate: int = 24000) -> np.ndarray:
    """A voiced, syllable-modulated signal (energy in the speech band), then silence."""
    t = np.arange(rate * speech_ms // 1000) / rate
    voiced = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((180, 360, 720, 1440), 1))
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    speech = (0.25 * voiced * envelope).astype(np.float32)
    return np.concatenate([speech, np.zeros(rate * silence_ms // 1000, dtype=np.float32)])


async def stream(client: RealtimeClient, samples: np.ndarray, frame_ms: int = 20) -> None:
    step = client.input_rate * frame_ms // 1000
    for start in range(0, len(samples), step):
        client.append_input_audio(samples[start:start + step])
        await anyio.sleep(0)
