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

Resampler = _audio.Resampler
resample = _audio.resample
__all__ += ["Resampler", "resample"]

# ---- vad ----

# ---- frame ----

del _audio
