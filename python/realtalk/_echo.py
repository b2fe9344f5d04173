"""Echo cancellation in the client (``RealtimeClient(echo_cancel=True)``, issue 19).

With local playback the client knows exactly what the speaker played: ``client.playback``'s
tap keeps every sample the device pulled (the silence it filled in too) on the speaker clock.
The microphone's samples are counted on their own clock, from the first one appended. A
duplex device (or an output stream started no later than the input stream) captures mic
sample ``i`` while it plays speaker sample ``i``, and the echo of speaker sample ``k`` reaches
the microphone ``delay_ms`` later (the device's output-to-input latency): so the reference
for mic samples ``[i, i + n)`` is the speaker's ``[i - delay, i - delay + n)``, resampled to
the mic's rate when the rates differ. Alignment is by the two sample clocks only, never by
when a frame happened to reach the event loop, so it is exact however late the loop runs.

Cleaning runs where the loop encodes a frame (``_encode_frame``), after the device thread's
hand-off: the device's path stays one Rust push. Cleaned audio goes to the uplink and to a
local ``Vad``. The canceller works in whole frames (10 ms), so up to a frame of audio waits
for the next one, and its suppressor adds one frame of latency.

A frame the client refuses (a full hand-off or uplink: ``InputBackpressure``) still took its
time on the mic's clock: the reference skips it at its place in the stream (counted in pops
of the hand-off, under a lock the refusal shares), so the frames after it stay aligned.

``delay_ms`` defaults to ``DEFAULT_DELAY_MS``, under what any sound card's output-to-input
latency is, so the echo never comes before its reference; the canceller's 250 ms filter
covers the rest of the latency and the room's tail. Measure the latency and give it (minus a
few ms) when it is long or the room is reverberant, so the filter is spent on the room.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from realtalk import audio as _audio
from realtalk._content import mono_float

__all__ = ["DEFAULT_DELAY_MS", "TAP_MS", "EchoCancel"]

DEFAULT_DELAY_MS = 10
# How much played audio the tap keeps for the reference: frames can wait in the hand-off (up
# to its depth, seconds) before the loop cleans them, and their reference must still be there.
TAP_MS = 10_000

_EMPTY = np.zeros(0, dtype=np.float32)


class _Reference:
    """What the speaker played, on the microphone's clock and at its rate: ``take(n)`` gives
    the next ``n`` reference samples. Starts with ``delay`` samples of silence (nothing the
    speaker played reaches the mic sooner), then the tap read from speaker clock 0 on."""

    def __init__(self, playback: _audio.PlaybackBuffer, rate: int, delay: int) -> None:
        self._playback = playback
        self._ratio = playback.sample_rate / rate
        self._resampler = (None if playback.sample_rate == rate
                           else _audio.Resampler(playback.sample_rate, rate))
        # The resampler's lag in output samples, dropped so its output lines up with its input.
        self._lag = 0 if self._resampler is None else round(self._resampler.delay)
        self._ready = np.zeros(delay, dtype=np.float32)
        self._cursor = 0  # the next speaker-clock sample to read

    def take(self, n: int) -> tuple[npt.NDArray[np.float32], bool]:
        """The next ``n`` samples, and whether all of them were played (False: some were not
        played yet, or no longer in the tap, and read as silence)."""
        complete = True
        pieces = [self._ready]
        have = len(self._ready)
        while have < n:
            count = n - have if self._resampler is None else \
                math.ceil((n - have + self._lag) * self._ratio) + 1
            samples, unplayed, lost = self._playback.read_tap(self._cursor, count)
            self._cursor += count
            complete = complete and not (unplayed or lost)
            if self._resampler is not None:
                samples = self._resampler.process(samples)
                if self._lag:
                    dropped = min(self._lag, len(samples))
                    samples, self._lag = samples[dropped:], self._lag - dropped
            pieces.append(_audio.pcm16_to_float(samples))
            have += len(samples)
        ready = np.concatenate(pieces) if len(pieces) > 1 else self._ready
        self._ready = ready[n:]
        return ready[:n], complete


class EchoCancel:
    """The client's echo canceller: mic frames in, cleaned mono float32 out (see the module
    docstring). ``frames_cleaned`` and ``reference_underruns`` (canceller frames whose
    reference was not all played yet or was lost) go to the client's metrics."""

    def __init__(self, playback: _audio.PlaybackBuffer, rate: int, metrics: Any, *,
                 delay_ms: int = DEFAULT_DELAY_MS) -> None:
        if isinstance(delay_ms, bool) or not isinstance(delay_ms, int) or not \
                0 <= delay_ms <= 1000:
            raise ValueError(f"echo_delay_ms must be a whole number of ms from 0 to 1000, "
                             f"got {delay_ms!r}")
        self.rate = rate
        self.canceller = _audio.EchoCanceller(rate)
        self._frame = self.canceller.frame_samples
        self._metrics = metrics
        playback.enable_tap(TAP_MS)
        self._reference = _Reference(playback, rate, rate * delay_ms // 1000)
        self._pending = _EMPTY  # mic samples short of a whole canceller frame
        # Mic frames appended but refused (a full hand-off), from any thread: the mic's clock
        # moved past them, so the reference must too, once the frames queued before them are
        # taken off the hand-off. Each is [frames still to pop before it, its samples]; the
        # lock makes a refusal's count and the loop's pops exact against each other.
        self._drops: list[list[int]] = []
        self._drops_lock = threading.Lock()

    @classmethod
    def for_client(cls, enabled: bool, client: Any, delay_ms: int) -> EchoCancel | None:
        """The client's canceller, or None when ``enabled`` is false; ValueError when there
        is no local playback to take the reference from."""
        if not enabled:
            return None
        if not client.local_playback:
            raise ValueError("echo_cancel=True needs local_playback=True: the reference is "
                             "what client.playback hands the speaker")
        return cls(client.playback, client.input_rate, client.metrics, delay_ms=delay_ms)

    def check_rate(self, rate: int) -> None:
        """ValueError for a frame at another rate than the canceller's (the input rate)."""
        if rate != self.rate:
            raise ValueError(f"echo_cancel cleans audio at the input rate ({self.rate} Hz); "
                             f"this frame is at {rate} Hz")

    def dropped(self, samples: int, handoff: Any) -> None:
        """A mic frame of ``samples`` was refused (any thread) with the frames now in the
        ``handoff`` queued before it: the frame after those comes that much later on the
        mic's clock."""
        with self._drops_lock:
            self._drops.append([len(handoff), samples])

    def popped(self, handoff: Any) -> None:
        """Take the cleaned front frame off the ``handoff`` (the loop)."""
        with self._drops_lock:
            handoff.pop()
            for drop in self._drops:
                drop[0] -= 1

    def _skip_drops(self) -> None:
        """Move the reference past the drops due before this frame."""
        with self._drops_lock:
            gap = sum(samples for before, samples in self._drops if before <= 0)
            self._drops = [drop for drop in self._drops if drop[0] > 0]
        if gap:
            # The held partial frame's neighbours are gone: it is dropped too, and the
            # reference moves past both (the canceller's filter stays: the room did not change).
            self._reference.take(len(self._pending) + gap)
            self._pending = _EMPTY

    def clean(self, frame: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """The frame's samples (mono, or mixed down) less the echo, in whole canceller frames:
        what is left waits for the next frame, so the output may be shorter or longer."""
        if self._drops:
            self._skip_drops()
        mic = mono_float(frame)
        if len(self._pending):
            mic = np.concatenate((self._pending, mic))
        whole = len(mic) // self._frame * self._frame
        self._pending = mic[whole:]
        if not whole:
            return _EMPTY
        out = np.empty(whole, dtype=np.float32)
        step = self._frame
        for start in range(0, whole, step):
            reference, complete = self._reference.take(step)
            out[start:start + step] = self.canceller.process(mic[start:start + step], reference)
            self._metrics.echo_reference_underruns += not complete
        self._metrics.echo_frames_cleaned += whole // step
        return out
