"""The `openai` package (an independent client) completes real turns against the simulator.

The simulator runs on the test's backend (asyncio or trio); the client is openai's synchronous
Realtime client in a worker thread, so the same test runs on both backends. Every event the
client receives is validated with the package's own pydantic types (the SDK itself parses
without validating).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import anyio
import numpy as np
import pytest
from openai import OpenAI
from openai.types.beta.realtime import RealtimeServerEvent as BetaServerEvent
from openai.types.realtime import RealtimeServerEvent as GAServerEvent
from pydantic import TypeAdapter
from realtalk.simulator import Simulator

# openai's synchronous Realtime client calls websockets' connect() the pre-17.1 way; that is the
# SDK's business, not the simulator's.
pytestmark = pytest.mark.filterwarnings(
    "ignore:connect\\(\\) must be used as a context manager:DeprecationWarning"
)

GA_ADAPTER: TypeAdapter[Any] = TypeAdapter(GAServerEvent)
BETA_ADAPTER: TypeAdapter[Any] = TypeAdapter(BetaServerEvent)
RATE = 24000


def speech_like(seconds: float, *, f0: float = 150.0, level: float = 0.3) -> np.ndarray:
    """A voiced test signal built here, independently of the simulator's synthesiser."""
    t = np.arange(int(seconds * RATE)) / RATE
    tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2
    return np.round(level * 32767 * tone / 2.6 * envelope).astype(np.int16)


def collect(
    conn: Any, adapter: TypeAdapter[Any], until: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Receive raw events until ``until`` says stop; validate each with the SDK types and
    check the SDK's own parse gives the same type."""
    events: list[dict[str, Any]] = []
    while True:
        raw = json.loads(conn.recv_bytes())
        model = adapter.validate_python(raw)
        assert model.type == raw["type"]
        assert conn.parse_event(json.dumps(raw)).type == raw["type"]
        events.append(raw)
        if until(raw):
            return events


def client_for(sim: Simulator) -> OpenAI:
    return OpenAI(api_key="sk-local", websocket_base_url=sim.websocket_base_url, max_retries=0)


def types_of(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


async def test_ga_text_turn() -> None:
    async with Simulator() as sim:

        def turn() -> list[dict[str, Any]]:
            with client_for(sim).realtime.connect(model="gpt-realtime") as conn:
                first = collect(conn, GA_ADAPTER, lambda e: True)
                conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
                conn.conversation.item.create(
                    item={
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "hello simulator"}],
                    }
                )
                conn.response.create()
                return first + collect(
                    conn, GA_ADAPTER, lambda e: e["type"] == "rate_limits.updated"
                )

        events = await anyio.to_thread.run_sync(turn)
    assert events[0]["type"] == "session.created"
    done = next(e for e in events if e["type"] == "response.done")["response"]
    assert done["status"] == "completed"
    text = done["output"][0]["content"][0]
    assert text["type"] == "output_text"
    assert "hello simulator" in text["text"]
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert deltas == text["text"]


async def test_ga_audio_turn_with_server_vad() -> None:
    speech = speech_like(1.2)
    silence = np.zeros(int(0.8 * RATE), dtype=np.int16)
    lead = np.zeros(int(0.5 * RATE), dtype=np.int16)
    signal = np.concatenate([lead, speech, silence])
    async with Simulator() as sim:

        def turn() -> list[dict[str, Any]]:
            with client_for(sim).realtime.connect(model="gpt-realtime") as conn:
                events = collect(conn, GA_ADAPTER, lambda e: True)
                frame = RATE // 50  # 20 ms
                for start in range(0, len(signal), frame):
                    chunk = signal[start : start + frame].tobytes()
                    conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
                return events + collect(
                    conn, GA_ADAPTER, lambda e: e["type"] == "rate_limits.updated"
                )

        events = await anyio.to_thread.run_sync(turn)
    kinds = types_of(events)
    started = events[kinds.index("input_audio_buffer.speech_started")]
    stopped = events[kinds.index("input_audio_buffer.speech_stopped")]
    committed = events[kinds.index("input_audio_buffer.committed")]
    # The speech begins at 500 ms; the reported start includes the 300 ms prefix padding.
    assert 150 <= started["audio_start_ms"] <= 260
    # It ends at 1700 ms; the reported end includes the 200 ms silence tail (and the
    # detector's short hangover).
    assert 1900 <= stopped["audio_end_ms"] <= 2100
    assert started["item_id"] == stopped["item_id"] == committed["item_id"]
    assert kinds.index("input_audio_buffer.committed") < kinds.index("response.created")
    audio = b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )
    assert len(audio) > 0 and len(audio) % 2 == 0
    reply = np.frombuffer(audio, dtype="<i2").astype(np.float64)
    frames = reply[: len(reply) // 480 * 480].reshape(-1, 480)
    rms_db = 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) / 32768 + 1e-12)
    assert (rms_db > -30).mean() > 0.5  # mostly voiced
    assert (rms_db < -80).any()  # with pauses between words
    done = next(e for e in events if e["type"] == "response.done")["response"]
    transcript = done["output"][0]["content"][0]["transcript"]
    heard = (stopped["audio_end_ms"] - started["audio_start_ms"]) / 1000
    assert transcript == f"I heard {heard:.2f} s of speech."
    assert done["output"][0]["content"][0]["type"] == "output_audio"


WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city", "unit"],
    },
}


async def test_ga_function_call_turn() -> None:
    async with Simulator() as sim:

        def turn() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            with client_for(sim).realtime.connect(model="gpt-realtime") as conn:
                conn.session.update(
                    session={
                        "type": "realtime",
                        "output_modalities": ["text"],
                        "tools": [WEATHER_TOOL],
                        "tool_choice": "auto",
                    }
                )
                conn.conversation.item.create(
                    item={
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "Use get_weather for Oslo"}],
                    }
                )
                conn.response.create()
                first = collect(conn, GA_ADAPTER, lambda e: e["type"] == "rate_limits.updated")
                call = next(
                    e for e in first if e["type"] == "response.function_call_arguments.done"
                )
                conn.conversation.item.create(
                    item={
                        "type": "function_call_output",
                        "call_id": call["call_id"],
                        "output": json.dumps({"temp": 22}),
                    }
                )
                conn.response.create()
                second = collect(conn, GA_ADAPTER, lambda e: e["type"] == "rate_limits.updated")
                return first, second

        first, second = await anyio.to_thread.run_sync(turn)
    call = next(e for e in first if e["type"] == "response.function_call_arguments.done")
    assert call["name"] == "get_weather"
    arguments = json.loads(call["arguments"])
    assert set(arguments) == {"city", "unit"}
    assert isinstance(arguments["city"], str) and arguments["unit"] in ("c", "f")
    done = next(e for e in first if e["type"] == "response.done")["response"]
    assert done["output"][0]["type"] == "function_call"
    assert done["output"][0]["call_id"] == call["call_id"]
    assert "response.content_part.added" not in types_of(first)
    assert types_of(second)[:2] == ["conversation.item.added", "conversation.item.done"]
    reply = next(e for e in second if e["type"] == "response.done")["response"]
    assert '{"temp": 22}' in reply["output"][0]["content"][0]["text"]


async def test_beta_text_turn() -> None:
    async with Simulator() as sim:

        def turn() -> list[dict[str, Any]]:
            client = client_for(sim)
            with client.beta.realtime.connect(model="gpt-4o-realtime-preview-2024-12-17") as conn:
                conn.session.update(session={"modalities": ["text"]})
                conn.conversation.item.create(
                    item={
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "beta hello"}],
                    }
                )
                conn.response.create()
                return collect(conn, BETA_ADAPTER, lambda e: e["type"] == "response.done")

        events = await anyio.to_thread.run_sync(turn)
    assert events[0]["type"] == "session.created"
    assert events[0]["session"]["modalities"] == ["text", "audio"]
    done = events[-1]["response"]
    assert done["modalities"] == ["text"] and done["status"] == "completed"
    assert done["output"][0]["content"][0]["type"] == "text"
    assert "beta hello" in done["output"][0]["content"][0]["text"]


async def test_retired_beta_and_bad_key_close_like_the_real_server() -> None:
    from websockets.exceptions import ConnectionClosed

    async with Simulator(beta="retired", api_keys={"sk-good"}) as sim:

        def attempts() -> list[tuple[dict[str, Any], int, str]]:
            results = []
            good = OpenAI(api_key="sk-good", websocket_base_url=sim.websocket_base_url)
            bad = OpenAI(api_key="sk-wrong-key-123", websocket_base_url=sim.websocket_base_url)
            for connect in (
                lambda: good.beta.realtime.connect(model="gpt-4o-realtime-preview"),
                lambda: bad.realtime.connect(model="gpt-realtime"),
            ):
                with connect() as conn:
                    event = json.loads(conn.recv_bytes())
                    with pytest.raises(ConnectionClosed) as closed:
                        conn.recv_bytes()
                    assert closed.value.rcvd is not None
                    results.append((event, closed.value.rcvd.code, closed.value.rcvd.reason))
            return results

        (
            (beta, beta_code, beta_reason),
            (auth, auth_code, auth_reason),
        ) = await anyio.to_thread.run_sync(attempts)
    assert beta["error"]["code"] == "beta_api_shape_disabled"
    assert beta["error"]["message"] == (
        "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API."
    )
    assert (beta_code, beta_reason) == (4000, "invalid_request_error.beta_api_shape_disabled")
    assert auth["error"]["code"] == "invalid_api_key"
    assert auth["error"]["message"].startswith("Incorrect API key provided: ")
    assert "sk-wrong-key-123" not in auth["error"]["message"]
    assert (auth_code, auth_reason) == (3000, "invalid_request_error.invalid_api_key")


async def test_beta_audio_turn_with_server_vad() -> None:
    signal = np.concatenate(
        [np.zeros(RATE // 2, dtype=np.int16), speech_like(1.0), np.zeros(RATE, dtype=np.int16)]
    )
    async with Simulator() as sim:

        def turn() -> list[dict[str, Any]]:
            client = client_for(sim)
            with client.beta.realtime.connect(model="gpt-4o-realtime-preview") as conn:
                events = collect(conn, BETA_ADAPTER, lambda e: True)
                for start in range(0, len(signal), RATE // 50):
                    chunk = signal[start : start + RATE // 50].tobytes()
                    conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
                return events + collect(conn, BETA_ADAPTER, lambda e: e["type"] == "response.done")

        events = await anyio.to_thread.run_sync(turn)
    kinds = types_of(events)
    assert kinds.index("input_audio_buffer.speech_stopped") < kinds.index("response.created")
    assert "conversation.item.added" not in kinds and "conversation.item.created" in kinds
    audio = b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.audio.delta"
    )
    transcript = "".join(
        e["delta"] for e in events if e["type"] == "response.audio_transcript.delta"
    )
    done = events[-1]["response"]
    assert done["modalities"] == ["text", "audio"]
    assert done["output"][0]["content"][0] == {"type": "audio", "transcript": transcript}
    assert len(audio) > 48000  # more than half a second of reply


async def test_ga_transcription_session() -> None:
    signal = np.concatenate(
        [np.zeros(RATE // 2, dtype=np.int16), speech_like(1.0), np.zeros(RATE, dtype=np.int16)]
    )
    async with Simulator() as sim:

        def turn() -> list[dict[str, Any]]:
            client = client_for(sim)
            with client.realtime.connect(
                model="gpt-realtime", extra_query={"intent": "transcription"}
            ) as conn:
                events = collect(conn, GA_ADAPTER, lambda e: True)
                conn.session.update(
                    session={
                        "type": "transcription",
                        "audio": {"input": {"transcription": {"model": "gpt-4o-mini-transcribe"}}},
                    }
                )
                for start in range(0, len(signal), RATE // 50):
                    chunk = signal[start : start + RATE // 50].tobytes()
                    conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
                return events + collect(
                    conn,
                    GA_ADAPTER,
                    lambda e: e["type"]
                    == "conversation.item.input_audio_transcription.completed",
                )

        events = await anyio.to_thread.run_sync(turn)
    assert events[0]["session"]["type"] == "transcription"
    assert events[0]["session"]["object"] == "realtime.transcription_session"
    kinds = types_of(events)
    # gpt-4o-mini-transcribe streams its transcript word by word: one or more deltas.
    kinds = [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]]
    assert kinds[1:] == [
        "session.updated",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
    ]
    assert not any(kind.startswith("response.") for kind in kinds)
