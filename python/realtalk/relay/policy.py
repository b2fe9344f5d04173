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
      (the client's ``session.created`` already shows it). Pinning means the client cannot
      change what the model is told or what it may call. Precisely, when ``pinned_session`` is
      set (non-empty), an event is refused as a whole (the API's own rule for invalid updates)
      if it is

      * a ``session.update`` (``transcription_session.update``) or a ``response.create`` that
        sets a pinned leaf to another value (a scalar where a pinned subtree lives counts);
      * one that sets any of the steering fields ``instructions``, ``prompt``, ``tools``,
        ``tool_choice`` in its ``session`` or ``response``, unless to the exact pinned value
        (these are compared whole, never leaf by leaf: ``prompt.variables`` change what the
        model is told). Steering fields that are not pinned cannot be set at all;
      * a ``conversation.item.create`` of a ``system`` message, or a ``response.create``
        whose out-of-band ``input`` holds one, unless ``allow_system_items``.

      Beta clients are held to the same rules, read in GA terms. Everything else (voice when
      not pinned, modalities, turn detection, user and assistant items ...) stays the client's.
    - ``allow_system_items``: whether clients may add ``system`` messages; default (None):
      False when anything is pinned, else True.
    - ``model``: the model asked of the upstream when its URL names none; ``allowed_models``:
      models a client may pick with ``?model=`` (others are refused with close 4000); empty:
      the client's choice is ignored.
    - ``max_message_bytes``: larger client messages close the connection with 1009.
    - ``max_messages_per_s`` and ``max_audio_seconds_per_s``: token buckets that hold
      ``burst_s`` seconds of their rate; an event over either is refused. None: no limit.
    - ``max_refused_events`` within ``abuse_window_s``: one more closes with 1008.
    - ``idle_timeout_s``: no event either way for this long closes with 1001.
    - ``max_session_s``: sessions end with 1001 at this age. ``max_sessions``: concurrent
      sessions (across every relay sharing the store, see :class:`Relay`); more are refused
      with 1013.
    - ``max_sessions_per_subject``: concurrent sessions per subject (the token's ``subject``,
      the authenticator's identity, or the token itself when it names none); more are refused
      with 1008. None: no limit.
    - ``single_use_tokens``: a relay token opens one session only; its nonce is remembered
      until the token expires, and a replay gets the same refusal as an invalid token (3000).
      A token is used up once its signature checks, even if the session is then refused
      (capacity, limits): fetch a new one to retry. Custom authenticators decide this
      themselves.
    - ``session_ends_at_token_expiry``: close the session (1001, "Your relay token expired.")
      when the token that opened it expires. Default off: a token admits a client, and
      ``max_session_s`` bounds the session.
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
    allow_system_items: bool | None = None
    max_sessions_per_subject: int | None = None
    single_use_tokens: bool = False
    session_ends_at_token_expiry: bool = False

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
        for name in ("max_sessions", "max_sessions_per_subject"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 or None")
        object.__setattr__(self, "allowed_events", frozenset(self.allowed_events))
        object.__setattr__(self, "allowed_models", frozenset(self.allowed_models))
        if self.allowed_origins is not None:
            object.__setattr__(self, "allowed_origins", frozenset(self.allowed_origins))
        pinned = dict(self.pinned_session or {})
        pinned.pop("type", None)
        paths = _leaf_paths(pinned)
        if pinned:
            for name in STEERING_FIELDS:  # compared whole; unset ones cannot be set
                paths[(name,)] = pinned.get(name, _UNSETTABLE)
        object.__setattr__(self, "_pinned_paths", paths)
        if self.allow_system_items is None:
            object.__setattr__(self, "allow_system_items", not pinned)

    @property
    def restricts_content(self) -> bool:
        """Whether the relay looks inside events (pins, system items): those it checked go
        upstream re-encoded from what it read."""
        return bool(self.pinned_paths) or not self.allow_system_items

    @property
    def pinned_paths(self) -> dict[tuple[str, ...], Any]:
        """The pinned leaves of ``pinned_session`` (path -> value), with every steering field
        when anything is pinned."""
        return self._pinned_paths  # type: ignore[attr-defined, no-any-return]


STEERING_FIELDS = ("instructions", "prompt", "tools", "tool_choice")
"""What the model is told and what it may call: locked whole when anything is pinned."""


_UNSETTABLE = object()
"""The pinned value of a steering field the relay leaves unset: no value matches it."""


def _leaf_paths(
    config: Mapping[str, Any], prefix: tuple[str, ...] = ()
) -> dict[tuple[str, ...], Any]:
    leaves: dict[tuple[str, ...], Any] = {}
    for key, value in config.items():
        path = (*prefix, key)
        if isinstance(value, Mapping) and value and not (not prefix and key in STEERING_FIELDS):
            leaves.update(_leaf_paths(value, path))
        else:
            leaves[path] = value
    return leaves


_MISSING = object()


def pinned_violation(
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
            if value is _UNSETTABLE or node != value:
                return path
    return None


def system_item_path(event_type: str, event: Mapping[str, Any]) -> str | None:
    """The param of a ``system`` message the event adds (``item.role``,
    ``response.input[2].role``), or None."""
    if event_type == "conversation.item.create":
        item = event.get("item")
        if isinstance(item, Mapping) and item.get("role") == "system":
            return "item.role"
    elif event_type == "response.create":
        response = event.get("response")
        items = response.get("input") if isinstance(response, Mapping) else None
        if isinstance(items, list):
            for index, item in enumerate(items):
                if isinstance(item, Mapping) and item.get("role") == "system":
                    return f"response.input[{index}].role"
    return None


MAX_AUDIO_SCAN_DEPTH = 8
"""Audio lives at most this deep in a client event (response.input[i].content[j].audio)."""


def encoded_audio_bytes(node: Any, depth: int = 0) -> int:
    """The decoded length of every base64 ``audio`` string in a client event (an append's
    ``audio``, ``input_audio`` parts in items and in ``response.create``'s ``input``)."""
    total = 0
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "audio" and isinstance(value, str):
                total += base64_decoded_size(value)
            elif depth < MAX_AUDIO_SCAN_DEPTH and isinstance(value, Mapping | list):
                total += encoded_audio_bytes(value, depth + 1)
    elif isinstance(node, list) and depth < MAX_AUDIO_SCAN_DEPTH:
        for value in node:
            total += encoded_audio_bytes(value, depth + 1)
    return total


def base64_decoded_size(encoded: str) -> int:
    return len(encoded) * 3 // 4 - encoded[-2:].count("=")


class TokenBucket:
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

