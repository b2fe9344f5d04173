"""The responses section (protocol.md 6.5, 9): `response.create` and `response.cancel`, and
the steps of a response's event cascade (message and function call items, text, transcript
and audio deltas, done, usage and rate limits). Something else decides what is said and
when: the streaming driver (`realtalk.simulator.streaming`) calls these steps."""

from __future__ import annotations

import copy
import math
from typing import Any

from realtalk.simulator import _config as cfg
from realtalk.simulator._audio_io import b64encode
from realtalk.simulator._conversation import Conversation
from realtalk.simulator._state import ResponseState, SessionState
from realtalk.simulator._validate import ClientError, event_fields, string
from realtalk.simulator.responder import FunctionCall, ResponseContext

RATE_LIMIT_TOKENS = 40000


class Responses:
    """Answers `response.create` / `response.cancel` and takes the cascade's steps; a
    response's items join the conversation (`Conversation`)."""

    def __init__(self, state: SessionState, conversation: Conversation) -> None:
        self.state = state
        self.conversation = conversation

    # ---- client events -------------------------------------------------------------------

    def on_create(self, event: dict[str, Any]) -> None:
        state = self.state
        schema = state.adapter.response_schema(self.conversation.item_check(references=True))
        fields = event_fields(event, {"response": schema})
        overrides = dict(fields.get("response") or {})
        conversation = overrides.get("conversation", "auto")
        if conversation not in ("auto", "none"):
            raise ClientError(
                "invalid_value",
                f"Invalid value: '{conversation}'. Supported values are: 'auto' and 'none'.",
                "response.conversation",
            )
        if state.transcription:
            raise ClientError(
                "invalid_value",
                "Responses are not supported in transcription sessions.",
                "type",
            )
        for reference in overrides.get("input", []):
            if reference["type"] == "item_reference" and reference["id"] not in state.items:
                raise ClientError(
                    "invalid_value",
                    f"Error creating response: the item with id '{reference['id']}' does not exist.",
                    "response.input",
                )
        if conversation == "auto" and state.active is not None:
            raise ClientError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {state.active.id}. "
                "Wait until the response is finished before creating a new one.",
            )
        self.create_response(overrides)

    def on_cancel(self, event: dict[str, Any]) -> None:
        state = self.state
        fields = event_fields(event, {"response_id": string()})
        wanted = fields.get("response_id")
        if wanted is None or state.active is not None and state.active.id == wanted:
            target = state.active
        else:
            target = state.out_of_band.get(wanted)
        if target is None or target.done:
            raise ClientError(
                "response_cancel_not_active", "Cancellation failed: no active response found"
            )
        self.cancel_response(target, "client_cancelled")

    # ---- start and end -------------------------------------------------------------------

    def create_response(self, overrides: dict[str, Any]) -> ResponseState:
        state = self.state
        conversation = overrides.get("conversation", "auto")
        effective = state.adapter.effective(state.config, overrides)
        if "input" in overrides:
            items = [
                state.items[i["id"]] if i["type"] == "item_reference" else i
                for i in overrides["input"]
            ]
        else:
            items = [state.items[i] for i in state.order]
        items = [
            {k: copy.deepcopy(v) for k, v in item.items() if not k.startswith("_")}
            for item in items
        ]
        bytes_per_ms = cfg.BYTES_PER_MS[state.input_format]
        audio_ms = {
            item_id: len(audio) / bytes_per_ms
            for (item_id, _), audio in state.audio.items()
            if state.items.get(item_id, {}).get("role") == "user"
        }
        response_id = state.ids.new("resp")
        context = ResponseContext(
            response_id=response_id,
            items=items,
            instructions=effective.instructions,
            tools=list(effective.tools),
            tool_choice=effective.tool_choice,
            audio_output=effective.audio_output,
            metadata=overrides.get("metadata"),
            conversation=conversation,
            protocol=state.protocol,
            audio_ms=audio_ms,
            session_id=state.session_id,
            session_state=state.responder_state,
        )
        text_chars = sum(
            len(part.get("text") or part.get("transcript") or "")
            for item in items
            for part in item.get("content", [])
        ) + len(effective.instructions)
        # About 4 characters of text and 100 ms of input audio a token, as the live API bills.
        text_tokens = math.ceil(text_chars / 4)
        audio_tokens = math.ceil(sum(audio_ms.values()) / 100)
        cached = (0, 0)
        if conversation == "auto":
            cached = (min(text_tokens, state.prompt_cache[0]),
                      min(audio_tokens, state.prompt_cache[1]))
            state.prompt_cache = (text_tokens, audio_tokens)
        response = ResponseState(
            id=response_id,
            conversation=conversation,
            metadata=overrides.get("metadata"),
            overrides=overrides,
            effective=effective,
            context=context,
            input_tokens=text_tokens,
            input_audio_tokens=audio_tokens,
            cached_tokens=cached,
        )
        if conversation == "auto":
            state.active = response
            state.last_response_id = response_id
        else:
            state.out_of_band[response_id] = response
        state.stats.responses += 1
        state.emit("response.created", response=self._response_object(response))
        state.new_responses.append(response)
        return response

    def cancel_response(self, response: ResponseState, reason: str) -> None:
        if response.done:
            return
        if response.open_item is not None:
            self.close_message(response, status="incomplete")
        self.finish_response(response, "cancelled", {"type": "cancelled", "reason": reason})

    def finish_response(
        self,
        response: ResponseState,
        status: str = "completed",
        details: dict[str, Any] | None = None,
    ) -> None:
        if response.done:
            return
        state = self.state
        if response.open_item is not None:
            self.close_message(
                response, status="completed" if status == "completed" else "incomplete"
            )
        self._rate_limits_before_done(response)
        response.status, response.status_details = status, details
        if state.active is response:
            state.active = None
        state.out_of_band.pop(response.id, None)
        if response.conversation == "auto":
            self._start_idle_timer(response)
        state.emit("response.done", response=self._response_object(response))
        if not state.adapter.rate_limits_before_done:
            self._rate_limits(response)

    def fail_response(self, response: ResponseState, message: str) -> None:
        self.state.emit(
            "error",
            error={
                "type": "server_error",
                "code": None,
                "message": message,
                "param": None,
                "event_id": None,
            },
        )
        self.finish_response(
            response, "failed", {"type": "failed", "error": {"type": "server_error", "code": None}}
        )

    def enforce_token_limit(self, response: ResponseState) -> bool:
        """End the response as `incomplete` once it has produced `max_output_tokens`
        (text: 4 characters a token; audio: 50 ms a token). True when it ended."""
        limit = response.effective.max_output_tokens
        if response.done or not isinstance(limit, int):
            return response.done
        produced = math.ceil(response.output_text_chars / 4) + math.ceil(
            response.output_audio_ms / 50
        )
        if produced < limit:
            return False
        self.finish_response(
            response, "incomplete", {"type": "incomplete", "reason": "max_output_tokens"}
        )
        return True

    def _start_idle_timer(self, response: ResponseState) -> None:
        # server_vad's `idle_timeout_ms` counts from the end of the reply's playback; the
        # input buffer fires it (`InputBuffer._check_idle_timeout`).
        state = self.state
        turn = state.turn_detection or {}
        if turn.get("type") == "server_vad" and turn.get("idle_timeout_ms"):
            state.idle_from_ms = state.clock_ms + response.output_audio_ms

    # ---- the cascade, step by step --------------------------------------------------------

    def open_message(self, response: ResponseState) -> None:
        if response.done or response.open_item is not None:
            return
        kind = "audio" if response.effective.audio_output else "text"
        item: dict[str, Any] = {
            "id": self.state.ids.new("item"),
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        response.open_item, response.open_kind = item, kind
        response.open_text, response.open_audio_ms = [], 0.0
        self._item_added(response, item)
        part = (
            {"type": "audio", "transcript": ""} if kind == "audio" else {"type": "text", "text": ""}
        )
        self.state.emit("response.content_part.added", **self._part_ids(response), part=part)

    def text_delta(self, response: ResponseState, delta: str) -> None:
        """Written text (text output) or the transcript of spoken audio (audio output)."""
        if response.done or not delta:
            return
        self.open_message(response)
        response.open_text.append(delta)
        response.output_text_chars += len(delta)
        adapter = self.state.adapter
        name = adapter.text_delta if response.open_kind == "text" else adapter.transcript_delta
        self.state.emit(
            name, **self._part_ids(response), delta=delta, **adapter.obfuscation(self.state.ids)
        )

    def audio_delta(self, response: ResponseState, audio: bytes) -> None:
        """Audio already in the response's output format."""
        if response.done or not audio:
            return
        state = self.state
        self.open_message(response)
        item = response.open_item
        assert item is not None
        fmt = response.effective.output_format
        ms = len(audio) / cfg.BYTES_PER_MS[fmt]
        response.open_audio_ms += ms
        response.output_audio_ms += ms
        state.stats.output_audio_bytes += len(audio)
        # Truncated or deleted while streaming: the rest is sent, not kept (see truncate).
        if (
            response.conversation == "auto"
            and not item.get("_truncated")
            and item["id"] in state.items
        ):
            key = (item["id"], 0)
            held = state.audio.get(key)
            if isinstance(held, bytearray):
                held += audio  # in place: a reply's audio is not copied again for each delta
            else:
                state.audio[key] = bytearray(held or b"") + audio
            state.voice_locked = True
            item["_format"] = fmt
        state.emit(
            state.adapter.audio_delta,
            **self._part_ids(response),
            delta=b64encode(audio),
            **state.adapter.obfuscation(state.ids),
        )

    def close_message(self, response: ResponseState, *, status: str = "completed") -> None:
        item = response.open_item
        if item is None:
            return
        state = self.state
        adapter = state.adapter
        self._rate_limits_before_done(response)
        ids = self._part_ids(response)
        text = "".join(response.open_text)
        if response.open_kind == "text":
            state.emit(adapter.text_done, **ids, text=text)
            part: dict[str, Any] = {"type": "text", "text": text}
            item["content"] = [{"type": "output_text", "text": text}]
        else:
            state.emit(adapter.audio_done, **ids)
            state.emit(adapter.transcript_done, **ids, transcript=text)
            part = {"type": "audio", "transcript": text}
            # Truncated while streaming: the conversation keeps no transcript (see truncate).
            heard = "" if item.get("_truncated") else text
            item["content"] = [{"type": "output_audio", "transcript": heard}]
        state.emit("response.content_part.done", **ids, part=part)
        item["status"] = status
        self._item_done(response, item)
        response.open_item, response.open_kind = None, None

    def function_call(self, response: ResponseState, call: FunctionCall, chunk: int = 24) -> None:
        if response.done:
            return
        state = self.state
        adapter = state.adapter
        self.close_message(response)
        item: dict[str, Any] = {
            "id": state.ids.new("item"),
            "type": "function_call",
            "status": "in_progress",
            "name": call.name,
            "call_id": call.call_id or state.ids.new("call"),
            "arguments": "",
        }
        self._item_added(response, item)
        arguments = call.arguments_json
        ids = {
            "response_id": response.id,
            "item_id": item["id"],
            "output_index": response.output.index(item),
            "call_id": item["call_id"],
        }
        for start in range(0, len(arguments), chunk):
            state.emit(
                "response.function_call_arguments.delta",
                **ids,
                delta=arguments[start : start + chunk],
                **adapter.obfuscation(state.ids),
            )
        self._rate_limits_before_done(response)
        done_fields: dict[str, Any] = dict(ids)
        if adapter.names_function_in_arguments_done:
            done_fields["name"] = call.name
        state.emit("response.function_call_arguments.done", **done_fields, arguments=arguments)
        item["arguments"] = arguments
        item["status"] = "completed"
        response.output_text_chars += len(arguments)
        self._item_done(response, item)

    def _item_added(self, response: ResponseState, item: dict[str, Any]) -> None:
        state = self.state
        wire_item = self.conversation.wire_item
        output_index = len(response.output)
        response.output.append(item)
        state.emit(
            "response.output_item.added",
            response_id=response.id,
            output_index=output_index,
            item=wire_item(item, in_conversation=False),
        )
        if response.conversation == "auto":
            previous = state.order[-1] if state.order else None
            self.conversation.insert(item, previous)
            state.emit(
                state.adapter.item_added,
                previous_item_id=previous,
                item=wire_item(item, in_conversation=True),
            )
            item["_previous"] = previous

    def _item_done(self, response: ResponseState, item: dict[str, Any]) -> None:
        state = self.state
        wire_item = self.conversation.wire_item
        previous = item.pop("_previous", None)
        if (
            response.conversation == "auto"
            and state.adapter.announces_item_done
            and item["id"] in state.items
        ):
            state.emit(
                "conversation.item.done",
                previous_item_id=previous,
                item=wire_item(item, in_conversation=True),
            )
        state.emit(
            "response.output_item.done",
            response_id=response.id,
            output_index=response.output.index(item),
            item=wire_item(item, in_conversation=False),
        )

    def _part_ids(self, response: ResponseState) -> dict[str, Any]:
        item = response.open_item
        assert item is not None
        return {
            "response_id": response.id,
            "item_id": item["id"],
            "output_index": response.output.index(item),
            "content_index": 0,
        }

    # ---- the response object, usage and rate limits ---------------------------------------

    def _response_object(self, response: ResponseState) -> dict[str, Any]:
        state = self.state
        wire_item = self.conversation.wire_item
        obj: dict[str, Any] = {
            "object": "realtime.response",
            "id": response.id,
            "status": response.status,
            "status_details": copy.deepcopy(response.status_details),
            "output": [wire_item(i, in_conversation=True) for i in response.output]
            if response.done
            else [],
            "conversation_id": state.conversation_id if response.conversation == "auto" else None,
        }
        obj |= state.adapter.response_fields(response.effective, response.overrides, state.config)
        obj["usage"] = self._usage(response) if response.done else None
        obj["metadata"] = response.metadata
        return obj

    def _usage(self, response: ResponseState) -> dict[str, Any]:
        """protocol.md §7.3: input text and audio (cached ones a subset), output text (4
        characters a token) and audio (50 ms a token, what was generated)."""
        text_out = math.ceil(response.output_text_chars / 4)
        audio_out = math.ceil(response.output_audio_ms / 50)
        text_in, audio_in = response.input_tokens, response.input_audio_tokens
        cached_text, cached_audio = response.cached_tokens
        details_in: dict[str, Any] = {"text_tokens": text_in, "audio_tokens": audio_in}
        cached: dict[str, Any] = {"text_tokens": cached_text, "audio_tokens": cached_audio}
        if self.state.adapter.usage_counts_images:
            details_in["image_tokens"] = 0
            cached["image_tokens"] = 0
        details_in["cached_tokens"] = cached_text + cached_audio
        details_in["cached_tokens_details"] = cached
        return {
            "total_tokens": text_in + audio_in + text_out + audio_out,
            "input_tokens": text_in + audio_in,
            "output_tokens": text_out + audio_out,
            "input_token_details": details_in,
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        }

    def _rate_limits(self, response: ResponseState) -> None:
        state = self.state
        state.tokens_used += self._usage(response)["total_tokens"]
        tokens = {
            "name": "tokens",
            "limit": RATE_LIMIT_TOKENS,
            "remaining": max(0, RATE_LIMIT_TOKENS - state.tokens_used),
            "reset_seconds": round(60 * state.tokens_used / RATE_LIMIT_TOKENS, 3),
        }
        state.emit("rate_limits.updated", rate_limits=state.adapter.rate_limits(tokens))

    def _rate_limits_before_done(self, response: ResponseState) -> None:
        # Once per response, before the first `.done` event, where the protocol sends them so.
        if self.state.adapter.rate_limits_before_done and not response.beta_rate_limits_sent:
            response.beta_rate_limits_sent = True
            self._rate_limits(response)
