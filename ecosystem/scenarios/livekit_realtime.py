"""livekit-agents with livekit-plugins-openai: the plugin's RealtimeModel / RealtimeSession
(the object an AgentSession drives), pointed at the simulator by ``base_url`` only.

The session emits every raw server event as ``openai_server_event_received`` (its public hook);
the plugin reads events with the openai package's GA models (``construct``, no validation), so
the script validates each with that package's `RealtimeServerEvent` union. The session's
``error`` events are findings. Where an AgentSession would act (running a tool and asking for
the follow-up, cutting the reply on barge-in) the script makes the same calls the agent
activity makes: ``update_chat_ctx`` with the tool output, ``generate_reply()`` without
instructions, ``interrupt()`` then ``truncate()`` at the played length.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import common
from livekit import rtc
from livekit.agents import llm
from livekit.plugins.openai.realtime import RealtimeModel
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

SCENARIOS = ["text", "audio", "tool", "barge_in"]
weather_calls: list[str] = []


@llm.function_tool(name=common.TOOL_NAME)
async def get_weather(city: str) -> str:
    """The weather in a city.

    Args:
        city: the city
    """
    weather_calls.append(city)
    return f"sunny in {city}, 21 C"


def main() -> int:
    args = common.parse_args(SCENARIOS)
    report = common.Report(args.scenario, ["livekit-agents", "livekit-plugins-openai", "openai",
                                           "aiohttp", "pydantic"])
    adapter: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
    session_errors: list[str] = []
    report.outcome["session_errors"] = session_errors
    # The plugin logs, and skips, an event its handlers fail on ("failed to handle event").
    report.capture_logging("livekit")

    async def scenario() -> None:
        http_url = args.url.replace("ws://", "http://", 1) + "/v1"
        async with aiohttp.ClientSession() as http:
            # Text turns in text; the audio turn and the barge-in in the plugin's defaults.
            text_only = args.scenario in ("text", "tool")
            model = RealtimeModel(
                base_url=http_url, api_key="sk-ecosystem", http_session=http,
                **({"modalities": ["text"]} if text_only else {}))
            session = model.session()
            session.on("openai_server_event_received",
                       lambda event: report.record(event, adapter.validate_python))
            session.on("error", lambda error: session_errors.append(repr(error)[:2000]))
            try:
                await report.wait_for("session.updated", 5)
                await SCENARIO_STEPS[args.scenario](session, report, args)
                report.outcome["tool_calls"] = list(weather_calls)
            finally:
                await session.aclose()
                await model.aclose()

    return common.run(report, args.report, scenario)


async def say(session: Any, text: str) -> None:
    """Put a user message into the remote context (as the agent activity does)."""
    chat_ctx = session.chat_ctx.copy()
    chat_ctx.add_message(role="user", content=text)
    await session.update_chat_ctx(chat_ctx)


def drain(generation: llm.GenerationCreatedEvent) -> list[llm.FunctionCall]:
    """Consume a generation's streams (as the agent's playout would); returns the calls."""
    calls: list[llm.FunctionCall] = []

    async def messages() -> None:
        async for message in generation.message_stream:
            async for _ in message.text_stream:
                pass
            async for _ in message.audio_stream:
                pass

    async def functions() -> None:
        async for call in generation.function_stream:
            calls.append(call)

    asyncio.get_running_loop().create_task(messages())
    asyncio.get_running_loop().create_task(functions())
    return calls


async def text_turn(session: Any, report: common.Report, args: Any) -> None:
    await say(session, common.TEXT_PROMPT)
    drain(await session.generate_reply())
    done = await report.wait_for("response.done", 10)
    report.outcome["status"] = done["response"]["status"]


async def audio_turn(session: Any, report: common.Report, args: Any) -> None:
    """Audio frames at real-time pace through push_audio; the server's VAD takes the turn."""

    async def push(frame: bytes) -> None:
        session.push_audio(rtc.AudioFrame(frame, sample_rate=common.RATE, num_channels=1,
                                          samples_per_channel=len(frame) // 2))

    await common.paced(common.speech_frames(args.speech), push)
    done = await report.wait_for("response.done", 10)
    report.outcome["status"] = done["response"]["status"]


async def tool_turn(session: Any, report: common.Report, args: Any) -> None:
    """The tool runs as livekit's function tool; its output goes back through update_chat_ctx
    and the follow-up is a generate_reply() with no instructions (response.create sends
    ``"instructions": null``, the plugin's way)."""
    await session.update_tools([get_weather])
    await say(session, common.TOOL_PROMPT)
    calls = drain(await session.generate_reply())
    await report.wait_for("response.done", 10)
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    (call,) = calls
    output = await get_weather(**json.loads(call.arguments))
    chat_ctx = session.chat_ctx.copy()
    chat_ctx.items.append(llm.FunctionCallOutput(call_id=call.call_id, name=call.name,
                                                 output=output, is_error=False))
    await session.update_chat_ctx(chat_ctx)
    after = len(report.events)
    drain(await session.generate_reply())
    follow_up = await report.wait_for("response.done", 10, after=after)
    report.outcome["status"] = follow_up["response"]["status"]


async def barge_in(session: Any, report: common.Report, args: Any) -> None:
    """livekit's barge-in: ``interrupt()`` (response.cancel) then ``truncate()`` at the played
    length, while the reply audio streams."""
    await say(session, common.LONG_PROMPT)
    drain(await session.generate_reply())
    first = await report.wait_for("response.output_audio.delta", 10)
    started = time.monotonic()
    await asyncio.sleep(0.4)
    report.outcome["interrupted_at"] = len(report.events)
    played_ms = int((time.monotonic() - started) * 1000)
    session.interrupt()
    session.truncate(message_id=first["item_id"], modalities=["audio"], audio_end_ms=played_ms)
    truncated = await report.wait_for("conversation.item.truncated", 5)
    done = await report.wait_for("response.done", 5)
    report.outcome.update(truncated=truncated, played_ms=played_ms,
                          status=done["response"]["status"])


SCENARIO_STEPS = {"text": text_turn, "audio": audio_turn, "tool": tool_turn,
                  "barge_in": barge_in}

if __name__ == "__main__":
    raise SystemExit(main())
