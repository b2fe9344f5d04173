"""float <-> PCM16 conversion against numpy as the oracle."""

import doctest

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import realtalk.audio
from realtalk import _audio
from realtalk.audio import float_to_pcm16, pcm16_to_float


def numpy_float_to_pcm16(x: np.ndarray) -> np.ndarray:
    """The documented rule, in the input's precision: NaN -> 0, clip, * 32767, rint."""
    cleaned = np.where(np.isnan(x), x.dtype.type(0), x)
    scaled = np.clip(cleaned, x.dtype.type(-1), x.dtype.type(1)) * x.dtype.type(32767)
    assert scaled.dtype == x.dtype
    return np.rint(scaled).astype(np.int16)


float_arrays = st.sampled_from([np.float32, np.float64]).flatmap(
    lambda dtype: hnp.arrays(
        dtype,
        st.integers(0, 300),
        elements=st.one_of(
            st.floats(-1.5, 1.5, width=32 if dtype == np.float32 else 64),
            st.floats(width=32 if dtype == np.float32 else 64),  # NaN, inf, huge
            # Exactly on a rounding tie after scaling.
            st.integers(-32767, 32766).map(lambda k: (k + 0.5) / 32767),
        ),
    )
)


@given(float_arrays)
def test_float_to_pcm16_matches_numpy(x: np.ndarray) -> None:
    got = float_to_pcm16(x)
    assert got.dtype == np.int16 and got.shape == x.shape
    np.testing.assert_array_equal(got, numpy_float_to_pcm16(x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_to_pcm16_on_every_tie_and_every_length(dtype: type) -> None:
    # Every half step of the int16 grid, plus the special values, at lengths that cover all
    # the SIMD tails.
    ties = ((np.arange(-32768, 32768) + 0.5) / 32767).astype(dtype)
    special = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0], dtype=dtype)
    x = np.concatenate([special, ties])
    np.testing.assert_array_equal(float_to_pcm16(x), numpy_float_to_pcm16(x))
    for length in range(0, 70):
        np.testing.assert_array_equal(float_to_pcm16(x[:length]), numpy_float_to_pcm16(x[:length]))


def test_special_values() -> None:
    x = np.array([np.nan, np.inf, -np.inf, 3.0, -3.0, 0.5], dtype=np.float32)
    np.testing.assert_array_equal(float_to_pcm16(x), [0, 32767, -32767, 32767, -32767, 16384])


def test_pcm16_to_float_is_exact_on_every_int16() -> None:
    x = np.arange(-32768, 32768, dtype=np.int16)
    got = pcm16_to_float(x)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, x.astype(np.float32) / np.float32(32768))
    # Little-endian bytes give the same result, whatever the container.
    raw = x.astype("<i2").tobytes()
    for container in (raw, bytearray(raw), memoryview(raw)):
        np.testing.assert_array_equal(pcm16_to_float(container), got)


@given(hnp.arrays(np.int16, st.integers(0, 300)), st.booleans())
def test_pcm16_to_float_from_unaligned_bytes(x: np.ndarray, unaligned: bool) -> None:
    raw = b"\0" * unaligned + x.astype("<i2").tobytes()
    view = memoryview(raw)[int(unaligned):]
    np.testing.assert_array_equal(pcm16_to_float(view), x.astype(np.float32) / 32768)


@given(hnp.arrays(np.int16, st.integers(0, 300)))
def test_round_trip_is_within_one_step(x: np.ndarray) -> None:
    back = float_to_pcm16(pcm16_to_float(x))
    assert np.all(np.abs(back.astype(np.int32) - x) <= 1)


def test_outputs_are_fresh_arrays() -> None:
    x = np.zeros(10, dtype=np.float32)
    y = float_to_pcm16(x)
    assert y.flags.writeable and not np.shares_memory(x, y)
    y[0] = 5
    assert x[0] == 0


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros(4, dtype=np.int16), "dtype int16"),
        (np.zeros(4, dtype=np.float16), "dtype float16"),
        (np.zeros((2, 2), dtype=np.float32), "2-D array of shape (2, 2)"),
        (np.zeros(8, dtype=np.float32)[::2], "non-contiguous"),
        (np.zeros(4, dtype=">f4"), "dtype >f4"),
        ([0.0, 0.5], "type list"),
        (b"\0\0\0\0", "type bytes"),
    ],
)
def test_float_to_pcm16_rejects_bad_input(bad: object, message: str) -> None:
    with pytest.raises(ValueError, match="float32 or float64") as info:
        float_to_pcm16(bad)  # type: ignore[arg-type]
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (b"\0\0\0", "even number of bytes, got 3"),
        (bytearray(5), "even number of bytes, got 5"),
        (np.zeros(4, dtype=np.float32), "dtype float32"),
        (np.zeros(4, dtype=np.uint16), "dtype uint16"),
        (np.zeros((2, 3), dtype=np.int16), "2-D array"),
        (np.zeros(8, dtype=np.int16)[::2], "non-contiguous"),
        ("text", "type str"),
        (None, "type NoneType"),
    ],
)
def test_pcm16_to_float_rejects_bad_input(bad: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        pcm16_to_float(bad)  # type: ignore[arg-type]
    assert message in str(info.value)


def run_docstring_examples(*objects: object) -> None:
    for obj in objects:
        assert ">>>" in (obj.__doc__ or ""), obj
        for test in doctest.DocTestFinder().find(obj, globs=vars(realtalk.audio).copy()):
            result = doctest.DocTestRunner().run(test)
            assert result.failed == 0, test.name


def test_docstring_examples() -> None:
    run_docstring_examples(float_to_pcm16, pcm16_to_float)
    assert _audio.float_to_pcm16 is float_to_pcm16
