"""Delivery of user-level client events across reconnects: exactly once, or reported lost.

A WebSocket write that returned says nothing about the server: a connection that drops right
after it may have lost the event. The client records every user-level event it sends
(``conversation.item.create``, ``session.update``, ``response.create``) until the server
confirms it by its echo (``conversation.item.added``/``created`` with the item's id,
``session.updated``, ``response.created``) or answers it with an ``error`` naming its
``event_id``. On a new connection each event still unconfirmed is replayed once; one that was
already replayed and is still unconfirmed at the next reconnect is given up and reported lost.
Items carry client-chosen ids, so a replay the server already has is refused as a duplicate,
which counts as confirmation.

Pure bookkeeping: no I/O, no event loop (the client does the sending and the reporting).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DUPLICATE_ITEM_CODES", "Delivery", "DeliveryLedger", "TRACKED_TYPES"]

# The client events a user's code (or the client on its behalf) asks for, whose loss matters.
TRACKED_TYPES = frozenset({"conversation.item.create", "session.update", "response.create"})
# The server's refusal of an item id it already has (protocol.md §8).
DUPLICATE_ITEM_CODES = frozenset({"item_create_duplicate_item_id"})


@dataclass(eq=False)
class Delivery:
    """One tracked event: as sent (GA dict) and as written (``message``), and how often it
    went onto a connection."""

    event: dict[str, Any]
    message: bytes
    writes: int = 0
    outcome: str | None = field(default=None)  # confirmed | refused | lost

    @property
    def event_id(self) -> str:
        return str(self.event.get("event_id"))

    @property
    def type(self) -> str:
        return str(self.event.get("type"))

    @property
    def item_id(self) -> str | None:
        item = self.event.get("item")
        if isinstance(item, Mapping) and isinstance(item.get("id"), str):
            return str(item["id"])
        return None

    @property
    def out_of_band(self) -> bool:
        response = self.event.get("response")
        return isinstance(response, Mapping) and response.get("conversation") == "none"

    def describe(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "event_type": self.type, "item_id": self.item_id}


class DeliveryLedger:
    """The tracked events not yet confirmed, in the order they were sent."""

    def __init__(self) -> None:
        self._open: dict[str, Delivery] = {}
        self._by_message: dict[int, Delivery] = {}
        self.confirmed = 0
        self.replayed = 0
        self.lost = 0

    def __len__(self) -> int:
        return len(self._open)

    def pending(self) -> list[Delivery]:
        return list(self._open.values())

    def record(self, event: Mapping[str, Any], message: bytes) -> Delivery | None:
        """Track ``event`` (already carrying its ``event_id``) if it is user-level."""
        if event.get("type") not in TRACKED_TYPES:
            return None
        delivery = Delivery(dict(event), message)
        self._open[delivery.event_id] = delivery
        self._by_message[id(message)] = delivery
        return delivery

    def written(self, message: bytes) -> None:
        """``message`` went onto a connection (the write returned)."""
        delivery = self._by_message.get(id(message))
        if delivery is not None and delivery.message is message:
            delivery.writes += 1

    def _close(self, delivery: Delivery, outcome: str) -> Delivery:
        delivery.outcome = outcome
        self._open.pop(delivery.event_id, None)
        self._by_message.pop(id(delivery.message), None)
        if outcome == "confirmed":
            self.confirmed += 1
        elif outcome == "lost":
            self.lost += 1
        return delivery

    # ---- the server's answers ----

    def confirm_item(self, item_id: str) -> Delivery | None:
        for delivery in self._open.values():
            if delivery.type == "conversation.item.create" and delivery.item_id == item_id:
                return self._close(delivery, "confirmed")
        return None

    def confirm_session_update(self) -> Delivery | None:
        # The server answers session.update events in the order it got them.
        return self._confirm_first(lambda d: d.type == "session.update")

    def confirm_response(self, event_id: str | None, *, out_of_band: bool) -> Delivery | None:
        """A ``response.created``: in the default conversation it answers the request the
        client knows it is waiting for (``event_id``; None when the server started it on its
        own); out of band, the oldest out-of-band request."""
        if not out_of_band:
            delivery = self._open.get(event_id) if event_id is not None else None
            return self._close(delivery, "confirmed") if delivery is not None else None
        return self._confirm_first(lambda d: d.type == "response.create" and d.out_of_band)

    def _confirm_first(self, wanted: Any) -> Delivery | None:
        for delivery in self._open.values():
            if wanted(delivery):
                return self._close(delivery, "confirmed")
        return None

    def answer_error(self, error: Mapping[str, Any]) -> Delivery | None:
        """An ``error`` naming one of our events: answered (refused), or confirmed when it is
        the refusal of an item id the server already has."""
        delivery = self._open.get(str(error.get("event_id")))
        if delivery is None:
            return None
        if delivery.type == "conversation.item.create" and _is_duplicate_item(error):
            return self._close(delivery, "confirmed")
        return self._close(delivery, "refused")

    # ---- reconnects ----

    def at_reconnect(self) -> tuple[list[Delivery], list[Delivery]]:
        """What a new connection must carry again and what is given up: events written and
        not confirmed are replayed, once (those never written are still queued and go out in
        their turn); one written twice and still unconfirmed is lost."""
        replay: list[Delivery] = []
        lost: list[Delivery] = []
        for delivery in list(self._open.values()):
            if delivery.writes == 0:
                continue
            if delivery.writes >= 2:
                lost.append(self._close(delivery, "lost"))
            else:
                replay.append(delivery)
                self.replayed += 1
        return replay, lost

    def give_up(self) -> list[Delivery]:
        """No new connection will come: everything written and unconfirmed is lost (what
        was never written is counted by the client as undelivered)."""
        return [self._close(d, "lost") for d in list(self._open.values()) if d.writes]

    def replace_message(self, delivery: Delivery, event: dict[str, Any], message: bytes) -> None:
        """The replay of ``delivery`` goes out as ``message`` (ids rewritten for the new
        session)."""
        self._by_message.pop(id(delivery.message), None)
        delivery.event = event
        delivery.message = message
        self._by_message[id(message)] = delivery


def _is_duplicate_item(error: Mapping[str, Any]) -> bool:
    if error.get("code") in DUPLICATE_ITEM_CODES:
        return True
    # The wording the API (and the simulator before it had the code) uses for the refusal.
    return error.get("param") == "item.id" and "already exists" in str(error.get("message"))
