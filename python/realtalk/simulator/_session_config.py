"""The session config section: `session.update` and `transcription_session.update`
(protocol.md 6.1, 6.4), validated whole before anything changes."""

from __future__ import annotations

import copy
from typing import Any

from realtalk.simulator import _config as cfg
from realtalk.simulator._input_buffer import InputBuffer
from realtalk.simulator._state import SessionState
from realtalk.simulator._validate import ClientError, event_fields


class SessionConfig:
    """Answers `session.update` / `transcription_session.update`; a new turn detection or
    input format gives the input buffer a new detector."""

    def __init__(self, state: SessionState, input_buffer: InputBuffer) -> None:
        self.state = state
        self.input_buffer = input_buffer

    def on_session_update(self, event: dict[str, Any]) -> None:
        state = self.state
        schema = state.adapter.session_schema(transcription=state.transcription)
        update = event_fields(event, {"session": schema}, ("session",))["session"]
        self.apply(update)

    def on_transcription_session_update(self, event: dict[str, Any]) -> None:
        if not self.state.transcription:
            raise ClientError(
                "invalid_value",
                "transcription_session.update is only supported in transcription sessions.",
                "type",
            )
        schema = self.state.adapter.session_schema(transcription=True)
        update = event_fields(event, {"session": schema}, ("session",))["session"]
        self.apply(update)

    def apply(self, update: dict[str, Any]) -> None:
        """Check what the schema cannot (type, model, voice, tracing), then apply and announce."""
        state = self.state
        adapter = state.adapter
        config = state.config
        update = dict(update)
        adapter.take_session_type(update, config)
        if "model" in update:
            cfg.model_check(config.get("model", state.model))(
                update.pop("model"), "session.model"
            )
        update.pop("client_secret", None)
        voice = adapter.voice(update)
        if voice is not None and state.voice_locked and voice != adapter.voice(config):
            raise ClientError(
                "cannot_update_voice",
                "Cannot update a conversation's voice if assistant audio is present.",
                adapter.voice_param,
            )
        if (
            config.get("tracing") is not None
            and "tracing" in update
            and update["tracing"] != config["tracing"]
        ):
            raise ClientError(
                "invalid_value", "Tracing cannot be modified once enabled.", "session.tracing"
            )
        # Validation is complete: from here on the update applies whole.
        self.preconfigure(update)
        name = adapter.updated_event(transcription=state.transcription)
        state.emit(name, session=copy.deepcopy(config))

    def preconfigure(self, update: dict[str, Any]) -> None:
        """Apply an already validated update without announcing it (a REST-created token's
        session config, or the tail of a `session.update`)."""
        state = self.state
        adapter = state.adapter
        update = {k: v for k, v in update.items() if k not in ("type", "model", "client_secret")}
        turn = adapter.turn_detection_in(update)
        cfg.merge(state.config, update)
        if turn is not None:
            adapter.set_turn_detection(state.config, adapter.fill_turn_detection(turn[1]))
            self.input_buffer.configure_vad()
        elif adapter.input_format_changed(update):
            self.input_buffer.configure_vad()
        else:
            state.refresh_view()
