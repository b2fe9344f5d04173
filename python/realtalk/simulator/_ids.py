"""Server ids in the real server's shape: a prefix and 21 base62 characters
(``event_C9G5RJeJ2gF77mV7f2B1j``). Seeded, so a scripted session is reproducible."""

from __future__ import annotations

import random
import string

_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
# Random bytes map onto the alphabet through this table: one C call per id instead of one
# Python-level draw per character (every event carries an id, every GA delta a token too).
# Bytes wrap around the 62 characters, so the first eight are slightly more frequent (5/256
# against 4/256): an id only needs the shape, not a uniform distribution.
_BYTE_TO_CHAR = (_ALPHABET * 5)[:256].encode()


class IdFactory:
    def __init__(self, seed: int | str | None = None) -> None:
        self._randbytes = random.Random(seed).randbytes

    def token(self, length: int = 21) -> str:
        return self._randbytes(length).translate(_BYTE_TO_CHAR).decode()

    def new(self, prefix: str) -> str:
        return f"{prefix}_{self.token()}"
