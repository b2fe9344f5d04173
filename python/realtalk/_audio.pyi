"""Type stubs for realtalk's Rust extension module (checked by mypy.stubtest in the tests)."""

from typing import Any, Final, TypeVar, final

import numpy as np
from numpy.typing import DTypeLike, NDArray

__all__ = [
    "__version__",
    "build_profile",
    # ---- pcm ----

    # ---- codec ----

    # ---- ring ----

    # ---- resample ----
    "Resampler",
    "resample",

    # ---- vad ----

    # ---- frame ----

]


__version__: Final[str]
build_profile: Final[str]

# ---- pcm ----

# ---- codec ----

# ---- ring ----

# ---- resample ----

_Samples = TypeVar("_Samples", NDArray[np.float32], NDArray[np.int16])

@final
class Resampler:
    """Streaming polyphase resampler between two integer rates (8,000 to 192,000 Hz).

    ``process`` takes float32 or int16 frames (1-D for mono, or 2-D frames x channels) of any
    length, including empty, and returns every complete output frame in the same dtype and
    dimensionality; the concatenated outputs do not depend on the chunking. Outputs are aligned
    with the input: the stream lags by ``delay`` output samples, and ``flush`` returns the tail.
    Thread-safe; large inputs are resampled with the interpreter released.
    """

    def __new__(
        cls, in_rate: int, out_rate: int, *, channels: int = 1, quality: str = "high"
    ) -> Resampler: ...
    def process(self, samples: _Samples) -> _Samples:
        """Resample one chunk; returns a fresh array (the input is borrowed, not copied)."""
    def flush(self, dtype: DTypeLike | None = None) -> NDArray[Any]:
        """Return the tail, making the total round(frames_in * out_rate / in_rate), then rewind.

        float32 unless ``dtype`` is int16; 1-D for mono, 2-D (frames, channels) otherwise.
        """
    def reset(self) -> None:
        """Forget all input; the next chunk starts a new stream."""
    @property
    def delay(self) -> float:
        """How far the stream lags its input, in output samples."""
    @property
    def in_rate(self) -> int: ...
    @property
    def out_rate(self) -> int: ...
    @property
    def channels(self) -> int: ...
    @property
    def quality(self) -> str: ...

def resample(
    samples: _Samples, in_rate: int, out_rate: int, *, quality: str = "high"
) -> _Samples:
    """One-shot, delay-compensated resampling: round(frames * out_rate / in_rate) frames.

    Same dtype and shape convention as the input (2-D input keeps its channels); equal to
    ``process`` + ``flush`` of a fresh ``Resampler``.
    """


# ---- vad ----

# ---- frame ----
