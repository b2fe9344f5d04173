"""Type stubs for realtalk's Rust extension module (checked by mypy.stubtest in the tests)."""

from typing import Any, Final, Literal, TypeAlias, TypeVar, final

import numpy as np
import numpy.typing as npt
from numpy.typing import DTypeLike, NDArray

_Int16Array: TypeAlias = npt.NDArray[np.int16]
_UInt8Array: TypeAlias = npt.NDArray[np.uint8]
_Float32Array: TypeAlias = npt.NDArray[np.float32]
_FloatArray: TypeAlias = npt.NDArray[np.float32] | npt.NDArray[np.float64]
_BytesLike: TypeAlias = bytes | bytearray | memoryview | npt.NDArray[np.generic]
_Pcm16: TypeAlias = npt.NDArray[np.int16] | bytes | bytearray | memoryview
_Codes: TypeAlias = npt.NDArray[np.uint8] | bytes | bytearray | memoryview

__all__ = [
    "__version__",
    "build_profile",
    "simd",
    # ---- pcm ----
    "float_to_pcm16",
    "pcm16_to_float",

    # ---- codec ----
    "alaw_decode",
    "alaw_encode",
    "b64decode",
    "b64encode",
    "pcm16_from_base64",
    "pcm16_to_base64",
    "ulaw_decode",
    "ulaw_encode",

    # ---- ring ----
    "PlaybackBuffer",
    "RingBuffer",

    # ---- resample ----
    "Resampler",
    "resample",

    # ---- vad ----
    "Vad",
    "VadEvent",

    # ---- frame ----
    "AudioDelta",
    "Downlink",
    "QueuedDelta",
    "Uplink",

    # ---- handoff ----
    "FrameHandoff",
    "HANDOFF_FULL",
    "HANDOFF_NOT_TAKEN",
    "HANDOFF_QUEUED",
    "HANDOFF_QUEUED_WAKE",
    "HANDOFF_TOO_LARGE",

    # ---- aec ----
    "EchoCanceller",
]


__version__: Final[str]
build_profile: Final[str]
simd: Final[str]
"""The SIMD level the kernels run at ("scalar", "sse2", "avx2" or "avx512"): the CPU's best,
capped by the environment variable REALTALK_SIMD when the module is loaded."""

# ---- pcm ----

def float_to_pcm16(samples: _FloatArray) -> _Int16Array:
    """Converts float32/float64 samples to PCM16 (NaN -> 0, clip to [-1, 1], x 32767, rint)."""

def pcm16_to_float(samples: _Pcm16) -> _Float32Array:
    """Converts PCM16 (int16 array or bytes-like) to float32: each sample / 32768."""

# ---- codec ----

def b64encode(buffer: _BytesLike) -> str:
    """Base64 (standard alphabet, padded) of a bytes-like object, as ``base64.b64encode``."""

def b64decode(text: str | _BytesLike) -> bytes:
    """Strict base64 decode; ValueError names the offset of the first bad character."""

def pcm16_to_base64(samples: _Pcm16) -> str:
    """Base64 of little-endian PCM16 (int16 array or bytes-like)."""

def pcm16_from_base64(text: str | _BytesLike) -> _Int16Array:
    """Decodes base64 of little-endian PCM16 to an int16 array."""

def ulaw_encode(pcm16: _Pcm16) -> _UInt8Array:
    """PCM16 to G.711 mu-law codes, bit-exact with ``audioop.lin2ulaw``."""

def ulaw_decode(codes: _Codes) -> _Int16Array:
    """G.711 mu-law codes to PCM16, bit-exact with ``audioop.ulaw2lin``."""

def alaw_encode(pcm16: _Pcm16) -> _UInt8Array:
    """PCM16 to G.711 A-law codes, bit-exact with ``audioop.lin2alaw``."""

def alaw_decode(codes: _Codes) -> _Int16Array:
    """G.711 A-law codes to PCM16, bit-exact with ``audioop.alaw2lin``."""

# ---- ring ----

@final
class RingBuffer:
    """A fixed-capacity FIFO of int16 samples, safe to share between threads."""

    def __new__(cls, capacity: int) -> RingBuffer: ...
    def write(self, samples: _Pcm16) -> int:
        """Appends as many samples as fit; returns how many were accepted."""
    def read(self, n: int) -> _Int16Array:
        """Removes and returns up to ``n`` of the oldest samples."""
    def peek(self, n: int) -> _Int16Array:
        """Returns up to ``n`` of the oldest samples without removing them."""
    def clear(self) -> None:
        """Drops every queued sample (the capacity stays)."""
    @property
    def capacity(self) -> int: ...
    @property
    def free(self) -> int:
        """Room left, in samples."""
    def __len__(self) -> int: ...

@final
class PlaybackBuffer:
    """The speaker side of a conversation: pushed by the event loop, pulled by the device."""

    def __new__(cls, sample_rate: int, capacity_ms: int = 60000) -> PlaybackBuffer: ...
    def push(self, item_id: str, content_index: int, samples: _Pcm16) -> int:
        """Queues samples of one content part; returns how many fit."""
    def pull(self, n: int) -> _Int16Array:
        """The next ``n`` samples, zero-filled past what is queued."""
    def pull_into(self, out: _Int16Array | _Float32Array) -> int:
        """Fills the device's output block in place; returns how many real frames it got.

        ``out`` is int16 or float32 (samples / 32768), 1-D or (frames, channels) with every
        channel filled, C-contiguous and writable: the callback's whole ``outdata``."""
    def played(self, item_id: str) -> int:
        """Samples of ``item_id`` played so far (all its content parts); 0 if unknown."""
    def interrupt(self) -> tuple[str, int, int] | None:
        """Drops the queue; returns (item_id, content_index, audio_end_ms) or None."""
    def clear(self) -> None:
        """Drops the queue and forgets the current part."""
    def pause(self) -> None:
        """Holds playback: pulls yield silence and ``played`` stops until ``resume`` (pushes
        still queue; ``interrupt`` and ``clear`` keep the pause)."""
    def resume(self) -> None:
        """Plays on from where ``pause`` held it."""
    @property
    def paused(self) -> bool:
        """True between ``pause`` and ``resume``."""
    @property
    def current(self) -> tuple[str, int] | None:
        """(item_id, content_index) of the part being heard, or None."""
    @property
    def sample_rate(self) -> int: ...
    @property
    def capacity(self) -> int: ...
    @property
    def queued(self) -> int:
        """Samples queued and not yet pulled."""
    @property
    def free(self) -> int: ...
    @property
    def underruns(self) -> int:
        """How many times playback ran dry after audio was pushed."""
    # ---- playback tap (issue 19) ----
    def enable_tap(self, capacity_ms: int) -> None:
        """Keep the last ``capacity_ms`` of what the pulls hand out (their silence too) for
        ``read_tap``; calling it again only ever grows the tap."""
    def read_tap(self, start: int, n: int) -> tuple[_Int16Array, int, int]:
        """``(samples, unplayed, lost)``: speaker clock ``[start, start + n)``, zeros where the
        tap has none (``unplayed``: not played yet; ``lost``: before the tap or overwritten)."""
    @property
    def pulled_samples(self) -> int:
        """The speaker clock: samples the pulls handed out since the buffer was made."""
    @property
    def tap_capacity(self) -> int:
        """Samples the tap keeps (0 until ``enable_tap``)."""
    # ---- end of playback tap ----

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

    Filters are linear phase (every frequency delayed alike) unless that would lag more than the
    preset promises ("high" 3 ms, "low" 1 ms): "high" with a side below 14.4 kHz (8, 11.025,
    12 kHz) and "low" with a side below about 11.5 kHz use the minimum-phase filter with the same
    magnitude response instead, lagging 0.17-0.41 ms rather than 1.1-5.5 ms. Their ``delay`` is
    the group delay at low frequencies (rounded to whole input samples); higher frequencies lag
    more, up to about 1.2 ms more at 3.4 kHz for 8 kHz. "max" is always linear phase.
    """

    def __new__(
        cls, in_rate: int, out_rate: int, *, channels: int = 1, quality: str = "high"
    ) -> Resampler: ...
    def process(self, samples: _Samples) -> _Samples:
        """Resample one chunk; returns a fresh array (the input is borrowed, not copied)."""
    def flush(self, dtype: DTypeLike | None = None) -> NDArray[Any]:
        """Return the tail, making the total round(frames_in * out_rate / in_rate), then rewind.

        Same dtype and dimensionality as the last chunk processed (float32, 1-D for mono, before
        any), unless ``dtype`` (float32 or int16) says otherwise.
        """
    def reset(self) -> None:
        """Forget all input; the next chunk starts a new stream."""
    @property
    def delay(self) -> float:
        """How far the stream lags its input, in output samples (the group delay at low
        frequencies; see the class docstring for the minimum-phase pairs)."""
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

@final
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

    def __new__(
        cls, in_rate: int, *, format: str = "pcm16", channels: int = 1, quality: str = "high"
    ) -> Uplink: ...
    def encode(
        self,
        samples: npt.NDArray[np.float32] | npt.NDArray[np.int16],
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

@final
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
    def samples(self) -> npt.NDArray[Any]:
        """float32 or int16, as the downlink was asked."""

@final
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

@final
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

    def __new__(
        cls,
        out_rate: int,
        *,
        format: str = "pcm16",
        protocol: Literal["ga", "beta"] = "ga",
        dtype: DTypeLike | None = None,
        quality: str = "high",
    ) -> Downlink: ...
    def decode(self, message: str | bytes) -> AudioDelta | None:
        """The delta's fields and samples, or ``None`` if the message is not an audio delta."""

    def decode_into(self, message: str | bytes, playback: PlaybackBuffer) -> QueuedDelta | None:
        """Decodes a delta straight into ``playback`` (int16, at ``out_rate``)."""

    def flush(self) -> npt.NDArray[Any]:
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
    def dtype(self) -> np.dtype[Any]: ...
    @property
    def delay(self) -> float:
        """How far the output lags the wire, in output samples."""


# ---- handoff ----

HANDOFF_NOT_TAKEN: Final[int]
HANDOFF_QUEUED: Final[int]
HANDOFF_QUEUED_WAKE: Final[int]
HANDOFF_FULL: Final[int]
HANDOFF_TOO_LARGE: Final[int]

@final
class FrameHandoff:
    """A bounded FIFO of audio frames from any thread to the event loop's thread: copies
    each frame into an arena allocated once, never waits, wakes the consumer through
    ``wake_fd`` on the empty-to-non-empty edge."""

    def __new__(cls, max_frames: int, arena_bytes: int) -> FrameHandoff: ...
    def open(self, default_rate: int | None = None) -> None:
        """Starts taking frames; the calling thread becomes the consumer."""
    def close(self) -> None:
        """Stops taking frames; what is queued stays."""
    def push(self, samples: object, rate: int | None = None) -> int:
        """Queues a C-contiguous float32/int16 array; returns a ``HANDOFF_*`` outcome."""
    def woken(self) -> None:
        """Call before looking at the queue: the next push wakes the consumer again."""
    def front(self) -> tuple[npt.NDArray[Any], int, int] | None:
        """The oldest frame as ``(samples, channels, rate)``, channels 0 for 1-D."""
    def pop(self) -> bool:
        """Drops the oldest frame."""
    def __len__(self) -> int: ...
    @property
    def max_frames(self) -> int: ...
    @property
    def arena_bytes(self) -> int: ...
    @property
    def wake_fd(self) -> int | None:
        """Readable when frames arrive: an eventfd on Linux, a pipe on other unix systems;
        None elsewhere (then a push that must wake the consumer returns
        ``HANDOFF_QUEUED_WAKE``)."""

@final
class EchoCanceller:
    """Acoustic echo canceller: removes from the microphone what the loudspeaker played.

    A partitioned-block frequency-domain adaptive filter models the echo path (`filter_ms`
    long, after `delay_ms`, the device's output-to-input latency if known), its learning rate
    follows the estimated residual echo so near-end speech does not derail it, and a per-bin
    residual echo suppressor (`suppress`, one frame of latency) removes what it misses. When
    the far end talks alone (`far_end_only`), the suppressor outputs comfort noise at the
    background's level instead, so a VAD on the output (local or the server's) does not hear
    the agent's residual echo as the user.
    Any rate from 8000 to 48000 Hz with a whole number of samples in a 10, 20 or 30 ms frame.
    """

    def __new__(
        cls,
        sample_rate: int,
        *,
        frame_ms: int = 10,
        filter_ms: int = 250,
        delay_ms: int = 0,
        suppress: bool = True,
    ) -> EchoCanceller: ...
    def process(
        self,
        mic: NDArray[np.float32] | NDArray[np.int16],
        reference: NDArray[np.float32] | NDArray[np.int16],
    ) -> Any:
        """Cancel one frame: `mic` and `reference` (what was played) are `frame_samples` long;
        returns the cleaned frame, same dtype as `mic`, `latency_samples` late."""
    def reset(self) -> None:
        """Start over: the echo path is learnt again."""
    @property
    def sample_rate(self) -> int: ...
    @property
    def frame_ms(self) -> int: ...
    @property
    def filter_ms(self) -> int: ...
    @property
    def delay_ms(self) -> int: ...
    @property
    def suppress(self) -> bool: ...
    @property
    def frame_samples(self) -> int:
        """Samples per frame (`sample_rate * frame_ms / 1000`)."""
    @property
    def latency_samples(self) -> int:
        """How many samples the output lags the microphone (one frame with `suppress`)."""
    @property
    def frames(self) -> int:
        """Frames processed since construction or `reset`."""
    @property
    def divergences(self) -> int:
        """How many times the filter was found diverged and restarted."""
    @property
    def estimated_delay_ms(self) -> int | None:
        """The measured delay between the reference (as given, before ``delay_ms``) and its
        echo in the microphone, in ms (0 to 250), or None until about a second of far-end
        signal has given a clear estimate. A good ``delay_ms`` is this value less a few ms."""
    @property
    def far_end_only(self) -> bool:
        """Whether the last frame was judged far-end single talk: its output is comfort noise
        at the background's level. Always false with ``suppress=False``."""
