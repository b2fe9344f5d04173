"""base64 against the stdlib `base64` module, G.711 against `audioop` (exhaustively)."""

import base64
import binascii
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from realtalk.audio import (
    alaw_decode,
    alaw_encode,
    b64decode,
    b64encode,
    pcm16_from_base64,
    pcm16_to_base64,
    ulaw_decode,
    ulaw_encode,
)
from tests.test_pcm import run_docstring_examples

# The stdlib module up to 3.12; the audioop-lts backport installs the same name from 3.13.
import audioop

# Lengths straddling the 48-byte / 64-character SIMD blocks and their masked tails.
BLOCK_EDGES = sorted({n + d for n in (0, 48, 96, 960, 4800) for d in range(-4, 5) if n + d >= 0})


def python_b64decode(text: str | bytes) -> bytes:
    return base64.b64decode(text, validate=True)


@given(st.binary(max_size=2000))
def test_encode_matches_stdlib_and_round_trips(data: bytes) -> None:
    expected = base64.b64encode(data).decode()
    assert b64encode(data) == expected
    assert b64encode(bytearray(data)) == expected
    assert b64encode(memoryview(data)) == expected
    assert b64decode(expected) == data
    assert b64decode(expected.encode()) == data


@pytest.mark.parametrize("length", BLOCK_EDGES)
def test_block_edges(length: int) -> None:
    data = np.random.default_rng(length).integers(0, 256, length, dtype=np.uint8).tobytes()
    text = base64.b64encode(data).decode()
    assert b64encode(data) == text
    assert b64decode(text) == data
    # A bad character in every position of the last block and the one before is found.
    for offset in range(max(0, len(text) - 130), len(text)):
        if text[offset] == "=":
            continue
        broken = text[:offset] + "*" + text[offset + 1 :]
        with pytest.raises(ValueError, match=f"offset {offset}$"):
            b64decode(broken)


canonical = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


@given(st.text(alphabet="AQgw/+9=*- \n\xe9", max_size=24))
def test_decode_agrees_with_stdlib_on_arbitrary_text(text: str) -> None:
    try:
        expected: bytes | None = python_b64decode(text.encode())
    except (binascii.Error, ValueError):
        expected = None
    try:
        got: bytes | None = b64decode(text)
    except ValueError:
        got = None
    if got is not None:
        # Never accept what Python refuses, never decode differently.
        assert got == expected
    if canonical.fullmatch(text):
        assert got == expected is not None
    else:
        assert got is None


@given(st.binary(min_size=1, max_size=300), st.data())
def test_first_bad_character_is_reported(data: bytes, draw: st.DataObject) -> None:
    text = base64.b64encode(data).decode()
    offset = draw.draw(st.integers(0, len(text) - 1))
    bad = draw.draw(st.sampled_from("!-_ .\n\t\0~\xe9\u20ac"))
    broken = text[:offset] + bad + text[offset + 1 :]
    with pytest.raises(ValueError):  # binascii.Error, or the str is not ASCII
        python_b64decode(broken)
    with pytest.raises(ValueError, match=f"at offset {offset}$"):
        b64decode(broken)
    if bad.isascii():
        with pytest.raises(ValueError, match=f"at offset {offset}$"):
            b64decode(broken.encode())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Zg=", "length 3 is not a multiple of 4"),
        ("Zm9vY", "length 5 is not a multiple of 4 (incomplete group at offset 4)"),
        ("Z===", "misplaced padding '=' at offset 1"),
        ("Zg=a", "after padding at offset 3"),
        ("Zg==Zm9v", "after padding at offset 4"),
        ("Zm9v\nYmFy", "character '\\n' at offset 4"),
        ("Zm9v-_Fy", "character '-' at offset 4"),
    ],
)
def test_bad_base64_messages(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        b64decode(text)
    assert message in str(info.value)


def test_bad_argument_types() -> None:
    with pytest.raises(ValueError, match="type int"):
        b64encode(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="type list"):
        b64decode([1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-contiguous"):
        b64encode(np.zeros(8, dtype=np.uint8)[::2])


def test_encode_accepts_any_contiguous_array_as_raw_bytes() -> None:
    x = np.arange(100, dtype=np.float32)
    assert b64encode(x) == base64.b64encode(x.tobytes()).decode()


@given(hnp.arrays(np.int16, st.integers(0, 2000)))
def test_pcm16_base64_matches_stdlib(x: np.ndarray) -> None:
    raw = x.astype("<i2").tobytes()
    text = base64.b64encode(raw).decode()
    assert pcm16_to_base64(x) == text
    assert pcm16_to_base64(raw) == text
    decoded = pcm16_from_base64(text)
    assert decoded.dtype == np.int16
    np.testing.assert_array_equal(decoded, x)
    np.testing.assert_array_equal(pcm16_from_base64(text.encode()), x)


def test_pcm16_base64_bad_input() -> None:
    with pytest.raises(ValueError, match="even number of bytes, the base64 text decodes to 3"):
        pcm16_from_base64(base64.b64encode(b"abc").decode())
    with pytest.raises(ValueError, match="even number of bytes, got 3"):
        pcm16_to_base64(b"abc")
    with pytest.raises(ValueError, match="dtype float32"):
        pcm16_to_base64(np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="offset 0"):
        pcm16_from_base64("!AAA")


ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = np.arange(256, dtype=np.uint8)


@pytest.mark.parametrize(
    ("encode", "oracle"), [(ulaw_encode, audioop.lin2ulaw), (alaw_encode, audioop.lin2alaw)]
)
def test_g711_encode_is_bit_exact_on_every_int16(encode, oracle) -> None:  # type: ignore[no-untyped-def]
    raw = ALL_INT16.astype("<i2").tobytes()
    expected = np.frombuffer(oracle(raw, 2), dtype=np.uint8)
    got = encode(ALL_INT16)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(encode(raw), expected)


@pytest.mark.parametrize(
    ("decode", "oracle"), [(ulaw_decode, audioop.ulaw2lin), (alaw_decode, audioop.alaw2lin)]
)
def test_g711_decode_is_bit_exact_on_every_code(decode, oracle) -> None:  # type: ignore[no-untyped-def]
    expected = np.frombuffer(oracle(ALL_CODES.tobytes(), 2), dtype="<i2")
    got = decode(ALL_CODES)
    assert got.dtype == np.int16
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(decode(ALL_CODES.tobytes()), expected)
    np.testing.assert_array_equal(decode(bytearray(ALL_CODES.tobytes())), expected)


def test_g711_bad_input() -> None:
    with pytest.raises(ValueError, match="dtype int16"):
        ulaw_decode(np.zeros(4, dtype=np.int16))
    with pytest.raises(ValueError, match="even number of bytes, got 7"):
        alaw_encode(b"\0" * 7)
    with pytest.raises(ValueError, match="2-D"):
        ulaw_encode(np.zeros((2, 2), dtype=np.int16))
    with pytest.raises(ValueError, match="non-contiguous"):
        alaw_decode(np.zeros(4, dtype=np.uint8)[::2])


def test_docstring_examples() -> None:
    run_docstring_examples(
        b64encode, b64decode, pcm16_to_base64, pcm16_from_base64,
        ulaw_encode, ulaw_decode, alaw_encode, alaw_decode,
    )
