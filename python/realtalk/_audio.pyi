"""Type stubs for realtalk's Rust extension module (checked by mypy.stubtest in the tests)."""

from typing import Final

__all__ = [
    "__version__",
    "build_profile",
    # ---- pcm ----

    # ---- codec ----

    # ---- ring ----

    # ---- resample ----

    # ---- vad ----

    # ---- frame ----
    "AudioDelta",
    "Downlink",
    "QueuedDelta",
    "Uplink",

]


__version__: Final[str]
build_profile: Final[str]

# ---- pcm ----

# ---- codec ----

# ---- ring ----

# ---- resample ----

# ---- vad ----

# ---- frame ----

from typing import Any as _Any
from typing import final as _final

import numpy as _np
import numpy.typing as _npt

@_final
class Uplink:
    """A microphone frame to the JSON text of an ``input_audio_buffer.append`` event.

    Each frame (float32 or int16, 1-D mono or ``(frames, channels)``, at ``in_rate``) is
    down-mixed to the channels' mean, resampled to the wire rate (24 kHz for ``"pcm16"``,
    8 kHz for G.711) with state carried from frame to frame, converted (``float_to_pcm16``,
    then G.711 if asked), base64-encoded straight into the event's buffer and returned as
    ``bytes``, ready for ``websocket.send``.

    >>> uplink = Uplink(48_000)
    >>> event = uplink.encode(np.zeros(960, np.float32), event_id="mic_1")
    >>> json.loads(event)["type"]
    'input_audio_buffer.append'
    """

    def __init__(
        self, in_rate: int, *, format: str = "pcm16", channels: int = 1, quality: str = "high"
    ) -> None: ...
    def encode(
        self,
        samples: _npt.NDArray[_np.float32] | _npt.NDArray[_np.int16],
        *,
        event_id: str | None = None,
    ) -> bytes:
        """The complete append event for one frame (any size), as UTF-8 JSON bytes."""

    def flush(self, *, event_id: str | None = None) -> bytes:
        """The event for the tail the resampler still holds; then a new stream starts."""

    def reset(self) -> None:
        """Forgets the resampler's history and zeroes the audio clock."""

    @property
    def appended_samples(self) -> int:
        """Samples at the wire rate appended so far (the server's audio clock)."""

    @property
    def appended_ms(self) -> float:
        """``appended_samples`` in milliseconds."""

    @property
    def in_rate(self) -> int: ...
    @property
    def wire_rate(self) -> int: ...
    @property
    def format(self) -> str: ...
    @property
    def channels(self) -> int: ...
    @property
    def delay(self) -> float:
        """How far the wire lags the input, in wire samples."""

@_final
class AudioDelta:
    """One audio delta event, its audio decoded to samples at the downlink's rate."""

    @property
    def response_id(self) -> str: ...
    @property
    def item_id(self) -> str: ...
    @property
    def output_index(self) -> int: ...
    @property
    def content_index(self) -> int: ...
    @property
    def samples(self) -> _npt.NDArray[_Any]:
        """float32 or int16, as the downlink was asked."""

@_final
class QueuedDelta:
    """One audio delta event, decoded straight into a ``PlaybackBuffer``."""

    @property
    def response_id(self) -> str: ...
    @property
    def item_id(self) -> str: ...
    @property
    def output_index(self) -> int: ...
    @property
    def content_index(self) -> int: ...
    @property
    def decoded(self) -> int:
        """Samples the delta decoded to, at the buffer's rate."""

    @property
    def queued(self) -> int:
        """How many of them fit in the buffer (the rest was not queued)."""

@_final
class Downlink:
    """Audio delta events (``response.output_audio.delta``, beta ``response.audio.delta``)
    to samples at the speaker's rate.

    The JSON is scanned without a full parse; any message the scanner is not sure of (escapes
    in keys, duplicate fields, unusual numbers, ...) is parsed in full with ``json.loads``, so
    the answer is always the one a full parse gives.

    >>> downlink = Downlink(48_000)
    >>> downlink.decode('{"type":"session.updated","session":{}}') is None
    True
    """

    def __init__(
        self,
        out_rate: int,
        *,
        format: str = "pcm16",
        protocol: str = "ga",
        dtype: _npt.DTypeLike | None = None,
        quality: str = "high",
    ) -> None: ...
    def decode(self, message: str | bytes) -> AudioDelta | None:
        """The delta's fields and samples, or ``None`` if the message is not an audio delta."""

    def decode_into(self, message: str | bytes, playback: PlaybackBuffer) -> QueuedDelta | None:
        """Decodes a delta straight into ``playback`` (int16, at ``out_rate``)."""

    def flush(self) -> _npt.NDArray[_Any]:
        """The tail the resampler still holds; then a new stream starts."""

    def reset(self) -> None:
        """Forgets the resampler's history (after a barge-in, say)."""

    @property
    def out_rate(self) -> int: ...
    @property
    def wire_rate(self) -> int: ...
    @property
    def format(self) -> str: ...
    @property
    def protocol(self) -> str: ...
    @property
    def dtype(self) -> _np.dtype[_Any]: ...
    @property
    def delay(self) -> float:
        """How far the output lags the wire, in output samples."""
