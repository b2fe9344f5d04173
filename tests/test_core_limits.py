"""The Rust core never aborts the interpreter (issue 16, finding 6).

Every size, count, rate or duration a caller passes is checked: a value outside its documented
range is a `ValueError` naming the argument and the range, and an allocation the machine cannot
give is a `MemoryError`. Before this, `RingBuffer(2**40)` and `PlaybackBuffer(10**9)` killed the
process with SIGABRT and `RingBuffer(2**62)` raised pyo3's `PanicException`.

Anything that could abort runs in a child interpreter, so a regression shows as a failed test
(with the child's signal and stderr) rather than a dead pytest. The property checks, too, run
their whole Hypothesis search in a child.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtalk.audio import (
    Downlink,
    PlaybackBuffer,
    Resampler,
    RingBuffer,
    Uplink,
    Vad,
    b64encode,
    resample,
)

MAX_SAMPLES = 2**31  # the most samples a ring or playback buffer holds, or a pull asks for
U32_MAX = 2**32 - 1
MIN_RATE, MAX_RATE = 8000, 192000  # the resampler's (and so the frame paths') rates
MAX_CHANNELS = 64


def run_child(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a fresh interpreter that imports this realtalk (same sys.path)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def died(child: subprocess.CompletedProcess[str]) -> str:
    if child.returncode < 0:
        how = f"killed by {signal.Signals(-child.returncode).name}"
    else:
        how = f"exit status {child.returncode}"
    return f"child {how}\nstdout: {child.stdout[-2000:]}\nstderr: {child.stderr[-2000:]}"


# One child runs a list of expressions, printing a line as each starts and one with its
# outcome; should it die, the cases from the one it died in onwards fail with its signal.
OUTCOMES = """
import sys
import numpy as np
from realtalk.audio import *
{prelude}
for index, expression in enumerate({expressions!r}):
    print(f"start {{index}}", flush=True)
    try:
        result = eval(expression)
    except BaseException as error:
        outcome = type(error).__name__ + ": " + str(error)
    else:
        outcome = "returned " + repr(result)[:200]
    result = None
    print(f"outcome {{index}} " + outcome.replace("\\n", " "), flush=True)
"""


def outcomes(expressions: list[str], prelude: str = "") -> list[str]:
    """Each expression's outcome line, or why the child died before giving it."""
    child = run_child(OUTCOMES.format(prelude=textwrap.dedent(prelude), expressions=expressions))
    found = {}
    for line in child.stdout.splitlines():
        word, index, *rest = line.split(" ", 2)
        if word == "outcome":
            found[int(index)] = rest[0] if rest else ""
    return [found.get(index, died(child)) for index in range(len(expressions))]


# The cases the issue names, and their siblings; each expression is run in a child.
ABSURD = [
    ("RingBuffer(2**40)", "ValueError: capacity must be an integer from 1 to 2147483648 samples, got 1099511627776"),
    ("RingBuffer(2**62)", "ValueError: capacity must be an integer from 1 to 2147483648 samples"),
    ("RingBuffer(2**64)", "ValueError: capacity must be an integer from 1 to 2147483648 samples"),
    ("RingBuffer(2**200)", "ValueError: capacity must be an integer from 1 to 2147483648 samples, got an integer of 2**63 or more"),
    ("RingBuffer(-1)", "ValueError: capacity must be an integer from 1 to 2147483648 samples, got -1"),
    ("RingBuffer(-2**200)", "ValueError: capacity must be an integer from 1 to 2147483648 samples, got an integer below -2**63"),
    ("PlaybackBuffer(10**9)", "ValueError: capacity_ms=60000 at 1000000000 Hz is 60000000000 samples, more than the 2147483648"),
    ("PlaybackBuffer(2**32 - 1, capacity_ms=2**32 - 1)", "ValueError: capacity_ms=4294967295 at 4294967295 Hz"),
    ("PlaybackBuffer(2**32)", "ValueError: sample_rate must be an integer from 1 to 4294967295 Hz, got 4294967296"),
    ("PlaybackBuffer(24000, capacity_ms=-1)", "ValueError: capacity_ms must be an integer from 0 to 4294967295 ms, got -1"),
    ("PlaybackBuffer(24000).pull(2**40)", "ValueError: n must be an integer from 0 to 2147483648 samples, got 1099511627776"),
    ("PlaybackBuffer(24000).pull(2**62)", "ValueError: n must be an integer from 0 to 2147483648 samples"),
    ("PlaybackBuffer(24000).pull(-1)", "ValueError: n must be an integer from 0 to 2147483648 samples, got -1"),
    ("RingBuffer(8).read(-1)", "ValueError: n must be an integer from 0 to"),
    ("RingBuffer(8).peek(-2**70)", "ValueError: n must be an integer from 0 to"),
    ("Resampler(24000, 16000, channels=2**40)", "ValueError: channels must be an integer from 1 to 64, got 1099511627776"),
    ("Resampler(2**64, 16000)", "ValueError: in_rate must be an integer from 8000 to 192000 Hz"),
    ("resample(np.zeros(4, np.float32), 24000, -2**63 - 1)", "ValueError: out_rate must be an integer from 8000 to 192000 Hz"),
    ("Vad(24000, prefix_padding_ms=2**64)", "ValueError: prefix_padding_ms must be an integer from 0 to 4294967295 ms"),
    ("Vad(-1)", "ValueError: sample_rate must be an integer from 0 to 4294967295 Hz, got -1"),
    ("Uplink(24000, channels=-2**70)", "ValueError: channels must be an integer from 1 to 64"),
    ("Downlink(2**70)", "ValueError: out_rate must be an integer from 8000 to 192000 Hz"),
    ("b64encode(np.array([object(), object()], dtype=object))", "ValueError: expected a bytes-like object or a 1-D contiguous numpy array, got an array of Python objects (dtype object)"),
    ("b64encode(np.zeros(2, dtype=[('a', 'O'), ('b', 'i4')]))", "ValueError: expected a bytes-like object or a 1-D contiguous numpy array, got an array of Python objects"),
]


@pytest.fixture(scope="module")
def absurd_outcomes() -> list[str]:
    return outcomes([expression for expression, _ in ABSURD])


@pytest.mark.parametrize("case", range(len(ABSURD)), ids=[case[0] for case in ABSURD])
def test_absurd_sizes_are_refused_with_a_clear_error(absurd_outcomes: list[str], case: int) -> None:
    assert absurd_outcomes[case].startswith(ABSURD[case][1]), absurd_outcomes[case]


# An allocation in range that the machine cannot give: the child caps its own address space
# just above what it uses, so the outcome does not depend on this machine's memory.
CAP_ADDRESS_SPACE = """
import resource
with open("/proc/self/statm") as statm:
    pages = int(statm.read().split()[0])
used = pages * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (used + 96 * 2**20, resource.RLIM_INFINITY))
"""

HEAVY_INPUT = "np.zeros(2**22, np.int16)"  # 8 MiB in, 24 times that out at 8 -> 192 kHz
# A G.711 delta at 8 kHz decoded to float32 at 192 kHz: 96 bytes out per byte of audio.
HEAVY_DELTA = (
    "('{\"type\":\"response.output_audio.delta\",\"response_id\":\"r\",\"item_id\":\"i\",'"
    "'\"output_index\":0,\"content_index\":0,\"delta\":\"' + b64encode(bytes(2**21)) + '\"}')"
)

ALLOCATIONS = [
    ("RingBuffer(2**30)", "MemoryError: cannot allocate 2147483648 bytes for the ring buffer's samples"),
    ("RingBuffer(2**30 // 64)", "returned RingBuffer(capacity=16777216"),  # control: the cap is not too tight
    ("PlaybackBuffer(48000, capacity_ms=40_000_000)", "MemoryError: cannot allocate 3840000000 bytes"),
    ("PlaybackBuffer(24000).pull(2**31)", "MemoryError: "),
    ("resample(heavy_input, 8000, 192000)", "MemoryError: cannot allocate "),
    ("resampler.process(heavy_input)", "MemoryError: cannot allocate "),
    # The stream survives the refusal: the next chunk is resampled as usual.
    ("resampler.process(np.ones(80, np.int16)).size > 1000", "returned True"),
    ("Uplink(8000, format='pcm16').encode(heavy_input)", "MemoryError: cannot allocate "),
    ("Downlink(192000, format='g711_ulaw').decode(heavy_delta)", "MemoryError: "),
    ("Downlink(192000, format='g711_ulaw', dtype=np.int16).decode(heavy_delta)", "MemoryError: "),
]


@pytest.fixture(scope="module")
def allocation_outcomes() -> list[str]:
    prelude = f"""
        heavy_input = {HEAVY_INPUT}
        heavy_delta = {HEAVY_DELTA}
        resampler = Resampler(8000, 192000)
    """
    prelude = textwrap.dedent(prelude) + CAP_ADDRESS_SPACE
    return outcomes([expression for expression, _ in ALLOCATIONS], prelude)


@pytest.mark.parametrize("case", range(len(ALLOCATIONS)), ids=[case[0] for case in ALLOCATIONS])
def test_refused_allocations_are_memory_errors(allocation_outcomes: list[str], case: int) -> None:
    assert allocation_outcomes[case].startswith(ALLOCATIONS[case][1]), allocation_outcomes[case]


def test_in_range_sizes_still_work() -> None:
    ring = RingBuffer(MAX_SAMPLES)  # 4 GiB asked for, committed only as written
    assert ring.capacity == MAX_SAMPLES and ring.free == MAX_SAMPLES
    assert ring.write(np.arange(5, dtype=np.int16)) == 5
    assert ring.read(2**62).tolist() == [0, 1, 2, 3, 4]
    assert ring.peek(2**200).tolist() == []
    del ring
    speaker = PlaybackBuffer(24000, capacity_ms=1000)
    assert speaker.pull(0).tolist() == []
    assert speaker.pull(np.int64(3)).tolist() == [0, 0, 0]  # numpy integers are integers
    with pytest.raises(TypeError):
        speaker.pull(3.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        RingBuffer("8")  # type: ignore[arg-type]
    assert b64encode(np.zeros(3, dtype=[("a", "<i2"), ("b", "u1")])) == "AAAAAAAAAAAA"


# ---- property checks: every constructor and method taking a size or a rate ----
#
# Each `check_*` is a Hypothesis test over integers mixing huge, negative and boundary values;
# the oracle is the documented range. They run in a child (see `test_property_check`).

BOUNDARIES = [0, 1, -1, 2**31, 2**31 + 1, 2**32 - 1, 2**32, 2**62, 2**63 - 1, 2**63, 2**64, -(2**63), 2**127, 2**128, -(2**128)]
huge_or_negative = st.one_of(
    st.sampled_from(BOUNDARIES),
    st.integers(max_value=-1),
    st.integers(min_value=2**31 + 1),
    st.integers(min_value=-(2**200), max_value=2**200),
)


def refuses(call: Callable[[], object], name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be "):
        call()


@given(huge_or_negative)
def check_ring_buffer(capacity: int) -> None:
    if 1 <= capacity <= MAX_SAMPLES:
        assert RingBuffer(capacity).capacity == capacity
    else:
        refuses(lambda: RingBuffer(capacity), "capacity")


@given(huge_or_negative)
def check_ring_reads(n: int) -> None:
    ring = RingBuffer(4)
    ring.write(np.array([1, 2, 3], dtype=np.int16))
    if n < 0:
        refuses(lambda: ring.peek(n), "n")
        refuses(lambda: ring.read(n), "n")
    else:
        assert ring.peek(n).tolist() == [1, 2, 3][:n]
        assert ring.read(n).tolist() == [1, 2, 3][:n]


@given(st.one_of(huge_or_negative, st.sampled_from([8000, 24000])), st.one_of(huge_or_negative, st.integers(0, 2000)))
def check_playback_buffer(sample_rate: int, capacity_ms: int) -> None:
    if not 1 <= sample_rate <= U32_MAX:
        refuses(lambda: PlaybackBuffer(sample_rate, capacity_ms=capacity_ms), "sample_rate")
    elif not 0 <= capacity_ms <= U32_MAX:
        refuses(lambda: PlaybackBuffer(sample_rate, capacity_ms=capacity_ms), "capacity_ms")
    else:
        capacity = sample_rate * capacity_ms // 1000
        if capacity == 0:
            with pytest.raises(ValueError, match="holds no sample"):
                PlaybackBuffer(sample_rate, capacity_ms=capacity_ms)
        elif capacity > MAX_SAMPLES:
            with pytest.raises(ValueError, match=f"is {capacity} samples, more than the {MAX_SAMPLES}"):
                PlaybackBuffer(sample_rate, capacity_ms=capacity_ms)
        else:
            assert PlaybackBuffer(sample_rate, capacity_ms=capacity_ms).capacity == capacity


@given(huge_or_negative)
def check_playback_pull(n: int) -> None:
    speaker = PlaybackBuffer(8000, capacity_ms=100)
    speaker.push("a", 0, np.array([5, 6], dtype=np.int16))
    if 0 <= n <= MAX_SAMPLES:
        if n > 2**16:
            return  # accepted; pulling it would write gigabytes of zeros (test_in_range_sizes)
        pulled = speaker.pull(n)
        assert len(pulled) == n and pulled[:2].tolist() == [5, 6][:n]
    else:
        refuses(lambda: speaker.pull(n), "n")
        assert speaker.queued == 2, "a refused pull takes nothing"


rates = st.one_of(huge_or_negative, st.sampled_from([MIN_RATE, 16000, 24000, 48000, MAX_RATE]))
channel_counts = st.one_of(huge_or_negative, st.integers(1, MAX_CHANNELS))


@given(rates, rates, channel_counts)
def check_resampler(in_rate: int, out_rate: int, channels: int) -> None:
    def make() -> Resampler:
        return Resampler(in_rate, out_rate, channels=channels, quality="low")

    if not MIN_RATE <= in_rate <= MAX_RATE:
        refuses(make, "in_rate")
    elif not MIN_RATE <= out_rate <= MAX_RATE:
        refuses(make, "out_rate")
    elif not 1 <= channels <= MAX_CHANNELS:
        refuses(make, "channels")
    else:
        resampler = make()
        assert (resampler.in_rate, resampler.out_rate, resampler.channels) == (in_rate, out_rate, channels)


@given(rates, rates)
def check_resample(in_rate: int, out_rate: int) -> None:
    samples = np.zeros(100, np.float32)
    if not MIN_RATE <= in_rate <= MAX_RATE:
        refuses(lambda: resample(samples, in_rate, out_rate, quality="low"), "in_rate")
    elif not MIN_RATE <= out_rate <= MAX_RATE:
        refuses(lambda: resample(samples, in_rate, out_rate, quality="low"), "out_rate")
    else:
        assert len(resample(samples, in_rate, out_rate, quality="low")) == round(100 * out_rate / in_rate)


@given(
    st.one_of(huge_or_negative, st.sampled_from([8000, 16000, 24000, 48000])),
    st.one_of(huge_or_negative, st.integers(0, 5000)),
    st.one_of(huge_or_negative, st.integers(0, 5000)),
    st.one_of(huge_or_negative, st.sampled_from([10, 20, 30])),
)
def check_vad(sample_rate: int, prefix_padding_ms: int, silence_duration_ms: int, frame_ms: int) -> None:
    def make() -> Vad:
        return Vad(sample_rate, prefix_padding_ms=prefix_padding_ms, silence_duration_ms=silence_duration_ms, frame_ms=frame_ms)

    for name, value in [("sample_rate", sample_rate), ("prefix_padding_ms", prefix_padding_ms), ("silence_duration_ms", silence_duration_ms), ("frame_ms", frame_ms)]:
        if not 0 <= value <= U32_MAX:
            refuses(make, name)
            return
    if sample_rate not in (8000, 16000, 24000, 48000):
        refuses(make, "sample_rate")
    elif frame_ms not in (10, 20, 30):
        refuses(make, "frame_ms")
    else:
        vad = make()
        assert (vad.prefix_padding_ms, vad.silence_duration_ms) == (prefix_padding_ms, silence_duration_ms)
        # Huge paddings and silences are plain numbers to the detector: it runs on.
        # 300 ms: whole frames at every frame length (processed_ms counts whole frames only).
        assert vad.process(np.zeros(sample_rate * 3 // 10, np.int16)) == []
        assert vad.processed_ms == 300


@given(rates, channel_counts)
def check_frame_paths(rate: int, channels: int) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        refuses(lambda: Uplink(rate, channels=channels, quality="low"), "in_rate")
        refuses(lambda: Downlink(rate, quality="low"), "out_rate")
    elif not 1 <= channels <= MAX_CHANNELS:
        refuses(lambda: Uplink(rate, channels=channels, quality="low"), "channels")
    else:
        assert Uplink(rate, channels=channels, quality="low").channels == channels
        assert Downlink(rate, quality="low").out_rate == rate


PROPERTY_CHECKS = [name for name in dir() if name.startswith("check_")]

PROPERTY_CHILD = """
import importlib.util, sys
import tests.conftest  # the Hypothesis profile of this run (REALTALK_HYPOTHESIS)
spec = importlib.util.spec_from_file_location("core_limits", {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.{name}()
print("passed")
"""


@pytest.mark.parametrize("name", PROPERTY_CHECKS)
def test_property_check(name: str) -> None:
    child = run_child(PROPERTY_CHILD.format(path=__file__, name=name), timeout=600)
    assert child.returncode == 0 and child.stdout.strip().endswith("passed"), died(child)
