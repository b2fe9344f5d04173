"""The one place the client mints event ids and item ids (the delivery ledger, refusals and
replays match on them)."""

from __future__ import annotations

import uuid

__all__ = ["new_event_id", "new_item_id"]


def new_event_id() -> str:
    """A client event id: the server names it in an ``error`` about that event."""
    return "event_" + uuid.uuid4().hex[:20]


def new_item_id() -> str:
    """A client-chosen item id (the server's echo confirms this very item; at most 32 chars)."""
    return "item_rt" + uuid.uuid4().hex[:22]
