"""A stand-in for the `sounddevice` package, for running `realtalk talk --mic --speaker` on a
machine without sound cards. The microphone plays FAKE_MIC (an int16 .npy at the stream's
rate) and then silence; the speaker records what it was given into FAKE_SPEAKER (.npy).
Callbacks run on their own threads at real-time pace, as PortAudio's do."""

from __future__ import annotations

import os
import threading
import time

import numpy as np


class _Stream:
    def __init__(self, *, samplerate, channels, dtype, callback, blocksize=0, **_):
        self.rate = int(samplerate)
        self.channels = channels
        self.dtype = np.dtype(dtype)
        self.callback = callback
        self.blocksize = blocksize or self.rate // 100
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join()

    def close(self):
        pass

    def _run(self):
        start = time.monotonic()
        index = 0
        while not self._stop.is_set():
            self._block(index)
            index += 1
            delay = start + index * self.blocksize / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)


class InputStream(_Stream):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        speech = np.load(os.environ["FAKE_MIC"]).astype(np.float32) / 32768
        self.signal = speech

    def _block(self, index):
        block = np.zeros((self.blocksize, self.channels), dtype=self.dtype)
        piece = self.signal[index * self.blocksize : (index + 1) * self.blocksize]
        block[: piece.shape[0], 0] = piece
        self.callback(block, self.blocksize, None, None)


class OutputStream(_Stream):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.recorded = []

    def _block(self, index):
        block = np.zeros((self.blocksize, self.channels), dtype=self.dtype)
        self.callback(block, self.blocksize, None, None)
        self.recorded.append(block[:, 0].copy())

    def close(self):
        np.save(os.environ["FAKE_SPEAKER"], np.concatenate(self.recorded or [np.zeros(0)]))
