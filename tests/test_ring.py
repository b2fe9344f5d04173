"""RingBuffer against a deque model; PlaybackBuffer against a per-sample model and threads."""

import threading
from collections import deque

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtalk.audio import PlaybackBuffer, RingBuffer, pcm16_to_float
from tests.test_pcm import run_docstring_examples

ring_ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 40)),
        st.tuples(st.just("read"), st.integers(0, 40)),
        st.tuples(st.just("peek"), st.integers(0, 40)),
        st.tuples(st.just("clear"), st.just(0)),
    ),
    max_size=60,
)


@given(st.integers(1, 50), ring_ops)
def test_ring_buffer_matches_deque_model(capacity: int, ops: list[tuple[str, int]]) -> None:
    ring = RingBuffer(capacity)
    model: deque[int] = deque()
    counter = 0
    for op, n in ops:
        if op == "write":
            chunk = (np.arange(counter, counter + n) % 65536 - 32768).astype(np.int16)
            accepted = ring.write(chunk if n % 2 else chunk.tobytes())
            assert accepted == min(n, capacity - len(model))
            model.extend(chunk[:accepted].tolist())
            counter += n
        elif op == "read":
            expected = [model.popleft() for _ in range(min(n, len(model)))]
            got = ring.read(n)
            assert got.dtype == np.int16
            assert got.tolist() == expected
        elif op == "peek":
            assert ring.peek(n).tolist() == list(model)[:n]
        else:
            ring.clear()
            model.clear()
        assert len(ring) == len(model)
        assert ring.free == capacity - len(model)
        assert ring.capacity == capacity


def test_ring_buffer_bad_input() -> None:
    with pytest.raises(ValueError, match="capacity must be an integer from 1 to 2147483648 samples, got 0"):
        RingBuffer(0)
    with pytest.raises(ValueError, match="capacity must be an integer from 1 to 2147483648 samples, got -1"):
        RingBuffer(-1)
    ring = RingBuffer(8)
    with pytest.raises(ValueError, match="even number of bytes, got 3"):
        ring.write(b"abc")
    with pytest.raises(ValueError, match="dtype float32"):
        ring.write(np.zeros(2, dtype=np.float32))
    assert len(ring) == 0


class PlaybackModel:
    """The documented behaviour, one sample at a time."""

    def __init__(self, sample_rate: int, capacity: int) -> None:
        self.sample_rate = sample_rate
        self.capacity = capacity
        self.queue: deque[tuple[tuple[str, int], int]] = deque()
        self.played: dict[tuple[str, int], int] = {}
        self.current: tuple[str, int] | None = None
        self.underruns = 0
        self.dry = True

    def push(self, part: tuple[str, int], samples: list[int]) -> int:
        accepted = min(len(samples), self.capacity - len(self.queue))
        if accepted:
            if not self.queue:
                self.current = part
            self.queue.extend((part, s) for s in samples[:accepted])
            self.dry = False
        return accepted

    def pull(self, n: int) -> list[int]:
        out = []
        while self.queue and len(out) < n:
            part, sample = self.queue.popleft()
            self.played[part] = self.played.get(part, 0) + 1
            self.current = part
            out.append(sample)
        if self.queue:
            self.current = self.queue[0][0]
        if len(out) < n:
            if not self.dry:
                self.underruns += 1
            self.dry = True
        return out + [0] * (n - len(out))

    def interrupt(self) -> tuple[str, int, int] | None:
        part, self.current = self.current, None
        self.queue.clear()
        self.dry = True
        if part is None:
            return None
        return (part[0], part[1], self.played.get(part, 0) * 1000 // self.sample_rate)


playback_ops = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.sampled_from([("a", 0), ("a", 1), ("b", 0)]), st.integers(0, 30)),
        st.tuples(st.just("pull"), st.just(("", 0)), st.integers(0, 40)),
        st.tuples(st.just("interrupt"), st.just(("", 0)), st.just(0)),
    ),
    max_size=50,
)


@given(st.sampled_from([1000, 8000]), playback_ops)
def test_playback_buffer_matches_model(sample_rate: int, ops: list[tuple[str, tuple[str, int], int]]) -> None:
    buffer = PlaybackBuffer(sample_rate, capacity_ms=50)
    model = PlaybackModel(sample_rate, sample_rate * 50 // 1000)
    assert buffer.capacity == model.capacity and buffer.sample_rate == sample_rate
    counter = 1
    for op, part, n in ops:
        if op == "push":
            samples = list(range(counter, counter + n))
            counter += n
            assert buffer.push(part[0], part[1], np.array(samples, dtype=np.int16)) == model.push(part, samples)
        elif op == "pull":
            assert buffer.pull(n).tolist() == model.pull(n)
        else:
            assert buffer.interrupt() == model.interrupt()
        assert buffer.queued == len(model.queue)
        assert buffer.free == model.capacity - len(model.queue)
        assert buffer.current == model.current
        assert buffer.underruns == model.underruns
        for item in ("a", "b"):
            assert buffer.played(item) == sum(v for (i, _), v in model.played.items() if i == item)


def test_interrupt_reports_what_was_heard_in_the_buffers_rate() -> None:
    buffer = PlaybackBuffer(24000, capacity_ms=1000)
    assert buffer.interrupt() is None
    buffer.push("item_1", 0, np.ones(4800, dtype=np.int16))  # 200 ms
    buffer.pull(2400)
    buffer.pull(1199)  # 149.96 ms heard in all
    assert buffer.current == ("item_1", 0)
    assert buffer.interrupt() == ("item_1", 0, 149)
    assert buffer.queued == 0 and buffer.current is None
    np.testing.assert_array_equal(buffer.pull(10), np.zeros(10, dtype=np.int16))
    assert buffer.played("item_1") == 3599
    assert buffer.played("unknown") == 0


def test_pull_into_fills_in_place() -> None:
    buffer = PlaybackBuffer(16000, capacity_ms=100)
    buffer.push("a", 0, np.arange(1, 6, dtype=np.int16).tobytes())
    out = np.full(8, 99, dtype=np.int16)
    assert buffer.pull_into(out) == 5
    assert out.tolist() == [1, 2, 3, 4, 5, 0, 0, 0]
    assert buffer.underruns == 1
    readonly = np.zeros(4, dtype=np.int16)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        buffer.pull_into(readonly)


def spread(samples: list[int], channels: int, dtype: type) -> np.ndarray:
    """The numpy oracle: each sample on every channel, float32 scaled by 1/32768."""
    mono = np.array(samples, dtype=np.int16)
    if dtype is np.float32:
        mono = mono.astype(np.float32) / np.float32(32768)
    return np.repeat(mono[:, None], channels, axis=1)


pull_into_ops = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.sampled_from(["a", "b"]), st.integers(0, 600)),
        st.tuples(st.just("pull"), st.just(""), st.integers(0, 700)),
        st.tuples(st.just("interrupt"), st.just(""), st.just(0)),
    ),
    max_size=30,
)


@given(st.sampled_from([np.int16, np.float32]), st.sampled_from([None, 1, 2, 3]), pull_into_ops)
def test_pull_into_fills_every_channel_of_int16_and_float32_blocks(
    dtype: type, channels: int | None, ops: list[tuple[str, str, int]]
) -> None:
    buffer = PlaybackBuffer(8000, capacity_ms=100)
    model = PlaybackModel(8000, 800)
    counter = 0
    for op, item, n in ops:
        if op == "push":
            # Spread over the whole int16 range, both ends included.
            samples = [(counter + k) * 7919 % 65536 - 32768 for k in range(n)]
            counter += n
            assert buffer.push(item, 0, np.array(samples, dtype=np.int16)) == model.push(
                (item, 0), samples)
        elif op == "pull":
            shape = (n,) if channels is None else (n, channels)
            out = np.full(shape, 99, dtype=dtype)
            queued = len(model.queue)
            expected = spread(model.pull(n), channels or 1, dtype)
            assert buffer.pull_into(out) == min(n, queued)
            np.testing.assert_array_equal(out.reshape(n, channels or 1), expected, strict=True)
        else:
            assert buffer.interrupt() == model.interrupt()
        assert buffer.queued == len(model.queue)
        assert buffer.current == model.current
        assert buffer.underruns == model.underruns
        for name in ("a", "b"):
            assert buffer.played(name) == sum(v for (i, _), v in model.played.items() if i == name)


def test_pull_into_float32_matches_pcm16_to_float() -> None:
    samples = np.array([-32768, -1, 0, 1, 12345, 32767], dtype=np.int16)
    buffer = PlaybackBuffer(8000)
    buffer.push("a", 0, samples)
    out = np.zeros((6, 2), dtype=np.float32)
    assert buffer.pull_into(out) == 6
    np.testing.assert_array_equal(out[:, 0], pcm16_to_float(samples))
    assert out[0, 0] == -1.0 and out[5, 1] == np.float32(32767 / 32768)


def test_pull_into_refuses_what_it_cannot_fill_and_keeps_the_audio() -> None:
    buffer = PlaybackBuffer(8000)
    buffer.push("a", 0, np.ones(100, dtype=np.int16))
    stereo = np.zeros((10, 2), dtype=np.float32)
    # A column of a stereo block is a strided view: the advice must not be a copy, which
    # would be filled while the device plays its own (silent) buffer.
    with pytest.raises(ValueError, match=r"pull_into\(outdata\)") as refused:
        buffer.pull_into(stereo[:, 0])
    assert "ascontiguousarray" not in str(refused.value)
    with pytest.raises(ValueError, match="C-contiguous"):
        buffer.pull_into(np.zeros((2, 10), dtype=np.float32).T)
    with pytest.raises(ValueError, match="float64"):
        buffer.pull_into(np.zeros(10))
    with pytest.raises(ValueError, match="3-D"):
        buffer.pull_into(np.zeros((2, 2, 2), dtype=np.int16))
    with pytest.raises(ValueError, match="no channels"):
        buffer.pull_into(np.zeros((10, 0), dtype=np.int16))
    with pytest.raises(ValueError, match="got list"):
        buffer.pull_into([0] * 10)
    assert buffer.queued == 100 and buffer.played("a") == 0 and buffer.underruns == 0
    assert buffer.pull_into(stereo) == 10
    np.testing.assert_array_equal(stereo, np.full((10, 2), 1 / 32768, dtype=np.float32))


def test_playback_buffer_bad_arguments() -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        PlaybackBuffer(0)
    with pytest.raises(ValueError, match="holds no sample"):
        PlaybackBuffer(100, capacity_ms=1)
    buffer = PlaybackBuffer(8000, capacity_ms=10)
    with pytest.raises(ValueError, match="even number of bytes, got 1"):
        buffer.push("a", 0, b"x")
    assert buffer.queued == 0 and buffer.current is None


def test_threaded_pull_while_pushing_loses_nothing() -> None:
    """An audio-callback thread pulls 10 ms blocks while this thread pushes 20 ms deltas."""
    buffer = PlaybackBuffer(24000, capacity_ms=200)
    total = 48 * 480
    source = (np.arange(total) % 32000 + 1).astype(np.int16)  # never 0: zeros mark underruns
    pulled: list[np.ndarray] = []
    done = threading.Event()

    def callback_thread() -> None:
        while not (done.is_set() and buffer.queued == 0):
            pulled.append(buffer.pull(240))

    thread = threading.Thread(target=callback_thread)
    thread.start()
    offset = 0
    while offset < total:
        offset += buffer.push("item", 0, source[offset : offset + 480])
    done.set()
    thread.join(timeout=30)
    assert not thread.is_alive()
    heard = np.concatenate(pulled)
    np.testing.assert_array_equal(heard[heard != 0], source)
    assert buffer.played("item") == total
    assert buffer.interrupt() == ("item", 0, total * 1000 // 24000)


def test_docstring_examples() -> None:
    run_docstring_examples(RingBuffer, PlaybackBuffer)


# ---- pause and resume (barge-in, issue 22) ----


class PausableModel(PlaybackModel):
    """The model with a pause: a paused pull is silence that neither plays nor runs dry."""

    paused = False

    def pull(self, n: int) -> list[int]:
        return [0] * n if self.paused else super().pull(n)


pausable_ops = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.sampled_from([("a", 0), ("b", 0)]), st.integers(0, 30)),
        st.tuples(st.just("pull"), st.just(("", 0)), st.integers(0, 40)),
        st.tuples(st.just("interrupt"), st.just(("", 0)), st.just(0)),
        st.tuples(st.just("pause"), st.just(("", 0)), st.just(0)),
        st.tuples(st.just("resume"), st.just(("", 0)), st.just(0)),
    ),
    max_size=50,
)


@given(st.sampled_from([1000, 8000]), st.sampled_from([None, 2]), pausable_ops)
def test_pause_and_resume_match_the_model(
    sample_rate: int, channels: int | None, ops: list[tuple[str, tuple[str, int], int]]
) -> None:
    buffer = PlaybackBuffer(sample_rate, capacity_ms=50)
    model = PausableModel(sample_rate, sample_rate * 50 // 1000)
    counter = 1
    for op, part, n in ops:
        if op == "push":
            samples = list(range(counter, counter + n))
            counter += n
            assert buffer.push(part[0], part[1], np.array(samples, dtype=np.int16)) == model.push(part, samples)
        elif op == "pull":
            # Both pull paths: the copying one and the device's in-place one.
            if channels is None:
                assert buffer.pull(n).tolist() == model.pull(n)
            else:
                out = np.full((n, channels), 99, dtype=np.int16)
                queued, paused = len(model.queue), model.paused
                expected = spread(model.pull(n), channels, np.int16)
                assert buffer.pull_into(out) == (0 if paused else min(n, queued))
                np.testing.assert_array_equal(out, expected)
        elif op == "interrupt":
            assert buffer.interrupt() == model.interrupt()
        elif op == "pause":
            buffer.pause()
            model.paused = True
        else:
            buffer.resume()
            model.paused = False
        assert buffer.paused == model.paused
        assert buffer.queued == len(model.queue)
        assert buffer.current == model.current
        assert buffer.underruns == model.underruns
        for item in ("a", "b"):
            assert buffer.played(item) == sum(v for (i, _), v in model.played.items() if i == item)


def test_pause_holds_the_position_and_resume_loses_nothing() -> None:
    """A 120 ms cough: the device keeps pulling silence, then the reply plays on intact."""
    buffer = PlaybackBuffer(24000, capacity_ms=1000)
    reply = (np.arange(24000 // 2) % 30000 + 1).astype(np.int16)  # 500 ms, never 0
    buffer.push("item_1", 0, reply)
    heard = [buffer.pull(2400)]  # 100 ms played
    buffer.pause()
    assert buffer.paused
    silence = [buffer.pull(480) for _ in range(6)]  # 120 ms paused
    assert all(not block.any() for block in silence)
    assert buffer.played("item_1") == 2400 and buffer.underruns == 0
    buffer.resume()
    heard.append(buffer.pull(len(reply) - 2400))
    np.testing.assert_array_equal(np.concatenate(heard), reply)
    assert buffer.played("item_1") == len(reply)


def test_interrupt_while_paused_reports_the_pause_position_and_keeps_the_pause() -> None:
    buffer = PlaybackBuffer(8000, capacity_ms=1000)
    buffer.push("item_1", 0, np.ones(4000, dtype=np.int16))
    buffer.pull(1000)  # 125 ms
    buffer.pause()
    buffer.pull(2000)
    assert buffer.interrupt() == ("item_1", 0, 125)
    # The pause outlives the flush: the owner resumes when it has decided.
    buffer.push("item_2", 0, np.ones(80, dtype=np.int16))
    assert buffer.paused and not buffer.pull(80).any()
    buffer.resume()
    assert buffer.pull(80).tolist() == [1] * 80
