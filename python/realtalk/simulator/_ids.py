"""Server ids in the real server's shape: a prefix and 21 base62 characters
(``event_C9G5RJeJ2gF77mV7f2B1j``). Seeded, so a scripted session is reproducible."""

from __future__ import annotations

import random
import string

_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase


class IdFactory:
    def __init__(self, seed: int | str | None = None) -> None:
        self._random = random.Random(seed)

    def token(self, length: int = 21) -> str:
        return "".join(self._random.choices(_ALPHABET, k=length))

    def new(self, prefix: str) -> str:
        return f"{prefix}_{self.token()}"
