"""The input audio buffer and turn detection section (protocol.md 6.3, 7): appends, commit and
clear, server VAD turns (speech started / stopped, barge-in, idle timeout), and the placeholder
transcription of committed audio."""

from __future__ import annotations

import math
from typing import Any

from realtalk.simulator import _config as cfg
from realtalk.simulator._audio_io import b64decode
from realtalk.simulator._conversation import Conversation
from realtalk.simulator._responses import Responses
from realtalk.simulator._state import SessionState
from realtalk.simulator._validate import ClientError, event_fields, string

MAX_APPEND_BYTES = 15 * 1024 * 1024
MIN_COMMIT_MS = 100.0


class InputBuffer:
    """Answers `input_audio_buffer.append/commit/clear` (and beta's `output_audio_buffer.clear`);
    a finished turn becomes a user item (`Conversation`) and may start or cancel a response
    (`Responses`)."""

    def __init__(
        self, state: SessionState, conversation: Conversation, responses: Responses
    ) -> None:
        self.state = state
        self.conversation = conversation
        self.responses = responses

    # ---- client events -------------------------------------------------------------------

    def on_append(self, event: dict[str, Any]) -> None:
        encoded = event.get("audio")
        if not (
            isinstance(encoded, str)
            and len(event) <= 3
            and (len(event) == 2 or "event_id" in event)
        ):  # the common shape skips the general validator, which reports the rest
            encoded = event_fields(event, {"audio": string()}, ("audio",))["audio"]
        if len(encoded) * 3 // 4 > MAX_APPEND_BYTES:
            raise ClientError(
                "invalid_value",
                "Audio content exceeds the maximum of 15 MiB per input_audio_buffer.append event.",
                "audio",
            )
        try:
            audio = b64decode(encoded)
        except ValueError:
            raise ClientError(
                "invalid_value", "Invalid 'audio'. Expected base64-encoded audio bytes.", "audio"
            ) from None
        self.append_audio(audio)

    def on_commit(self, event: dict[str, Any]) -> None:
        event_fields(event, {})
        state = self.state
        held_ms = len(state.buffer) / cfg.BYTES_PER_MS[state.input_format]
        if held_ms < MIN_COMMIT_MS:
            raise ClientError(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at least 100ms "
                f"of audio, but buffer only has {held_ms:.2f}ms of audio.",
            )
        audio = bytes(state.buffer)
        item_id = state.speech_item_id or state.ids.new("item")
        state.buffer.clear()
        state.buffer_start_ms = state.clock_ms
        state.speech_item_id = None
        self._commit(audio, item_id)

    def on_clear(self, event: dict[str, Any]) -> None:
        event_fields(event, {})
        state = self.state
        state.buffer.clear()
        state.buffer_start_ms = state.clock_ms
        state.speech_item_id = None
        self.configure_vad()
        state.emit("input_audio_buffer.cleared")

    def on_output_audio_buffer_clear(self, event: dict[str, Any]) -> None:
        event_fields(event, {})
        state = self.state
        if state.sideband:  # the server plays a call's audio out: clearing stops it
            state.emit("output_audio_buffer.cleared", response_id=state.last_response_id)
            return
        raise ClientError(
            "invalid_value",
            "output_audio_buffer.clear is only supported for WebRTC and SIP connections.",
            "type",
        )

    # ---- audio in --------------------------------------------------------------------------

    def append_audio(self, audio: bytes) -> None:
        state = self.state
        bytes_per_ms = state.input_bytes_per_ms
        state.stats.input_audio_bytes += len(audio)
        state.buffer += audio
        state.clock_ms += len(audio) / bytes_per_ms
        vad = state.vad
        if vad is not None:
            for kind, at_ms in vad.process(audio):
                if kind == "speech_started":
                    self._speech_started(state.vad_origin_ms + at_ms)
                elif kind == "speech_stopped":
                    self._speech_stopped(state.vad_origin_ms + at_ms)
        if state.idle_from_ms is not None and state.speech_item_id is None:
            self._check_idle_timeout()
        if state.vad is not None and state.speech_item_id is None:
            # Between turns only the prefix padding can still become part of an item (and,
            # while the idle timer runs, the audio it would commit).
            keep_ms = state.keep_between_turns_ms
            if state.idle_from_ms is not None:
                keep_ms = max(keep_ms, state.clock_ms - state.idle_from_ms)
            excess = int((state.clock_ms - state.buffer_start_ms - keep_ms) * bytes_per_ms)
            excess -= excess % 2
            if excess > 0:
                del state.buffer[:excess]
                state.buffer_start_ms += excess / bytes_per_ms

    def configure_vad(self) -> None:
        """A new turn detector for the current config (it changed, or the buffer was cleared)."""
        state = self.state
        state.refresh_view()
        state.idle_from_ms = None
        state.speech_item_id = None
        turn = state.turn_detection
        if turn is None or state.vad_factory is None:
            state.vad = None
            return
        state.vad = state.vad_factory(turn, state.input_format)
        state.vad_origin_ms = state.clock_ms

    # ---- turns -----------------------------------------------------------------------------

    def _speech_started(self, at_ms: float) -> None:
        state = self.state
        if state.speech_item_id is not None:
            return
        state.idle_from_ms = None
        state.speech_item_id = state.ids.new("item")
        state.speech_start_ms = max(at_ms, state.buffer_start_ms)
        state.emit(
            "input_audio_buffer.speech_started",
            audio_start_ms=int(round(at_ms)),
            item_id=state.speech_item_id,
        )
        turn = state.turn_detection or {}
        if turn.get("interrupt_response", True) and state.active is not None:
            self.responses.cancel_response(state.active, "turn_detected")

    def _speech_stopped(self, at_ms: float) -> None:
        state = self.state
        item_id = state.speech_item_id
        if item_id is None:
            return
        state.emit(
            "input_audio_buffer.speech_stopped", audio_end_ms=int(round(at_ms)), item_id=item_id
        )
        state.idle_from_ms = None
        bytes_per_ms = cfg.BYTES_PER_MS[state.input_format]
        start = int((state.speech_start_ms - state.buffer_start_ms) * bytes_per_ms)
        end = int((at_ms - state.buffer_start_ms) * bytes_per_ms)
        start, end = max(0, start - start % 2), min(len(state.buffer), end - end % 2)
        audio = bytes(state.buffer[start:end])
        del state.buffer[:end]
        state.buffer_start_ms += end / bytes_per_ms
        state.speech_item_id = None
        self._commit(audio, item_id)
        turn = state.turn_detection or {}
        if turn.get("create_response", True) and not state.transcription and state.active is None:
            self.responses.create_response({})

    def _check_idle_timeout(self) -> None:
        """`idle_timeout_ms` of input without speech after the model's last reply (and its
        playback; `Responses` starts the timer): commit the silence and ask for a response
        (protocol.md 6.3)."""
        state = self.state
        assert state.idle_from_ms is not None
        idle_ms = float((state.turn_detection or {}).get("idle_timeout_ms") or 0)
        if not idle_ms or state.active is not None:
            return
        if state.clock_ms - state.idle_from_ms < idle_ms:
            return
        start_ms = max(state.idle_from_ms, state.buffer_start_ms)
        state.idle_from_ms = None
        item_id = state.ids.new("item")
        state.emit(
            "input_audio_buffer.timeout_triggered",
            audio_start_ms=int(round(start_ms)),
            audio_end_ms=int(round(state.clock_ms)),
            item_id=item_id,
        )
        bytes_per_ms = cfg.BYTES_PER_MS[state.input_format]
        start = int((start_ms - state.buffer_start_ms) * bytes_per_ms)
        start -= start % 2
        audio = bytes(state.buffer[start:])
        state.buffer.clear()
        state.buffer_start_ms = state.clock_ms
        self._commit(audio, item_id)
        self.responses.create_response({})

    # ---- committed audio -------------------------------------------------------------------

    def _commit(self, audio: bytes, item_id: str) -> None:
        state = self.state
        order = state.order
        previous = order[-1] if order else None
        state.emit("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)
        item = {
            "id": item_id,
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        state.audio[(item_id, 0)] = audio
        self.conversation.insert(item, previous)
        self.conversation.announce(item, previous)
        if state.view["transcription"]:
            self._transcribe(item_id, audio)

    def _transcribe(self, item_id: str, audio: bytes) -> None:
        """The committed audio's transcript (its length: the simulator hears no words), as the
        model sends it (protocol.md §5): whisper-1 in one delta with duration usage; the
        gpt-4o family word by word with token usage; the diarizing model adds a segment."""
        state = self.state
        model = (state.view["transcription"] or {}).get("model")
        seconds = len(audio) / cfg.BYTES_PER_MS[state.input_format] / 1000
        transcript = f"({seconds:.2f} s of speech)"
        words = transcript.split(" ")
        deltas = [transcript] if model == "whisper-1" else [
            word if index == 0 else " " + word for index, word in enumerate(words)]
        for delta in deltas:
            state.emit(
                "conversation.item.input_audio_transcription.delta",
                item_id=item_id,
                content_index=0,
                delta=delta,
            )
        if model == "gpt-4o-transcribe-diarize":
            state.emit(
                "conversation.item.input_audio_transcription.segment",
                item_id=item_id,
                content_index=0,
                id=state.ids.new("seg"),
                text=transcript,
                speaker="spk_1",
                start=0.0,
                end=round(seconds, 3),
            )
        usage: dict[str, Any]
        if model == "whisper-1":
            usage = {"type": "duration", "seconds": round(seconds, 3)}
        else:
            audio_tokens = max(1, math.ceil(seconds * 10))
            text_tokens = max(1, math.ceil(len(transcript) / 4))
            usage = {
                "type": "tokens",
                "total_tokens": audio_tokens + text_tokens,
                "input_tokens": audio_tokens,
                "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
                "output_tokens": text_tokens,
            }
        state.emit(
            "conversation.item.input_audio_transcription.completed",
            item_id=item_id,
            content_index=0,
            transcript=transcript,
            usage=usage,
        )
        state.items[item_id]["content"][0]["transcript"] = transcript
