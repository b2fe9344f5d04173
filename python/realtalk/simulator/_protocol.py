"""GA and beta in one place: everything the two protocol versions do differently, as seen by
the simulated server (protocol.md section 2). The session's sections ask the connection's
`ProtocolAdapter` (`GA` or `BETA`) instead of testing the version themselves."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Literal

from realtalk.simulator import _config as cfg
from realtalk.simulator._audio_io import b64encode
from realtalk.simulator._ids import IdFactory
from realtalk.simulator._validate import (
    Check,
    ClientError,
    Obj,
    anything,
    enum,
    nullable,
    string,
)

Protocol = Literal["ga", "beta"]
Emit = Callable[..., None]


class ProtocolAdapter:
    """What differs between GA and beta. Subclasses fill in the names and shapes."""

    name: Protocol
    client_types: tuple[str, ...]
    # Event names of the response cascade.
    text_delta: str
    text_done: str
    transcript_delta: str
    transcript_done: str
    audio_delta: str
    audio_done: str
    # The content type an assistant message carries in `conversation.item.create`.
    assistant_text_type: str
    # Where the session config keeps the voice (for `cannot_update_voice`'s param).
    voice_param: str

    # ---- session config ------------------------------------------------------------------

    def default_session(
        self, session_id: str, model: str, expires_at: int, *, transcription: bool
    ) -> dict[str, Any]:
        raise NotImplementedError

    def session_schema(self, *, transcription: bool) -> Check:
        raise NotImplementedError

    def created_event(self, *, transcription: bool) -> str:
        return "session.created"

    def updated_event(self, *, transcription: bool) -> str:
        return "session.updated"

    def take_session_type(self, update: dict[str, Any], session: dict[str, Any]) -> None:
        """Refuse an update that changes the session's type (GA names it in every update)."""

    def voice(self, config: dict[str, Any]) -> Any:
        """The voice in a session config or an update to it (None when absent)."""
        raise NotImplementedError

    def turn_detection_in(self, update: dict[str, Any]) -> tuple[bool, Any] | None:
        """``(True, value)`` when the update sets turn detection (value may be None: off)."""
        raise NotImplementedError

    def set_turn_detection(self, session: dict[str, Any], value: dict[str, Any] | None) -> None:
        raise NotImplementedError

    def input_format_changed(self, update: dict[str, Any]) -> bool:
        raise NotImplementedError

    def fill_turn_detection(self, value: dict[str, Any] | None) -> dict[str, Any] | None:
        """The turn detection the server reports for ``value``: its type's defaults filled in."""
        raise NotImplementedError

    def session_view(self, session: dict[str, Any]) -> dict[str, Any]:
        """Input-side facts of a session config: format, turn detection, transcription."""
        raise NotImplementedError

    # ---- items ---------------------------------------------------------------------------

    def content_variants(self, text: Check) -> dict[str, Check]:
        """The content part types of `conversation.item.create` beyond input text and audio."""
        raise NotImplementedError

    def wire_item(
        self,
        item: dict[str, Any],
        audio: dict[tuple[str, int], bytes | bytearray],
        *,
        in_conversation: bool,
        with_audio: bool = False,
    ) -> dict[str, Any]:
        """An item as this protocol shows it: GA omits `object` in conversation events; beta
        names assistant content `text` / `audio`."""
        wire: dict[str, Any] = {"id": item["id"]}
        if self.shows_object(in_conversation):
            wire["object"] = "realtime.item"
        for key, value in item.items():
            if key == "id" or key.startswith("_"):
                continue
            if key == "content":
                parts = []
                for index, part in enumerate(value):
                    part = dict(part)
                    part["type"] = self.content_type(part["type"])
                    if with_audio and (item["id"], index) in audio:
                        part["audio"] = b64encode(audio[(item["id"], index)])
                    parts.append(part)
                wire["content"] = parts
            else:
                wire[key] = copy.deepcopy(value)
        return wire

    def shows_object(self, in_conversation: bool) -> bool:
        raise NotImplementedError

    def content_type(self, stored: str) -> str:
        return stored

    def announce_item(self, emit: Emit, wire: dict[str, Any], previous: str | None) -> None:
        """The events that say an item joined the conversation whole (client-created or
        committed input audio)."""
        raise NotImplementedError

    item_added: str  # a response's item joins the conversation
    announces_item_done: bool  # ... and says so again when it is complete

    # ---- responses -----------------------------------------------------------------------

    def obfuscation(self, ids: IdFactory) -> dict[str, str]:
        return {}

    names_function_in_arguments_done: bool

    def response_schema(self, item_check: Check) -> Check:
        """The `response.create` ``response`` object's schema, items checked by ``item_check``."""
        raise NotImplementedError

    def effective(
        self, session: dict[str, Any], overrides: dict[str, Any] | None = None
    ) -> cfg.Effective:
        """What a response runs with: a `response.create`'s ``overrides`` over the session."""
        raise NotImplementedError

    def response_fields(
        self,
        effective: cfg.Effective,
        overrides: dict[str, Any],
        session: dict[str, Any],
    ) -> dict[str, Any]:
        """The protocol's own fields of a response object (modalities, voice, format ...)."""
        raise NotImplementedError

    usage_counts_images: bool

    def rate_limits(self, tokens: dict[str, Any]) -> list[dict[str, Any]]:
        return [tokens]

    # Beta sent rate_limits.updated near the end, before the `.done` cascade (2025 trace); GA
    # sends it after response.done.
    rate_limits_before_done: bool

    # Beta warned with a `session_expired` error before closing at the session limit.
    warns_before_expiry: bool


class _Ga(ProtocolAdapter):
    name: Protocol = "ga"
    client_types = (
        "session.update",
        "session.close",
        "input_audio_buffer.append",
        "session.input_audio_buffer.append",
        "input_audio_buffer.commit",
        "input_audio_buffer.clear",
        "conversation.item.create",
        "conversation.item.truncate",
        "conversation.item.delete",
        "conversation.item.retrieve",
        "response.create",
        "response.cancel",
    )
    text_delta = "response.output_text.delta"
    text_done = "response.output_text.done"
    transcript_delta = "response.output_audio_transcript.delta"
    transcript_done = "response.output_audio_transcript.done"
    audio_delta = "response.output_audio.delta"
    audio_done = "response.output_audio.done"
    assistant_text_type = "output_text"
    voice_param = "session.audio.output.voice"
    item_added = "conversation.item.added"
    announces_item_done = True
    names_function_in_arguments_done = True
    usage_counts_images = True
    rate_limits_before_done = False
    warns_before_expiry = False

    def default_session(
        self, session_id: str, model: str, expires_at: int, *, transcription: bool
    ) -> dict[str, Any]:
        return cfg.ga_default_session(session_id, model, expires_at, transcription=transcription)

    def session_schema(self, *, transcription: bool) -> Check:
        if transcription:
            return cfg.ga_transcription_session_schema()
        return cfg.ga_session_schema()

    def take_session_type(self, update: dict[str, Any], session: dict[str, Any]) -> None:
        wanted = update.pop("type")
        if wanted != session["type"]:
            raise ClientError(
                "invalid_value",
                f"Invalid value: '{wanted}'. A {session['type']} session cannot change its type.",
                "session.type",
            )

    def voice(self, config: dict[str, Any]) -> Any:
        return config.get("audio", {}).get("output", {}).get("voice")

    def turn_detection_in(self, update: dict[str, Any]) -> tuple[bool, Any] | None:
        audio_in = update.get("audio", {}).get("input", {})
        return (True, audio_in["turn_detection"]) if "turn_detection" in audio_in else None

    def set_turn_detection(self, session: dict[str, Any], value: dict[str, Any] | None) -> None:
        session["audio"]["input"]["turn_detection"] = value

    def input_format_changed(self, update: dict[str, Any]) -> bool:
        return "format" in update.get("audio", {}).get("input", {})

    def fill_turn_detection(self, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return cfg.fill_turn_detection(value, cfg.SERVER_VAD_DEFAULT)

    def session_view(self, session: dict[str, Any]) -> dict[str, Any]:
        return cfg.ga_session_view(session)

    def response_schema(self, item_check: Check) -> Check:
        return cfg.ga_response_schema(item_check)

    def effective(
        self, session: dict[str, Any], overrides: dict[str, Any] | None = None
    ) -> cfg.Effective:
        return cfg.ga_effective(session, overrides)

    def content_variants(self, text: Check) -> dict[str, Check]:
        audio = Obj({"type": anything(), "audio": string(), "transcript": nullable(string())})
        return {
            "input_image": Obj(
                {"type": anything(), "image_url": string(), "detail": enum("auto", "low", "high")}
            ),
            "output_text": text,
            # Not valid for any role in GA; accepted here so the role check gives the live,
            # role-specific refusal.
            "text": text,
            "output_audio": audio,
        }

    def shows_object(self, in_conversation: bool) -> bool:
        return not in_conversation

    def announce_item(self, emit: Emit, wire: dict[str, Any], previous: str | None) -> None:
        emit("conversation.item.added", previous_item_id=previous, item=wire)
        emit("conversation.item.done", previous_item_id=previous, item=copy.deepcopy(wire))

    def obfuscation(self, ids: IdFactory) -> dict[str, str]:
        return {"obfuscation": ids.token(12)}

    def response_fields(
        self, effective: cfg.Effective, overrides: dict[str, Any], session: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "output_modalities": ["audio"] if effective.audio_output else ["text"],
            "max_output_tokens": effective.max_output_tokens,
            "audio": {
                "output": {
                    "format": cfg.format_to_ga(effective.output_format),
                    "voice": effective.voice,
                }
            },
        }


class _Beta(ProtocolAdapter):
    name: Protocol = "beta"
    client_types = (
        "session.update",
        "transcription_session.update",
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "input_audio_buffer.clear",
        "conversation.item.create",
        "conversation.item.truncate",
        "conversation.item.delete",
        "conversation.item.retrieve",
        "response.create",
        "response.cancel",
        "output_audio_buffer.clear",
    )
    text_delta = "response.text.delta"
    text_done = "response.text.done"
    transcript_delta = "response.audio_transcript.delta"
    transcript_done = "response.audio_transcript.done"
    audio_delta = "response.audio.delta"
    audio_done = "response.audio.done"
    assistant_text_type = "text"
    voice_param = "session.voice"
    item_added = "conversation.item.created"
    announces_item_done = False
    names_function_in_arguments_done = False
    usage_counts_images = False
    rate_limits_before_done = True
    warns_before_expiry = True

    def default_session(
        self, session_id: str, model: str, expires_at: int, *, transcription: bool
    ) -> dict[str, Any]:
        if transcription:
            return cfg.beta_default_transcription_session(session_id, expires_at)
        return cfg.beta_default_session(session_id, model, expires_at)

    def session_schema(self, *, transcription: bool) -> Check:
        if transcription:
            return cfg.beta_transcription_session_schema()
        return cfg.beta_session_schema()

    def created_event(self, *, transcription: bool) -> str:
        return "transcription_session.created" if transcription else "session.created"

    def updated_event(self, *, transcription: bool) -> str:
        return "transcription_session.updated" if transcription else "session.updated"

    def voice(self, config: dict[str, Any]) -> Any:
        return config.get("voice")

    def turn_detection_in(self, update: dict[str, Any]) -> tuple[bool, Any] | None:
        return (True, update["turn_detection"]) if "turn_detection" in update else None

    def set_turn_detection(self, session: dict[str, Any], value: dict[str, Any] | None) -> None:
        session["turn_detection"] = value

    def input_format_changed(self, update: dict[str, Any]) -> bool:
        return "input_audio_format" in update

    def fill_turn_detection(self, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return cfg.fill_turn_detection(value, cfg.SERVER_VAD_DEFAULT_BETA)

    def session_view(self, session: dict[str, Any]) -> dict[str, Any]:
        return cfg.beta_session_view(session)

    def response_schema(self, item_check: Check) -> Check:
        return cfg.beta_response_schema(item_check)

    def effective(
        self, session: dict[str, Any], overrides: dict[str, Any] | None = None
    ) -> cfg.Effective:
        return cfg.beta_effective(session, overrides)

    def content_variants(self, text: Check) -> dict[str, Check]:
        return {
            "text": text,
            "audio": Obj({"type": anything(), "audio": string(), "transcript": nullable(string())}),
            "item_reference": Obj({"type": anything(), "id": string()}, ("id",)),
        }

    def shows_object(self, in_conversation: bool) -> bool:
        return True

    def content_type(self, stored: str) -> str:
        return {"output_text": "text", "output_audio": "audio"}.get(stored, stored)

    def announce_item(self, emit: Emit, wire: dict[str, Any], previous: str | None) -> None:
        emit("conversation.item.created", previous_item_id=previous, item=wire)

    def response_fields(
        self, effective: cfg.Effective, overrides: dict[str, Any], session: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "modalities": ["text", "audio"] if effective.audio_output else ["text"],
            "voice": effective.voice,
            "output_audio_format": effective.output_format,
            "temperature": overrides.get("temperature", session.get("temperature", 0.8)),
            "max_output_tokens": effective.max_output_tokens,
        }

    def rate_limits(self, tokens: dict[str, Any]) -> list[dict[str, Any]]:
        requests = {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012}
        return [requests, tokens]


GA: ProtocolAdapter = _Ga()
BETA: ProtocolAdapter = _Beta()
ADAPTERS: dict[str, ProtocolAdapter] = {"ga": GA, "beta": BETA}
