"""The numpy face of realtalk's Rust audio core.

Everything here takes numpy arrays (or bytes-like PCM16) and returns numpy arrays, ``str`` or
``bytes``. Inputs are borrowed without copies; each output is one fresh allocation. Bad input
(wrong dtype, wrong shape, non-contiguous arrays, odd byte counts, invalid base64) raises
``ValueError`` with a message that says what was wrong.
"""

from __future__ import annotations

from realtalk import _audio

__all__: list[str] = []

# ---- pcm ----

# ---- codec ----

# ---- ring ----

# ---- resample ----

# ---- vad ----

# ---- frame ----
# The fused hot paths: one call per 20 ms frame each way (see the class docstrings).
from realtalk._audio import AudioDelta, Downlink, QueuedDelta, Uplink

__all__ += ["AudioDelta", "Downlink", "QueuedDelta", "Uplink"]

del _audio
