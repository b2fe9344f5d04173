"""The conversation cache: what the server's default conversation holds, as the client saw it.

``Conversation.apply(event)`` takes server events (GA names, as plain dicts or typed events) and
keeps the items in the server's order, which ``previous_item_id`` defines, not in arrival
order. Deltas and transcripts that arrive before their item are parked and attached when the
item shows up. Output audio is kept per item as a list of int16 chunks (one per delta, never
concatenated on the way in) under a conversation-wide cap: the oldest chunks go first, and what
was dropped is counted. Nothing here does I/O; the client feeds it and turns its changes into
events.
"""

from __future__ import annotations

import base64
import dataclasses
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Change", "Conversation", "Item"]

Int16Array = npt.NDArray[np.int16]

_ROOT = ""

_EMPTY_AUDIO: Int16Array = np.zeros(0, dtype=np.int16)
_EMPTY_AUDIO.flags.writeable = False

# An item leaves "in progress" once the server says it is final.
_FINAL_STATUSES = frozenset({"completed", "incomplete", "cancelled", "failed"})

_ITEM_EVENTS = frozenset(
    {
        "conversation.item.added",
        "conversation.item.created",
        "conversation.item.done",
        "conversation.item.retrieved",
    }
)

# Events that refer to an item by ``item_id`` and make no sense before it exists.
_PARKABLE = frozenset(
    {
        "response.content_part.added",
        "response.content_part.done",
        "response.output_text.delta",
        "response.output_text.done",
        "response.output_audio_transcript.delta",
        "response.output_audio_transcript.done",
        "response.output_audio.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.input_audio_transcription.failed",
        "conversation.item.input_audio_transcription.segment",
        "conversation.item.truncated",
    }
)


def decode_pcm16_base64(delta: str) -> Int16Array:
    """Default audio decoder for dict deltas: base64 of little-endian pcm16."""
    raw = base64.b64decode(delta)
    if len(raw) % 2:
        raise ValueError(f"pcm16 audio delta has an odd byte count ({len(raw)})")
    return np.frombuffer(raw, dtype="<i2").astype(np.int16, copy=False)


@dataclass(eq=False)
class Item:
    """One conversation item. Text fields join their deltas on read; ``audio`` concatenates
    the stored chunks on read (``audio_chunks`` gives them without a copy). Its audio is kept
    at ``sample_rate`` (a client's ``playback_rate``): ``len(item.audio) / item.sample_rate``
    is its duration in seconds."""

    id: str
    type: str = "message"
    role: str | None = None
    status: str = "in_progress"
    previous_item_id: str | None = None
    response_id: str | None = None
    call_id: str | None = None
    name: str | None = None
    output: str | None = None
    content: list[dict[str, Any]] = field(default_factory=list)
    transcription_error: dict[str, Any] | None = None
    transcript_segments: list[dict[str, Any]] = field(default_factory=list)
    sample_rate: int = 24000
    """The rate ``audio`` is kept at, in Hz (the conversation's ``audio_rate``)."""
    audio_samples_received: int = 0
    """Samples of output audio received for this item (the server's holding, even after the
    cache dropped some of them), at ``sample_rate``."""
    audio_samples_dropped: int = 0
    truncated_ms: int | None = None
    _text: list[str] = field(default_factory=list, repr=False)
    _transcript: list[str] = field(default_factory=list, repr=False)
    _arguments: list[str] = field(default_factory=list, repr=False)
    _audio: deque[Int16Array] = field(default_factory=deque, repr=False)
    _completed_reported: bool = field(default=False, repr=False)

    @property
    def text(self) -> str:
        """The item's text so far (input text or a text reply, deltas joined)."""
        return "".join(self._text)

    @property
    def transcript(self) -> str:
        """The transcript so far (of the user's audio, or of the model's spoken reply)."""
        return "".join(self._transcript)

    @property
    def arguments(self) -> str:
        """A function call's arguments so far, as the JSON text the model wrote."""
        return "".join(self._arguments)

    @property
    def audio_chunks(self) -> tuple[Int16Array, ...]:
        """The audio still held for this item, one int16 array per delta (no copy)."""
        return tuple(self._audio)

    @property
    def audio(self) -> Int16Array:
        """The audio still held for this item, as one int16 array (a copy)."""
        if not self._audio:
            return _EMPTY_AUDIO
        return np.concatenate(self._audio)

    @property
    def is_final(self) -> bool:
        """True once the item's status is final (completed, incomplete, cancelled or failed)."""
        return self.status in _FINAL_STATUSES

    def _set(self, parts: list[str], value: str) -> None:
        parts.clear()
        if value:
            parts.append(value)


@dataclass(slots=True)
class Change:
    """What one event did to one item. ``delta`` holds the new part (``text``, ``transcript``,
    ``arguments``, ``audio``, ``transcription_error``, ...) or is None for a structural change."""

    item: Item
    delta: dict[str, Any] | None = None
    appended: bool = False
    completed: bool = False


def _as_mapping(event: Any) -> Mapping[str, Any]:
    if isinstance(event, Mapping):
        return event
    if hasattr(event, "__struct_fields__"):
        import msgspec

        built = msgspec.to_builtins(event)
        if isinstance(built, Mapping):
            return built
    if dataclasses.is_dataclass(event) and not isinstance(event, type):
        return dataclasses.asdict(event)
    for method in ("to_dict", "model_dump"):
        convert = getattr(event, method, None)
        if callable(convert):
            built = convert()
            if isinstance(built, Mapping):
                return built
    raise TypeError(f"cannot read a server event from {type(event).__name__}")


class Conversation:
    """Items of the default conversation in server order.

    ``audio_rate`` is the rate the items' audio is kept at (``Item.sample_rate``; a client
    uses its ``playback_rate``). ``max_audio_samples`` caps the output audio kept over all items
    (the oldest chunks go first; ``audio_samples_dropped`` counts them). ``max_items`` caps the
    number of items kept (the oldest leave the cache; ``items_dropped`` counts them).
    ``max_parked`` caps the events held for items that have not arrived yet."""

    def __init__(
        self,
        *,
        audio_rate: int = 24000,
        max_audio_samples: int = 24000 * 60 * 10,
        max_items: int = 10_000,
        max_parked: int = 4096,
        decode_audio: Callable[[str], Int16Array] = decode_pcm16_base64,
    ) -> None:
        if audio_rate <= 0:
            raise ValueError(f"audio_rate must be positive, got {audio_rate}")
        if max_audio_samples < 0 or max_items < 1 or max_parked < 0:
            raise ValueError("max_audio_samples, max_items and max_parked must be positive")
        self.audio_rate = audio_rate
        self.max_audio_samples = max_audio_samples
        self.max_items = max_items
        self.max_parked = max_parked
        self.decode_audio = decode_audio
        self._items: dict[str, Item] = {}
        # The server's order is a tree: each item hangs after its predecessor, and of two items
        # placed after the same one the later is nearer to it. Items whose predecessor has not
        # arrived yet hang from its id until it does.
        self._parent: dict[str, str] = {}
        self._children: dict[str, list[str]] = {}
        self._order_cache: list[str] | None = []
        # Events for items that do not exist yet, oldest item first.
        self._parked: OrderedDict[str, list[Mapping[str, Any]]] = OrderedDict()
        self._parked_count = 0
        # Server ids that stand for items the cache already holds (history replayed after a
        # reconnect), and what a null previous_item_id means in a fresh session.
        self._aliases: dict[str, str] = {}
        self._root: str | None = None
        self._out_of_band: set[str] = set()
        self._audio_fifo: deque[Item] = deque()
        self._audio_held = 0
        self._chunks_held = 0
        self.audio_samples_dropped = 0
        self.items_dropped = 0
        self.events_dropped = 0

    # ---- reading ----

    @property
    def items(self) -> list[Item]:
        """The items in the server's order (`previous_item_id`), not in arrival order."""
        return [self._items[item_id] for item_id in self._order]

    @property
    def _order(self) -> list[str]:
        if self._order_cache is None:
            self._order_cache = self._compute_order()
        return self._order_cache

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, str) and self._resolve(item_id) in self._items

    def get(self, item_id: str) -> Item | None:
        """The item with this id (or a replay's id for it), or None."""
        return self._items.get(self._resolve(item_id))

    @property
    def audio_samples_held(self) -> int:
        """Output audio samples held in all items (under the conversation-wide cap)."""
        return self._audio_held

    def is_out_of_band(self, response_id: str | None) -> bool:
        """Whether ``response_id`` is a running out-of-band response (``conversation: "none"``),
        whose output stays out of the conversation."""
        return response_id in self._out_of_band

    @property
    def parked_events(self) -> int:
        """Deltas and transcripts waiting for an item that has not arrived yet."""
        return self._parked_count

    def audio_ms_received(self, item_id: str) -> int:
        """Milliseconds of output audio the server sent for the item (0 if unknown)."""
        item = self.get(item_id)
        if item is None:
            return 0
        return item.audio_samples_received * 1000 // self.audio_rate

    # ---- session bookkeeping (called by the client) ----

    def alias(self, server_id: str, local_id: str) -> None:
        """Make ``server_id`` stand for the cached item ``local_id`` (history replayed under a
        new id in a new session)."""
        self._aliases[server_id] = local_id

    def abandon_in_progress(self) -> list[Change]:
        """The connection died: items still in progress will never finish. They become
        ``incomplete`` (and are reported completed, once)."""
        changes: list[Change] = []
        for item in self.items:
            if not item.is_final:
                item.status = "incomplete"
                self._report_completion(item, changes)
        return changes

    def start_new_session(self) -> None:
        """A new server session continues this conversation: its root is our last item. The
        ids the previous session knew our items by die with it (the new one gets its own):
        kept, they would pile up with every reconnect."""
        self._root = self._order[-1] if self._order else None
        self._aliases.clear()

    # ---- applying server events ----

    def apply(self, event: Any) -> list[Change]:
        """Apply one server event; returns the changes it made (several when it let parked
        events through, none when it was parked or concerns no item)."""
        data = _as_mapping(event)
        kind = data.get("type")
        if not isinstance(kind, str):
            raise ValueError("a server event needs a string 'type'")
        if kind in _ITEM_EVENTS:
            return self._apply_item_event(kind, data)
        if kind == "response.output_item.added" or kind == "response.output_item.done":
            return self._apply_output_item(kind, data)
        if kind == "response.created":
            response = data.get("response") or {}
            if "conversation_id" in response and response["conversation_id"] is None:
                response_id = response.get("id")
                if isinstance(response_id, str):
                    self._out_of_band.add(response_id)
            return []
        if kind == "response.done":
            response = data.get("response") or {}
            self._out_of_band.discard(response.get("id", ""))
            return []
        if kind == "conversation.item.deleted":
            self._delete(self._resolve(str(data.get("item_id"))))
            return []
        if kind in _PARKABLE:
            if data.get("response_id") in self._out_of_band:
                return []
            item_id = data.get("item_id")
            if not isinstance(item_id, str):
                raise ValueError(f"{kind} needs a string 'item_id'")
            item = self._items.get(self._resolve(item_id))
            if item is None:
                self._park(item_id, data)
                return []
            change = self._apply_to_item(item, kind, data)
            return [change] if change is not None else []
        return []

    def append_audio(self, item_id: str, samples: Int16Array) -> Change | None:
        """Attach decoded output audio (int16, output-format clock) to an item. The array is
        kept as it is, not copied: the caller must not write into it afterwards. Audio for an
        unknown item is parked like any other delta."""
        if not isinstance(samples, np.ndarray) or samples.dtype != np.int16 or samples.ndim != 1:
            raise ValueError("conversation audio must be a 1-D int16 array")
        item = self._items.get(self._resolve(item_id))
        if item is None:
            self._park(item_id, {"type": "response.output_audio.delta", "item_id": item_id,
                                 "_samples": samples})
            return None
        return self._store_audio(item, samples)

    # ---- internals ----

    def _resolve(self, item_id: str) -> str:
        return self._aliases.get(item_id, item_id)

    def _apply_item_event(self, kind: str, data: Mapping[str, Any]) -> list[Change]:
        raw = data.get("item")
        if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str):
            raise ValueError(f"{kind} needs an 'item' with a string 'id'")
        if raw["id"] in self._aliases:
            # History this client replayed into a new session: the cache already has it as
            # the user knows it, so the echo changes nothing.
            return []
        has_previous = "previous_item_id" in data
        previous = data.get("previous_item_id")
        changes = self._upsert(raw, has_previous, previous, response_id=None)
        if kind == "conversation.item.done" or (
            kind == "conversation.item.created" and raw.get("status") in _FINAL_STATUSES
        ):
            item = self._items.get(self._resolve(raw["id"]))
            if item is not None:
                if item.status not in _FINAL_STATUSES:
                    item.status = "completed"
                self._report_completion(item, changes)
        return changes

    def _apply_output_item(self, kind: str, data: Mapping[str, Any]) -> list[Change]:
        if data.get("response_id") in self._out_of_band:
            return []
        raw = data.get("item")
        if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str):
            raise ValueError(f"{kind} needs an 'item' with a string 'id'")
        response_id = data.get("response_id")
        changes = self._upsert(raw, False, None, response_id=response_id)
        if kind == "response.output_item.done":
            item = self._items.get(self._resolve(raw["id"]))
            if item is not None:
                self._report_completion(item, changes)
        return changes

    def _report_completion(self, item: Item, changes: list[Change]) -> None:
        if item.is_final and not item._completed_reported:
            item._completed_reported = True
            for change in changes:
                if change.item is item:
                    change.completed = True
                    return
            changes.append(Change(item, completed=True))

    def _upsert(
        self,
        raw: Mapping[str, Any],
        has_previous: bool,
        previous: Any,
        *,
        response_id: Any,
    ) -> list[Change]:
        if raw["id"] in self._aliases:
            # History this client replayed into a new session: the cache already has it as
            # the user knows it, so the echo changes nothing.
            return []
        item_id = raw["id"]
        item = self._items.get(item_id)
        appended = item is None
        if item is None:
            item = Item(id=item_id, sample_rate=self.audio_rate)
            self._items[item_id] = item
        self._merge(item, raw)
        if isinstance(response_id, str):
            item.response_id = response_id
        if appended:
            self._place(item_id, has_previous, previous)
            self._trim_items()
        elif has_previous:
            self._unlink(item_id)
            self._place(item_id, True, previous)
        changes = [Change(item, appended=appended)]
        if appended:
            changes.extend(self._release_parked(item))
        return changes

    def _merge(self, item: Item, raw: Mapping[str, Any]) -> None:
        item.type = str(raw.get("type", item.type))
        if raw.get("role") is not None:
            item.role = str(raw["role"])
        status = raw.get("status")
        if isinstance(status, str):
            item.status = status
        for name in ("call_id", "name", "output"):
            if raw.get(name) is not None:
                setattr(item, name, str(raw[name]))
        arguments = raw.get("arguments")
        if isinstance(arguments, str) and (arguments or not item._arguments):
            item._set(item._arguments, arguments)
        content = raw.get("content")
        if isinstance(content, list):
            # Audio bytes stay out of the cache's content list: they live in the chunks.
            item.content = [
                {k: v for k, v in part.items() if k != "audio"}
                for part in content
                if isinstance(part, Mapping)
            ]
            texts = [p.get("text") for p in item.content if isinstance(p.get("text"), str)]
            if texts and any(texts):
                item._set(item._text, "".join(t for t in texts if t))
            transcripts = [
                p.get("transcript") for p in item.content if isinstance(p.get("transcript"), str)
            ]
            if transcripts and any(transcripts):
                item._set(item._transcript, "".join(t for t in transcripts if t))

    def _place(self, item_id: str, has_previous: bool, previous: Any) -> None:
        if has_previous and previous is None:
            parent = self._root if self._root is not None else _ROOT
        elif has_previous and isinstance(previous, str):
            parent = self._resolve(previous)
            if parent == item_id:
                parent = _ROOT
        else:
            # No predecessor given (response.output_item.added): after the current last item,
            # until conversation.item.added says where it belongs.
            order = self._order
            parent = order[-1] if order else _ROOT
        self._parent[item_id] = parent
        self._children.setdefault(parent, []).append(item_id)
        self._order_cache = None

    def _unlink(self, item_id: str) -> None:
        """Take an item out of the tree; its followers take its place."""
        parent = self._parent.pop(item_id, None)
        if parent is None:
            return
        siblings = self._children.get(parent, [])
        followers = self._children.pop(item_id, [])
        if item_id in siblings:
            index = siblings.index(item_id)
            siblings[index:index + 1] = followers
        for follower in followers:
            self._parent[follower] = parent
        self._order_cache = None

    def _compute_order(self) -> list[str]:
        order: list[str] = []
        seen: set[str] = set()

        def walk(start: str) -> None:
            stack = list(self._children.get(start, ()))
            while stack:
                node = stack.pop()  # the newest child first: it sits nearest its parent
                if node in seen or node not in self._items:
                    continue
                seen.add(node)
                order.append(node)
                stack.extend(self._children.get(node, ()))

        walk(_ROOT)
        # Chains whose first predecessor is still missing come last, oldest first.
        for parent in list(self._children):
            if parent != _ROOT and parent not in self._items:
                for child in self._children[parent]:
                    if child not in seen and child in self._items:
                        seen.add(child)
                        order.append(child)
                        walk(child)
        return order

    def _park(self, item_id: str, data: Mapping[str, Any]) -> None:
        if self._parked_count >= self.max_parked:
            # Bounded: give up on the oldest item still awaited.
            oldest, events = self._parked.popitem(last=False)
            self._parked_count -= len(events)
            self.events_dropped += len(events)
        self._parked.setdefault(item_id, []).append(data)
        self._parked_count += 1

    def _release_parked(self, item: Item) -> list[Change]:
        changes: list[Change] = []
        for key in [k for k in self._parked if self._resolve(k) == item.id]:
            events = self._parked.pop(key)
            self._parked_count -= len(events)
            for data in events:
                change = self._apply_to_item(item, str(data["type"]), data)
                if change is not None:
                    changes.append(change)
        return changes

    def _content_part(self, item: Item, index: Any) -> dict[str, Any] | None:
        if isinstance(index, int) and 0 <= index < len(item.content):
            return item.content[index]
        return None

    def _apply_to_item(self, item: Item, kind: str, data: Mapping[str, Any]) -> Change | None:
        if kind == "response.output_audio.delta":
            samples = data.get("_samples")
            if samples is None:
                delta = data.get("delta")
                if not isinstance(delta, str):
                    raise ValueError("response.output_audio.delta needs a base64 'delta'")
                samples = self.decode_audio(delta)
            return self._store_audio(item, samples)
        if kind == "response.output_text.delta":
            delta = str(data.get("delta", ""))
            item._text.append(delta)
            return Change(item, {"text": delta})
        if kind == "response.output_text.done":
            item._set(item._text, str(data.get("text", "")))
            return Change(item)
        if kind in (
            "response.output_audio_transcript.delta",
            "conversation.item.input_audio_transcription.delta",
        ):
            delta = str(data.get("delta") or "")
            item._transcript.append(delta)
            return Change(item, {"transcript": delta})
        if kind == "response.output_audio_transcript.done":
            item._set(item._transcript, str(data.get("transcript", "")))
            return Change(item)
        if kind == "conversation.item.input_audio_transcription.completed":
            transcript = str(data.get("transcript", ""))
            item._set(item._transcript, transcript)
            part = self._content_part(item, data.get("content_index"))
            if part is not None:
                part["transcript"] = transcript
            return Change(item, {"transcript_done": transcript})
        if kind == "conversation.item.input_audio_transcription.failed":
            error = data.get("error")
            item.transcription_error = dict(error) if isinstance(error, Mapping) else {}
            return Change(item, {"transcription_error": item.transcription_error})
        if kind == "conversation.item.input_audio_transcription.segment":
            segment = {k: data.get(k) for k in ("id", "text", "speaker", "start", "end")}
            item.transcript_segments.append(segment)
            return Change(item, {"segment": segment})
        if kind == "response.function_call_arguments.delta":
            delta = str(data.get("delta", ""))
            item._arguments.append(delta)
            return Change(item, {"arguments": delta})
        if kind == "response.function_call_arguments.done":
            item._set(item._arguments, str(data.get("arguments", "")))
            if isinstance(data.get("name"), str):
                item.name = data["name"]
            if isinstance(data.get("call_id"), str):
                item.call_id = data["call_id"]
            return Change(item)
        if kind == "response.content_part.added" or kind == "response.content_part.done":
            part = data.get("part")
            index = data.get("content_index")
            if isinstance(part, Mapping) and isinstance(index, int) and index >= 0:
                clean = {k: v for k, v in part.items() if k != "audio"}
                while len(item.content) <= index:
                    item.content.append({})
                item.content[index].update(clean)
            return Change(item)
        if kind == "conversation.item.truncated":
            end_ms = int(data.get("audio_end_ms", 0))
            self._truncate_audio(item, end_ms)
            # The server drops the transcript of a truncated item; so does the cache.
            item._transcript.clear()
            for part in item.content:
                if "transcript" in part:
                    part["transcript"] = ""
            return Change(item, {"truncated_ms": end_ms})
        return None

    def _store_audio(self, item: Item, samples: Int16Array) -> Change:
        if not isinstance(samples, np.ndarray) or samples.dtype != np.int16 or samples.ndim != 1:
            raise ValueError("conversation audio must be a 1-D int16 array")
        item.audio_samples_received += len(samples)
        if len(samples):
            item._audio.append(samples)
            self._audio_fifo.append(item)
            self._audio_held += len(samples)
            self._chunks_held += 1
            self._enforce_audio_cap()
        return Change(item, {"audio": samples})

    def _enforce_audio_cap(self) -> None:
        # Each fifo entry names the item that received a chunk, in arrival order; an item's own
        # chunks are in arrival order too, so its leftmost chunk is the one that entry meant.
        # Entries of items that lost chunks otherwise (truncated, deleted) find nothing.
        while self._audio_held > self.max_audio_samples and self._audio_fifo:
            owner = self._audio_fifo.popleft()
            if owner._audio:
                chunk = owner._audio.popleft()
                self._audio_held -= len(chunk)
                self._chunks_held -= 1
                owner.audio_samples_dropped += len(chunk)
                self.audio_samples_dropped += len(chunk)
        if len(self._audio_fifo) > 2 * self._chunks_held + 1024:
            self._audio_fifo = deque(
                owner for owner in self._audio_fifo if owner._audio and owner.id in self._items
            )

    def cut_transcript(self, item_id: str, heard_ms: int) -> None:
        """Cut an assistant item's transcript in proportion to the audio heard (an estimate
        the server will replace with an empty transcript once it confirms the truncation)."""
        item = self.get(item_id)
        if item is None or item.audio_samples_received <= 0:
            return
        total_ms = item.audio_samples_received * 1000 / self.audio_rate
        transcript = item.transcript
        keep = int(len(transcript) * min(1.0, max(0.0, heard_ms / total_ms)))
        item._set(item._transcript, transcript[:keep])

    def _truncate_audio(self, item: Item, end_ms: int) -> None:
        keep = end_ms * self.audio_rate // 1000
        item.truncated_ms = end_ms
        held = sum(len(c) for c in item._audio)
        position = item.audio_samples_received - held
        kept: deque[Int16Array] = deque()
        for chunk in item._audio:
            if position + len(chunk) <= keep:
                kept.append(chunk)
            elif position < keep:
                kept.append(chunk[: keep - position])
            position += len(chunk)
        self._audio_held -= held - sum(len(c) for c in kept)
        self._chunks_held -= len(item._audio) - len(kept)
        item._audio = kept
        item.audio_samples_received = min(item.audio_samples_received, keep)

    def _delete(self, item_id: str) -> None:
        item = self._items.pop(item_id, None)
        if item is None:
            return
        self._unlink(item_id)
        self._drop_audio_of(item)

    def _drop_audio_of(self, item: Item) -> None:
        self._audio_held -= sum(len(c) for c in item._audio)
        self._chunks_held -= len(item._audio)
        item._audio.clear()

    def _trim_items(self) -> None:
        while len(self._items) > self.max_items:
            oldest = self._order[0]
            self._unlink(oldest)
            item = self._items.pop(oldest)
            self._drop_audio_of(item)
            self.items_dropped += 1
