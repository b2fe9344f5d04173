"""What clients may do through the relay: :class:`RelayPolicy` and the checks it drives."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from realtalk.events import CLIENT_EVENT_TYPES
from realtalk.transport import DEFAULT_MAX_SIZE

DOCUMENTED_CLIENT_EVENTS = frozenset({*CLIENT_EVENT_TYPES, "transcription_session.update"})
"""Every documented client event type (GA names, plus the beta-only
``transcription_session.update``): the default allowlist."""



@dataclass(frozen=True)
class RelayPolicy:
    """What clients may do through the relay (one per deployment).

    - ``allowed_events``: client event types forwarded (wire names); default every documented
      client event.
    - ``pinned_session``: a GA session config (``{"instructions": ..., "tools": [...],
      "audio": {"output": {"voice": "marin"}}}``) the relay applies when the session opens
      (the client's ``session.created`` already shows it) and that clients cannot change: a
      ``session.update`` or ``response.create`` that sets one of its fields to another value
      is refused as a whole (the API's own rule for invalid updates).
    - ``model``: the model asked of the upstream when its URL names none; ``allowed_models``:
      models a client may pick with ``?model=`` (others are refused with close 4000); empty:
      the client's choice is ignored.
    - ``max_message_bytes``: larger client messages close the connection with 1009.
    - ``max_messages_per_s`` and ``max_audio_seconds_per_s``: token buckets that hold
      ``burst_s`` seconds of their rate; an event over either is refused. None: no limit.
    - ``max_refused_events`` within ``abuse_window_s``: one more closes with 1008.
    - ``idle_timeout_s``: no event either way for this long closes with 1001.
    - ``max_session_s``: sessions end with 1001 at this age. ``max_sessions``: concurrent
      sessions; more are refused with 1013.
    - ``allowed_origins``: browsers' ``Origin`` values accepted (others get HTTP 403); None
      accepts any. ``allow_beta``: accept beta clients (``OpenAI-Beta: realtime=v1``).
    """

    allowed_events: Collection[str] = DOCUMENTED_CLIENT_EVENTS
    pinned_session: Mapping[str, Any] | None = None
    model: str = "gpt-realtime"
    allowed_models: Collection[str] = ()
    max_message_bytes: int = DEFAULT_MAX_SIZE
    max_messages_per_s: float | None = 100.0
    max_audio_seconds_per_s: float | None = 2.0
    burst_s: float = 2.0
    max_refused_events: int = 20
    abuse_window_s: float = 10.0
    idle_timeout_s: float | None = 300.0
    max_session_s: float | None = 3600.0
    max_sessions: int | None = 1000
    allowed_origins: Collection[str] | None = None
    allow_beta: bool = True

    def __post_init__(self) -> None:
        if self.max_message_bytes <= 0:
            raise ValueError("max_message_bytes must be positive")
        for name in ("max_messages_per_s", "max_audio_seconds_per_s", "idle_timeout_s",
                     "max_session_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None")
        if not self.burst_s > 0 or not self.abuse_window_s > 0:
            raise ValueError("burst_s and abuse_window_s must be positive")
        if self.max_refused_events < 0:
            raise ValueError("max_refused_events must be >= 0")
        object.__setattr__(self, "allowed_events", frozenset(self.allowed_events))
        object.__setattr__(self, "allowed_models", frozenset(self.allowed_models))
        if self.allowed_origins is not None:
            object.__setattr__(self, "allowed_origins", frozenset(self.allowed_origins))
        pinned = dict(self.pinned_session or {})
        pinned.pop("type", None)
        object.__setattr__(self, "_pinned_paths", _leaf_paths(pinned))

    @property
    def pinned_paths(self) -> dict[tuple[str, ...], Any]:
        """The pinned leaves of ``pinned_session``: path -> value."""
        return self._pinned_paths  # type: ignore[attr-defined, no-any-return]


def _leaf_paths(
    config: Mapping[str, Any], prefix: tuple[str, ...] = ()
) -> dict[tuple[str, ...], Any]:
    leaves: dict[tuple[str, ...], Any] = {}
    for key, value in config.items():
        path = (*prefix, key)
        if isinstance(value, Mapping) and value:
            leaves.update(_leaf_paths(value, path))
        else:
            leaves[path] = value
    return leaves


_MISSING = object()


def _pinned_violation(
    config: Any, pinned: Mapping[tuple[str, ...], Any]
) -> tuple[str, ...] | None:
    """The first pinned path that ``config`` (a session or response object) sets to a value
    other than the pinned one, or None."""
    if not isinstance(config, Mapping):
        return None
    for path, value in pinned.items():
        node: Any = config
        for depth, key in enumerate(path):
            if not isinstance(node, Mapping):
                # A scalar (null ...) where the pinned subtree lives replaces it.
                return path[:depth]
            node = node.get(key, _MISSING)
            if node is _MISSING:
                break
        else:
            if node != value:
                return path
    return None


class _TokenBucket:
    __slots__ = ("capacity", "level", "rate", "updated")

    def __init__(self, rate: float, burst_s: float, now: float) -> None:
        self.rate = rate
        self.capacity = rate * burst_s
        self.level = self.capacity
        self.updated = now

    def take(self, amount: float, now: float) -> bool:
        level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now
        if amount > level:
            self.level = level
            return False
        self.level = level - amount
        return True

