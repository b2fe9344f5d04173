"""Type stubs for realtalk's Rust extension module (checked by mypy.stubtest in the tests)."""

from typing import Final, Literal, final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "__version__",
    "build_profile",
    # ---- pcm ----

    # ---- codec ----

    # ---- ring ----

    # ---- resample ----

    # ---- vad ----
    "Vad",
    "VadEvent",

    # ---- frame ----

]


__version__: Final[str]
build_profile: Final[str]

# ---- pcm ----

# ---- codec ----

# ---- ring ----

# ---- resample ----

# ---- vad ----

@final
class VadEvent:
    """A turn boundary found by `Vad.process`, timed like the server's events."""

    @property
    def type(self) -> Literal["speech_started", "speech_stopped"]: ...
    @property
    def audio_start_ms(self) -> int | None:
        """`speech_started`: the onset minus `prefix_padding_ms`, in ms from the first sample."""
    @property
    def audio_end_ms(self) -> int | None:
        """`speech_stopped`: the speech end plus `silence_duration_ms`, in ms from the first sample."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Vad:
    """Streaming voice activity detector with the Realtime API's `server_vad` semantics.

    Energy-based: speech-band energies against adaptive per-band noise floors, with onset
    confirmation and hangover. `threshold` (0..1) is how far above the noise speech must be;
    `prefix_padding_ms` is included before the onset in `audio_start_ms`;
    `silence_duration_ms` of non-speech ends a turn and is included in `audio_end_ms`.
    Works at 8000, 16000, 24000 and 48000 Hz with 10, 20 or 30 ms frames.
    """

    def __new__(
        cls,
        sample_rate: int = 24000,
        *,
        threshold: float = 0.5,
        prefix_padding_ms: int = 300,
        silence_duration_ms: int = 500,
        frame_ms: int = 10,
    ) -> Vad: ...
    def process(self, samples: NDArray[np.float32] | NDArray[np.int16]) -> list[VadEvent]:
        """Feed a chunk of any length; return the events it completes (the input is not copied)."""
    def classify(self, samples: NDArray[np.float32] | NDArray[np.int16]) -> NDArray[np.bool_]:
        """Feed a chunk; return one decision per `frame_ms` frame it completes (a new array).

        The detector's own smoothing is included; padding and silence duration are not. Shares
        its state with `process`: use one or the other on a stream.
        """
    def reset(self) -> None:
        """Start a new stream: the clock restarts at 0 and the noise floor is learnt again."""
    @property
    def speaking(self) -> bool:
        """True between `speech_started` and `speech_stopped`."""
    @property
    def sample_rate(self) -> int: ...
    @property
    def threshold(self) -> float: ...
    @property
    def prefix_padding_ms(self) -> int: ...
    @property
    def silence_duration_ms(self) -> int: ...
    @property
    def frame_ms(self) -> int: ...
    @property
    def processed_ms(self) -> int:
        """Milliseconds of audio analysed so far (whole frames since the first sample or reset)."""

# ---- frame ----
