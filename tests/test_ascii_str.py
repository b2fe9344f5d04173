"""The base64 encoders build their `str` in place outside the limited API (rust/python/ascii_str.rs).

Whatever path built it, the result must be an ordinary compact ASCII `str`, indistinguishable
from the one the standard library builds: equal through Python's own comparison (which reads
the characters, not a UTF-8 view), the same hash, the same size in memory (no stray UTF-8 copy),
and usable everywhere a str is. Lengths cover the empty text, every tail of a 3-byte group, the
SIMD block edges and the inputs large enough to be encoded with the GIL released.
"""

from __future__ import annotations

import base64
import json
import sys

import numpy as np
import pytest

from realtalk._audio import b64encode, pcm16_to_base64

LENGTHS = [0, 1, 2, 3, 4, 5, 47, 48, 49, 95, 96, 97, 1023, 1 << 15, (1 << 15) + 1, 3 << 16]


def assert_same_str(built: str, expected: str) -> None:
    assert type(built) is str
    assert built == expected
    assert hash(built) == hash(expected)
    assert len(built) == len(expected)
    assert built.isascii()
    assert sys.getsizeof(built) == sys.getsizeof(expected)
    assert built.encode("ascii") == expected.encode("ascii")
    assert json.dumps(built) == json.dumps(expected)
    assert {built: 1}[expected] == 1
    if expected:
        assert built[0] == expected[0]
        assert built[-1] == expected[-1]


@pytest.mark.parametrize("length", LENGTHS)
def test_b64encode_builds_an_ordinary_ascii_str(length: int) -> None:
    data = np.random.default_rng(length).integers(0, 256, length, dtype=np.uint8).tobytes()
    assert_same_str(b64encode(data), base64.b64encode(data).decode("ascii"))


@pytest.mark.parametrize("length", LENGTHS)
def test_pcm16_to_base64_builds_an_ordinary_ascii_str(length: int) -> None:
    samples = np.random.default_rng(length).integers(-32768, 32768, length, dtype=np.int16)
    expected = base64.b64encode(samples.astype("<i2").tobytes()).decode("ascii")
    assert_same_str(pcm16_to_base64(samples), expected)


def test_every_str_is_a_new_object_with_its_own_characters() -> None:
    # Two encodings of different inputs never share or overwrite each other's characters.
    first = b64encode(b"\x00" * 300)
    second = b64encode(b"\xff" * 300)
    assert first == base64.b64encode(b"\x00" * 300).decode()
    assert second == base64.b64encode(b"\xff" * 300).decode()
    assert first is not second
