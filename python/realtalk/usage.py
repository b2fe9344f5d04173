"""Token usage, rate limits and cost: what ``response.done`` and ``rate_limits.updated`` report
(protocol.md §5, §7.3), summed per response and per client, and priced by a table the caller
supplies.

realtalk ships no prices: they change, and a stale built-in table would quietly misreport.
Give :class:`Prices` in US dollars per million tokens, from the provider's current price list.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["Prices", "RateLimit", "Tokens", "Usage"]


def _count(details: Any, key: str) -> int:
    value = details.get(key) if isinstance(details, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value


@dataclass(frozen=True)
class Tokens:
    """Token counts by category. ``input_*`` count every input token of that kind, cached or
    not; ``cached_*`` are the part of them the prompt cache served (a subset, billed at the
    cached price)."""

    input_text: int = 0
    input_audio: int = 0
    input_image: int = 0
    cached_text: int = 0
    cached_audio: int = 0
    cached_image: int = 0
    output_text: int = 0
    output_audio: int = 0

    @classmethod
    def from_usage(cls, usage: Any) -> Tokens:
        """The counts of a ``response.done`` ``usage`` object (GA or beta; missing or
        malformed counts are 0, and ``None`` is no usage at all)."""
        if not isinstance(usage, Mapping):
            return cls()
        details_in = usage.get("input_token_details")
        cached = details_in.get("cached_tokens_details") if isinstance(details_in,
                                                                       Mapping) else None
        details_out = usage.get("output_token_details")
        return cls(
            input_text=_count(details_in, "text_tokens"),
            input_audio=_count(details_in, "audio_tokens"),
            input_image=_count(details_in, "image_tokens"),
            cached_text=_count(cached, "text_tokens"),
            cached_audio=_count(cached, "audio_tokens"),
            cached_image=_count(cached, "image_tokens"),
            output_text=_count(details_out, "text_tokens"),
            output_audio=_count(details_out, "audio_tokens"),
        )

    @property
    def input(self) -> int:
        """All input tokens (``usage.input_tokens``)."""
        return self.input_text + self.input_audio + self.input_image

    @property
    def cached(self) -> int:
        """The input tokens the prompt cache served (``input_token_details.cached_tokens``)."""
        return self.cached_text + self.cached_audio + self.cached_image

    @property
    def output(self) -> int:
        """All output tokens (``usage.output_tokens``)."""
        return self.output_text + self.output_audio

    @property
    def total(self) -> int:
        """Input and output (``usage.total_tokens``)."""
        return self.input + self.output

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def __sub__(self, other: Tokens) -> Tokens:
        return Tokens(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))


@dataclass(frozen=True)
class Prices:
    """A price table: US dollars per million tokens in each category. Cached input is billed
    at the ``cached_*`` price instead of the ``input_*`` one. There are no defaults: copy the
    current prices of the model you use from your provider's price list."""

    input_text: float
    input_audio: float
    cached_text: float
    cached_audio: float
    output_text: float
    output_audio: float
    input_image: float = 0.0
    cached_image: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and value >= 0):
                raise ValueError(f"Prices.{f.name} must be a finite number >= 0 (US dollars "
                                 f"per million tokens), got {value!r}")

    @classmethod
    def from_mapping(cls, table: Any) -> Prices:
        """A table given as a mapping of the field names (a JSON object, say); ValueError
        naming what is missing, unknown or not a price."""
        if not isinstance(table, Mapping):
            raise ValueError(f"a price table is an object of prices by category, not "
                             f"{type(table).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(table) - set(known))
        if unknown:
            raise ValueError(f"unknown price categories {unknown}: the categories are "
                             f"{', '.join(known)}")
        missing = [name for name in known[:6] if name not in table]
        if missing:
            raise ValueError(f"the price table lacks {', '.join(missing)}")
        return cls(**table)

    def cost(self, tokens: Tokens) -> float:
        """What ``tokens`` cost, in US dollars."""
        dollars = 0.0
        for kind in ("text", "audio", "image"):
            cached = getattr(tokens, f"cached_{kind}")
            uncached = getattr(tokens, f"input_{kind}") - cached
            dollars += uncached * getattr(self, f"input_{kind}")
            dollars += cached * getattr(self, f"cached_{kind}")
        dollars += tokens.output_text * self.output_text + tokens.output_audio * self.output_audio
        return dollars / 1_000_000


@dataclass(frozen=True)
class RateLimit:
    """One entry of the server's latest ``rate_limits.updated``: ``name`` is ``"requests"`` or
    ``"tokens"``; ``reset_seconds`` until ``remaining`` is back to ``limit``."""

    name: str
    limit: int
    remaining: int
    reset_seconds: float

    @classmethod
    def parse(cls, entries: Any) -> list[RateLimit]:
        """The well-formed entries of a ``rate_limits`` list (others are skipped)."""
        limits = []
        for entry in entries if isinstance(entries, list | tuple) else ():
            if not isinstance(entry, Mapping):
                continue
            name, limit, remaining = entry.get("name"), entry.get("limit"), entry.get("remaining")
            reset = entry.get("reset_seconds")
            numbers = (limit, remaining, reset)
            if isinstance(name, str) and all(isinstance(n, int | float) and not isinstance(
                    n, bool) for n in numbers):
                limits.append(cls(name, int(limit), int(remaining),  # type: ignore[arg-type]
                                  float(reset)))  # type: ignore[arg-type]
        return limits


class Usage:
    """The tokens of every response this client saw finish (``response.done``), per response
    and in total, over reconnects; with :class:`Prices`, their cost. The transcription of the
    user's audio is billed apart, by its own model: :attr:`transcription` (token-billed
    models) and :attr:`transcription_seconds` (whisper-1), outside :attr:`total` and
    :attr:`cost`."""

    def __init__(self, prices: Prices | None = None) -> None:
        if prices is not None and not isinstance(prices, Prices):
            raise TypeError(f"prices must be a realtalk.usage.Prices, not "
                            f"{type(prices).__name__}")
        self.prices = prices
        self.responses: dict[str, Tokens] = {}
        """Response id -> its tokens, in the order the responses finished."""
        self.total = Tokens()
        """The sum over :attr:`responses`."""
        self.transcription = Tokens()
        """The tokens of the input transcriptions (``...input_audio_transcription.completed``
        with ``usage.type`` ``"tokens"``): audio and text prompt in, transcript out."""
        self.transcription_seconds = 0.0
        """The audio transcribed by duration-billed models (``usage.type`` ``"duration"``)."""

    def add_response(self, response: Mapping[str, Any]) -> None:
        """Count a finished response (the ``response`` of ``response.done``); one seen before
        (same id) is not counted twice."""
        if not isinstance(response, Mapping):
            return
        response_id = response.get("id")
        if not isinstance(response_id, str) or response_id in self.responses:
            return
        tokens = Tokens.from_usage(response.get("usage"))
        self.responses[response_id] = tokens
        self.total = self.total + tokens

    def add_transcription(self, completed: Mapping[str, Any]) -> None:
        """Count a finished transcription (a ``...input_audio_transcription.completed``
        event); one without ``usage`` (early beta) counts nothing."""
        usage = completed.get("usage") if isinstance(completed, Mapping) else None
        if not isinstance(usage, Mapping):
            return
        if usage.get("type") == "duration":
            seconds = usage.get("seconds")
            if isinstance(seconds, int | float) and not isinstance(seconds, bool) and (
                    math.isfinite(seconds) and seconds >= 0):
                self.transcription_seconds += float(seconds)
            return
        details = usage.get("input_token_details")
        tokens = Tokens(input_text=_count(details, "text_tokens"),
                        input_audio=_count(details, "audio_tokens"),
                        output_text=_count(usage, "output_tokens"))
        self.transcription = self.transcription + tokens

    @property
    def cost(self) -> float | None:
        """The total's cost in US dollars; None without a price table."""
        return None if self.prices is None else self.prices.cost(self.total)

    def response_cost(self, response_id: str) -> float | None:
        """One response's cost in US dollars; None without a price table (KeyError for a
        response not seen)."""
        tokens = self.responses[response_id]
        return None if self.prices is None else self.prices.cost(tokens)
