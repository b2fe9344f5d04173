"""The session recorder behind ``client.record(path)`` and ``RealtimeClient(record=path)``.

It writes two files as the session runs:

- ``NAME.wav``: 16-bit stereo at the client's ``playback_rate``, the user's input on the left
  channel and the agent's output on the right, on one clock that starts when recording starts.
  The left channel is every ``input_audio_buffer.append`` as it went on the wire, placed at the
  time it was sent (resampled from the session's input format when the rates differ). The
  right channel is what the audio device pulled from ``client.playback``, read from the
  buffer's tap (``PlaybackBuffer.enable_tap``, the one the echo canceller reads too) at each
  flush and placed so that it ends when it was read: the silence the pulls filled in included,
  and after a barge-in the cut, because a cut reply is no longer pulled; nothing where no
  device pulled. Audio is placed where it arrives, or right after the previous
  audio of its channel when it arrives less than ``TOLERANCE_S`` after that audio's end (so a
  stream sent in frames, or faster than real time, stays contiguous).
- ``NAME.jsonl``: every event both ways, one JSON object a line: ``t`` (seconds on the WAV's
  clock), ``time`` (Unix time), ``source`` (``"client"`` or ``"server"``) and ``event`` as on
  the wire, except that audio payloads (``audio`` of an append, ``delta`` of an audio delta)
  are replaced by ``"<N bytes>"``: the audio is in the WAV.

Crash safety: a worker thread writes every ``FLUSH_INTERVAL_S``; audio up to ``HOLD_S`` ago is
final and goes into the file, then the WAV header is rewritten with the sizes written so far
and the file is flushed to the OS. A process killed at any moment (SIGKILL) leaves a WAV that
``wave`` and other readers open, holding everything up to the last flush, and a log whose
every line but perhaps a torn last one parses. (Not a guarantee against power loss: the
recorder does not fsync.)

Threads: the event loop only appends the wire message to a queue (``_log_wire``'s hook), and
the device thread does nothing for the recorder (its pulls feed the Rust tap). Decoding,
resampling, placing, JSON and file I/O run in the worker thread; closing joins it off the
loop (``anyio.to_thread``).
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import anyio
import msgspec
import numpy as np
import numpy.typing as npt

from realtalk import audio as _audio
from realtalk._content import WIRE_RATES, decode_wire_audio

if TYPE_CHECKING:
    from realtalk.client import RealtimeClient

__all__ = ["FLUSH_INTERVAL_S", "HOLD_S", "TOLERANCE_S", "SessionRecorder", "start_recording"]

FLUSH_INTERVAL_S = 0.2
# Audio older than this is final: nothing that arrives later can land before it.
HOLD_S = 0.5
TOLERANCE_S = 0.1
# How much played audio the playback tap keeps for the worker, which reads it every
# FLUSH_INTERVAL_S: a worker stalled longer than this loses the excess (recorded as silence).
TAP_MS = 10_000
_AUDIO_PAYLOADS = {"input_audio_buffer.append": "audio", "response.output_audio.delta": "delta",
                   "response.audio.delta": "delta"}
_HEADER_BYTES = 44
_MAX_DATA_BYTES = 0xFFFFFFFF - 36


class _Track:
    """One channel's audio not yet written: samples from absolute frame ``base`` on."""

    def __init__(self, tolerance: int) -> None:
        self.tolerance = tolerance
        self.pending = np.zeros(0, dtype=np.int16)
        self.end: int | None = None  # where the channel's last audio ended (absolute frame)

    def place(self, at: int, samples: npt.NDArray[np.int16], base: int) -> None:
        start = at if self.end is None or at > self.end + self.tolerance else self.end
        start = max(start, base)  # never before what is already in the file
        stop = start + len(samples)
        if stop - base > len(self.pending):
            grown = np.zeros(max(stop - base, 2 * len(self.pending)), dtype=np.int16)
            grown[: len(self.pending)] = self.pending
            self.pending = grown
        self.pending[start - base : stop - base] = samples
        self.end = stop

    def take(self, frames: int) -> npt.NDArray[np.int16]:
        out = np.zeros(frames, dtype=np.int16)
        have = min(frames, len(self.pending))
        out[:have] = self.pending[:have]
        self.pending = self.pending[frames:] if frames < len(self.pending) else \
            np.zeros(0, dtype=np.int16)
        return out


class SessionRecorder:
    """A running recording (see the module docstring): ``wav_path``, ``log_path``,
    ``sample_rate``, ``started_at`` (the ``time.monotonic()`` of the WAV's frame 0) and
    ``error`` (what stopped the writing, an OSError such as a full disk, else None: the
    session goes on, unrecorded). Made by
    ``client.record(path)``; the client closes it when the session ends, or ``await
    recorder.aclose()`` stops it earlier."""

    def __init__(self, wav_path: Path, log_path: Path, playback: _audio.PlaybackBuffer,
                 input_format: Callable[[], str]) -> None:
        self.wav_path = wav_path
        self.log_path = log_path
        self.sample_rate = sample_rate = playback.sample_rate
        self.error: Exception | None = None
        self._input_format = input_format
        self._queue: deque[tuple[Any, ...]] = deque()
        self._input = _Track(round(TOLERANCE_S * sample_rate))
        self._output = _Track(round(TOLERANCE_S * sample_rate))
        self._resamplers: dict[int, Any] = {}
        self._base = 0  # frames written to the WAV
        self._encoder = msgspec.json.Encoder()
        self._closed = False
        self._wav: BinaryIO = open(wav_path, "wb")  # noqa: SIM115 (closed by the worker)
        try:
            self._log: BinaryIO = open(log_path, "wb")  # noqa: SIM115
        except OSError:
            self._wav.close()
            raise
        self._wav.write(self._header(0))
        self._wav.flush()
        playback.enable_tap(TAP_MS)
        self._playback = playback
        self._played_to = playback.pulled_samples  # the speaker clock read up to
        self.started_at = time.monotonic()
        self._started_unix = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="realtalk-recorder", daemon=True)
        self._thread.start()

    # -- the producer (the loop): one append, nothing else --

    def wire(self, source: str, message: bytes | str) -> None:
        """A message as written or read (the event loop, from ``_log_wire``)."""
        if not self._closed:
            fmt = self._input_format() if source == "client" else None
            self._queue.append((time.monotonic(), source, message, fmt))

    # -- closing --

    @property
    def closed(self) -> bool:
        """True once the recording was stopped (or stopped itself on an ``error``)."""
        return self._closed

    def close(self) -> None:
        """Stop: the worker writes everything still queued and closes the files (blocks
        until it has; ``aclose`` runs this off the event loop)."""
        self._closed = True
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    async def aclose(self) -> None:
        """Stop, writing everything still queued, without blocking the event loop."""
        self._closed = True
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.close)

    # -- the worker thread --

    def _run(self) -> None:
        try:
            while not self._stop.wait(FLUSH_INTERVAL_S):
                self._flush(final=False)
            self._flush(final=True)
        except Exception as exc:  # disk full, file gone: stop writing, keep the session going
            self.error = exc
            self._closed = True
            self._queue.clear()
        finally:
            for file in (self._wav, self._log):
                with contextlib.suppress(OSError):
                    file.close()

    def _frame_at(self, moment: float) -> int:
        return max(0, round((moment - self.started_at) * self.sample_rate))

    def _flush(self, *, final: bool) -> None:
        lines: list[bytes] = []
        while self._queue:
            moment, source, payload, extra = self._queue.popleft()
            lines.append(self._log_line(moment, source, payload, extra))
        self._take_played()
        if lines:
            self._log.write(b"".join(lines))
            self._log.flush()
        if final:
            # To the end of the session on its clock, and of any audio placed past it.
            target = max(self._input.end or 0, self._output.end or 0, self._base,
                         self._frame_at(time.monotonic()))
        else:
            target = self._frame_at(time.monotonic() - HOLD_S)
        if target > self._base:
            self._write_frames(target - self._base)

    def _take_played(self) -> None:
        """What the device pulled since the last flush, from the playback tap, placed to end
        now (it was pulled at most a device block ago)."""
        moment = time.monotonic()
        clock = self._playback.pulled_samples
        if clock <= self._played_to:
            return
        samples, _, _ = self._playback.read_tap(self._played_to, clock - self._played_to)
        self._played_to = clock
        self._output.place(self._frame_at(moment) - len(samples), samples, self._base)

    def _log_line(self, moment: float, source: str, message: bytes | str,
                  input_format: str | None) -> bytes:
        try:
            event = msgspec.json.decode(message)
        except (msgspec.DecodeError, RecursionError):
            event = {"type": None, "raw": message if isinstance(message, str)
                     else message.decode("utf-8", "replace")}
        if isinstance(event, dict):
            field = _AUDIO_PAYLOADS.get(event.get("type"))  # type: ignore[arg-type]
            audio = event.get(field) if field else None
            if isinstance(audio, str):
                if source == "client" and field == "audio" and input_format is not None:
                    self._record_input(moment, audio, input_format)
                event[field] = f"<{len(audio) * 3 // 4} bytes>"
        record = {"t": round(moment - self.started_at, 6),
                  "time": round(self._started_unix + moment - self.started_at, 6),
                  "source": source, "event": event}
        try:
            return self._encoder.encode(record) + b"\n"
        except (TypeError, RecursionError, msgspec.EncodeError):
            return self._encoder.encode({**record, "event": repr(event)[:1000]}) + b"\n"

    def _record_input(self, moment: float, audio: str, input_format: str) -> None:
        try:
            raw = _audio.b64decode(audio)
        except ValueError:
            return  # the server refuses it too; the log has the event
        rate = WIRE_RATES.get(input_format, 24000)
        if input_format == "pcm16":
            raw = raw[: len(raw) // 2 * 2]  # whole samples only
        samples = decode_wire_audio(raw, input_format)
        if rate != self.sample_rate:
            resampler = self._resamplers.get(rate)
            if resampler is None:
                resampler = self._resamplers[rate] = _audio.Resampler(rate, self.sample_rate)
            samples = resampler.process(samples)
        self._input.place(self._frame_at(moment), samples, self._base)

    def _write_frames(self, frames: int) -> None:
        room = (_MAX_DATA_BYTES - self._base * 4) // 4
        if frames > room:
            raise OSError("the recording reached the WAV size limit (4 GiB)")
        stereo = np.empty((frames, 2), dtype="<i2")
        stereo[:, 0] = self._input.take(frames)
        stereo[:, 1] = self._output.take(frames)
        # The data first, then the sizes that cover it: a reader never sees a size past
        # the data, whenever the process dies.
        self._wav.seek(_HEADER_BYTES + self._base * 4)
        self._wav.write(stereo.tobytes())
        self._base += frames
        self._wav.seek(0)
        self._wav.write(self._header(self._base * 4))
        self._wav.flush()

    def _header(self, data_bytes: int) -> bytes:
        rate, channels, width = self.sample_rate, 2, 2
        return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
                + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate,
                                        rate * channels * width, channels * width, 8 * width)
                + b"data" + struct.pack("<I", data_bytes))


def recording_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The WAV and the log for ``path``: a directory gets ``session-<UTC time>.wav`` and
    ``.jsonl`` inside it; a file name is the WAV, and the log takes its name with ``.jsonl``."""
    target = Path(path)
    if target.is_dir():
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        target = target / f"session-{stamp}.wav"
    elif target.suffix.lower() != ".wav":
        raise ValueError(f"record to a .wav file or an existing directory, not {str(path)!r}")
    if not target.parent.is_dir():
        raise ValueError(f"cannot record to {str(target)!r}: no directory {str(target.parent)!r}")
    return target, target.with_suffix(".jsonl")


def start_recording(client: RealtimeClient, path: str | os.PathLike[str]) -> SessionRecorder:
    """Start recording ``client``'s session to ``path`` (see :func:`recording_paths`),
    reading its playback buffer's tap; what ``client.record`` does."""
    wav_path, log_path = recording_paths(path)
    return SessionRecorder(wav_path, log_path, client.playback, lambda: client._input_format)


async def stop_recording(client: RealtimeClient) -> None:
    """Close ``client``'s recording, if any (what the client does when the session ends)."""
    if client.recording is not None:
        await client.recording.aclose()
