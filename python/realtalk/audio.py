"""The numpy face of realtalk's Rust audio core.

Everything here takes numpy arrays (or bytes-like PCM16) and returns numpy arrays, ``str`` or
``bytes``. Inputs are borrowed without copies; each output is one fresh allocation. Bad input
(wrong dtype, wrong shape, non-contiguous arrays, odd byte counts, invalid base64) raises
``ValueError`` with a message that says what was wrong. So does a size, count, rate or
duration outside its documented range, negative and huge alike (a ring or playback buffer holds
at most 2**31 samples); an allocation the machine cannot give raises ``MemoryError``. Nothing
here aborts the interpreter.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import numpy as np
import numpy.typing as npt

from realtalk import _audio

__all__: list[str] = []

# ---- pcm ----
# The kernels are re-exported as they are (their docstrings, with examples, live on the
# extension functions): a Python wrapper would add a call's worth of overhead per frame.
from realtalk._audio import float_to_pcm16, pcm16_to_float

__all__ += ["float_to_pcm16", "pcm16_to_float"]

# ---- codec ----
from realtalk._audio import (
    alaw_decode,
    alaw_encode,
    b64decode,
    b64encode,
    pcm16_from_base64,
    pcm16_to_base64,
    ulaw_decode,
    ulaw_encode,
)

__all__ += [
    "alaw_decode",
    "alaw_encode",
    "b64decode",
    "b64encode",
    "pcm16_from_base64",
    "pcm16_to_base64",
    "ulaw_decode",
    "ulaw_encode",
]

# ---- ring ----
from realtalk._audio import PlaybackBuffer, RingBuffer

__all__ += ["PlaybackBuffer", "RingBuffer"]

# ---- resample ----

Resampler = _audio.Resampler
resample = _audio.resample
__all__ += ["Resampler", "resample"]

# ---- vad ----
Vad = _audio.Vad
VadEvent = _audio.VadEvent
__all__ += ["Vad", "VadEvent"]


class TurnDetector(Protocol):
    """What ``RealtimeClient(local_vad=...)`` needs: `Vad` is one; a detector of your own
    (webrtcvad, Silero, ...) fits too if it has these two members.

    ``process`` gets each microphone frame (mono, at ``sample_rate``) and returns the turn
    boundaries it completes: `VadEvent` objects, or anything whose ``type`` (attribute or
    mapping key) is ``"speech_started"`` or ``"speech_stopped"``.
    """

    @property
    def sample_rate(self) -> int:
        """The rate the detector expects, in Hz (the client's ``input_rate``)."""
        ...

    def process(
        self, samples: npt.NDArray[np.float32] | npt.NDArray[np.int16]
    ) -> Iterable[object]:
        """The turn boundaries this frame completes, oldest first."""
        ...


__all__ += ["TurnDetector"]

# ---- frame ----
# The fused hot paths: one call per 20 ms frame each way (see the class docstrings).
from realtalk._audio import AudioDelta, Downlink, QueuedDelta, Uplink

__all__ += ["AudioDelta", "Downlink", "QueuedDelta", "Uplink"]

# ---- aec ----
# Acoustic echo cancellation in the Rust core (issue 19): one frame of mic and reference in,
# the cleaned frame out; realtalk/_echo.py wires it to the client's playback.
EchoCanceller = _audio.EchoCanceller
__all__ += ["EchoCanceller"]

del _audio
