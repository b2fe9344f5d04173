"""The conversation items section (protocol.md 6.6, 6.7): `conversation.item.create`,
`.retrieve`, `.delete` and `.truncate`, the item schema and its role rules, and how an item
is shown on the wire."""

from __future__ import annotations

from typing import Any

from realtalk.simulator import _config as cfg
from realtalk.simulator._audio_io import b64decode
from realtalk.simulator._state import SessionState
from realtalk.simulator._validate import (
    Check,
    ClientError,
    Obj,
    anything,
    array,
    enum,
    event_fields,
    integer,
    nullable,
    string,
    tagged,
)

_ITEM_VERBS = {"retrieve": "retrieving", "delete": "deleting", "truncate": "truncating"}


class Conversation:
    """Answers `conversation.item.*`; keeps the item order and shows items on the wire."""

    def __init__(self, state: SessionState) -> None:
        self.state = state

    # ---- the item schema -----------------------------------------------------------------

    def _content_check(self) -> Check:
        text = Obj({"type": anything(), "text": string()}, ("text",))
        audio_in = Obj({"type": anything(), "audio": string(), "transcript": nullable(string())})
        variants: dict[str, Check] = {"input_text": text, "input_audio": audio_in}
        variants |= self.state.adapter.content_variants(text)
        return tagged("type", variants)

    def item_check(self, *, references: bool = False) -> Check:
        """The check of a client item (``references``: `item_reference` too, as in a
        response's `input`)."""
        common: dict[str, Check] = {
            "id": string(max_length=64),
            "type": anything(),
            "object": enum("realtime.item"),
            "status": enum("completed", "incomplete", "in_progress"),
        }
        message = Obj(
            common
            | {
                "role": enum("user", "assistant", "system"),
                "content": array(self._content_check()),
            },
            ("role", "content"),
        )
        function_call = Obj(
            common | {"call_id": string(), "name": string(), "arguments": string()},
            ("name", "arguments"),
        )
        output = Obj(common | {"call_id": string(), "output": string()}, ("call_id", "output"))
        variants: dict[str, Check] = {
            "message": message,
            "function_call": function_call,
            "function_call_output": output,
        }
        if references:
            variants["item_reference"] = Obj({"type": anything(), "id": string()}, ("id",))
        union = tagged("type", variants)

        def check(value: Any, path: str) -> Any:
            item = union(value, path)
            if item["type"] == "message":
                self._check_roles(item, path)
            return item

        return check

    def _check_roles(self, item: dict[str, Any], path: str) -> None:
        role = item["role"]
        assistant_kind = self.state.adapter.assistant_text_type
        for index, part in enumerate(item["content"]):
            kind = part["type"]
            where = f"{path}.content[{index}].type"
            if role == "user" and kind not in (
                "input_text",
                "input_audio",
                "input_image",
                "item_reference",
            ):
                raise ClientError(
                    "invalid_value",
                    f"Invalid value: '{kind}'. Supported values are: 'input_text' and 'input_audio'.",
                    where,
                )
            if role == "system" and kind != "input_text":
                raise ClientError(
                    "invalid_value", f"Invalid value: '{kind}'. Value must be 'input_text'.", where
                )
            if role == "assistant" and kind != assistant_kind:
                raise ClientError(
                    "invalid_value",
                    f"Invalid value: '{kind}'. Value must be '{assistant_kind}'.",
                    where,
                )

    # ---- client events -------------------------------------------------------------------

    def on_create(self, event: dict[str, Any]) -> None:
        state = self.state
        fields = event_fields(
            event,
            {"previous_item_id": nullable(string()), "item": self.item_check()},
            ("item",),
        )
        item = dict(fields["item"])
        previous = fields.get("previous_item_id")
        if previous is not None and previous != "root" and previous not in state.items:
            raise ClientError(
                "invalid_value",
                f"Error adding item: the previous item with id '{previous}' does not exist.",
                "previous_item_id",
            )
        if "id" in item and item["id"] in state.items:
            raise ClientError(
                "item_create_duplicate_item_id",
                f"Error adding item: an item with id '{item['id']}' already exists.",
            )
        if item["type"] == "function_call_output" and not any(
            other.get("type") == "function_call" and other.get("call_id") == item["call_id"]
            for other in state.items.values()
        ):
            raise ClientError(
                "invalid_value",
                f"No tool call found for function call output with call_id {item['call_id']}.",
                "item.call_id",
            )
        # Accepted: normalise to the server's stored shape.
        item.setdefault("id", state.ids.new("item"))
        item.pop("object", None)
        item["status"] = "completed"
        if item["type"] == "function_call":
            item.setdefault("call_id", state.ids.new("call"))
        if item["type"] == "message":
            content = []
            for index, part in enumerate(item["content"]):
                part = dict(part)
                if part["type"] == "input_audio":
                    try:
                        audio = b64decode(part.pop("audio", "") or "")
                    except ValueError:
                        raise ClientError(
                            "invalid_value",
                            "Invalid 'audio'. Expected base64-encoded audio bytes.",
                            f"item.content[{index}].audio",
                        ) from None
                    state.audio[(item["id"], index)] = audio
                    part.setdefault("transcript", None)
                content.append(part)
            item["content"] = content
        if previous is None:
            previous = state.order[-1] if state.order else None
        self.insert(item, previous)
        self.announce(item, None if previous == "root" else previous)

    def on_retrieve(self, event: dict[str, Any]) -> None:
        item_id = event_fields(event, {"item_id": string()}, ("item_id",))["item_id"]
        item = self._item_or_error(item_id, "retrieve")
        self.state.emit(
            "conversation.item.retrieved",
            item=self.wire_item(item, in_conversation=False, with_audio=True),
        )

    def on_delete(self, event: dict[str, Any]) -> None:
        state = self.state
        item_id = event_fields(event, {"item_id": string()}, ("item_id",))["item_id"]
        self._item_or_error(item_id, "delete")
        state.order.remove(item_id)
        state.items.pop(item_id)
        # By key, not by content: a reply item still streaming has audio but no content yet.
        for key in [key for key in state.audio if key[0] == item_id]:
            del state.audio[key]
        state.emit("conversation.item.deleted", item_id=item_id)

    def on_truncate(self, event: dict[str, Any]) -> None:
        state = self.state
        fields = event_fields(
            event,
            {"item_id": string(), "content_index": integer(0), "audio_end_ms": integer(0)},
            ("item_id", "content_index", "audio_end_ms"),
        )
        item_id, index, end_ms = fields["item_id"], fields["content_index"], fields["audio_end_ms"]
        item = self._item_or_error(item_id, "truncate")
        # Audio the model has produced for this item so far: the live server truncates an item
        # that is still streaming too (only audio not yet sent is out of reach). An item with
        # no model audio at all, a user item or one interrupted before its first audio delta,
        # is refused as a whole.
        audio = state.audio.get((item_id, index))
        if item.get("type") != "message" or item.get("role") != "assistant" or not any(
            key[0] == item_id for key in state.audio
        ):
            raise ClientError(
                "unsupported_content_type", "Only model output audio messages can be truncated"
            )
        if audio is None:
            raise ClientError(
                "invalid_value",
                f"Invalid 'content_index': no audio content at index {index}.",
                "content_index",
            )
        out_format = item.get("_format", "pcm16")
        bytes_per_ms = cfg.BYTES_PER_MS[out_format]
        held_ms = len(audio) / bytes_per_ms
        if end_ms > held_ms:
            raise ClientError(
                "invalid_value",
                f"Audio content of {int(held_ms)}ms is already shorter than {end_ms}ms",
                "audio_end_ms",
            )
        cut = int(end_ms * bytes_per_ms)
        state.audio[(item_id, index)] = audio[: cut - cut % 2 if out_format == "pcm16" else cut]
        # A streaming item keeps what was heard: later deltas still go out (nothing cancelled
        # the response) but no longer enter the conversation, nor does their transcript.
        item["_truncated"] = True
        content = item["content"]
        if index < len(content):
            content[index]["transcript"] = ""
        state.emit(
            "conversation.item.truncated", item_id=item_id, content_index=index, audio_end_ms=end_ms
        )

    def _item_or_error(self, item_id: str, action: str) -> dict[str, Any]:
        """The item, or the live error for an unknown id: a code per action
        (`item_retrieve_invalid_item_id` ...) and no `param`. pipecat matches on the retrieve
        code to fail its pending retrieve."""
        item = self.state.items.get(item_id)
        if item is None:
            raise ClientError(
                f"item_{action}_invalid_item_id",
                f"Error {_ITEM_VERBS[action]} item: the item with id '{item_id}' does not "
                "exist.",
            )
        return item

    # ---- the conversation ----------------------------------------------------------------

    def insert(self, item: dict[str, Any], previous: str | None) -> None:
        """Put an item after ``previous`` (None: at the end; "root": first)."""
        order = self.state.order
        if previous is None or previous == "root":
            index = 0 if previous == "root" else len(order)
        else:
            index = order.index(previous) + 1
        order.insert(index, item["id"])
        self.state.items[item["id"]] = item

    def announce(self, item: dict[str, Any], previous: str | None) -> None:
        """Say that a whole item joined the conversation."""
        wire = self.wire_item(item, in_conversation=True)
        self.state.adapter.announce_item(self.state.emit, wire, previous)

    def wire_item(
        self, item: dict[str, Any], *, in_conversation: bool, with_audio: bool = False
    ) -> dict[str, Any]:
        """An item as this connection's protocol shows it (see `ProtocolAdapter.wire_item`)."""
        return self.state.adapter.wire_item(
            item, self.state.audio, in_conversation=in_conversation, with_audio=with_audio
        )
