"""openai-agents (`agents.realtime`): a RealtimeAgent run by RealtimeRunner over the SDK's own
OpenAIRealtimeWebSocketModel, pointed at the simulator by ``model_config["url"]`` only.

The SDK forwards every server event as a ``raw_server_event`` before it validates it with its
own TypeAdapter; a rejected event comes back as a session ``error`` event. The script records the
raw events, validates each again with the SDK's adapter (``get_server_event_type_adapter``), and
counts every session ``error`` event (a validation failure or a server error) as a finding.
"""

from __future__ import annotations

import asyncio
from typing import Any

import common
from agents import function_tool
from agents.realtime import RealtimeAgent, RealtimeRunner
from agents.realtime.openai_realtime import get_server_event_type_adapter

SCENARIOS = ["text", "audio", "tool", "barge_in", "vad_barge_in"]
weather_calls: list[str] = []


@function_tool(name_override=common.TOOL_NAME)
def get_weather(city: str) -> str:
    """The weather in a city."""
    weather_calls.append(city)
    return f"sunny in {city}, 21 C"


def main() -> int:
    args = common.parse_args(SCENARIOS)
    report = common.Report(args.scenario, ["openai-agents", "openai", "websockets", "pydantic"])
    adapter = get_server_event_type_adapter()
    session_errors: list[str] = []
    report.outcome["session_errors"] = session_errors
    report.capture_logging("openai.agents")

    async def scenario() -> None:
        settings: dict[str, Any] = {"model_name": "gpt-realtime"}
        if args.scenario in ("text", "tool"):
            settings["output_modalities"] = ["text"]
        if args.scenario == "audio":
            settings["turn_detection"] = {"type": "server_vad"}
        agent = RealtimeAgent(name="ecosystem", instructions="Be brief.",
                              tools=[get_weather] if args.scenario == "tool" else [])
        runner = RealtimeRunner(agent, config={"model_settings": settings})
        session = await runner.run(model_config={
            "url": f"{args.url}/v1/realtime?model=gpt-realtime", "api_key": "sk-ecosystem"})
        async with session:

            async def receive() -> None:
                async for event in session:
                    if event.type == "raw_model_event" and event.data.type == "raw_server_event":
                        report.record(event.data.data, adapter.validate_python)
                    elif event.type == "error":
                        session_errors.append(repr(event.error)[:2000])

            receiver = asyncio.create_task(receive())
            try:
                await report.wait_for("session.updated", 5)
                await SCENARIO_STEPS[args.scenario](session, report, args)
            finally:
                receiver.cancel()

    return common.run(report, args.report, scenario)


async def text_turn(session: Any, report: common.Report, args: Any) -> None:
    await session.send_message(common.TEXT_PROMPT)
    done = await report.wait_for("response.done", 10)
    report.outcome["status"] = done["response"]["status"]


async def audio_turn(session: Any, report: common.Report, args: Any) -> None:
    frames = common.speech_frames(args.speech)
    await common.paced(frames, session.send_audio)
    done = await report.wait_for("response.done", 10)
    report.outcome["status"] = done["response"]["status"]
    report.outcome["sent_ms"] = len(frames) * common.FRAME_MS


async def tool_turn(session: Any, report: common.Report, args: Any) -> None:
    """The SDK runs the tool itself and sends its output with a new response.create."""
    await session.send_message(common.TOOL_PROMPT)
    await report.wait_for("response.done", 10,
                          where=lambda e: any(i["type"] == "function_call"
                                              for i in e["response"]["output"]))
    follow_up = await report.wait_for(
        "response.done", 10,
        where=lambda e: any(i["type"] == "message" for i in e["response"]["output"]))
    report.outcome["status"] = follow_up["response"]["status"]
    report.outcome["tool_calls"] = list(weather_calls)


async def barge_in(session: Any, report: common.Report, args: Any) -> None:
    """The SDK's own barge-in: ``session.interrupt()`` while the reply audio is streaming."""
    await session.send_message(common.LONG_PROMPT)
    await report.wait_for("response.output_audio.delta", 10)
    await asyncio.sleep(0.4)
    interrupted_at = report.outcome["interrupted_at"] = len(report.events)
    await session.interrupt()
    # With server VAD's interrupt_response on (the default), the SDK sends only the truncate
    # and leaves cancelling to the server, so the reply goes on streaming: the truncate is the
    # whole barge-in here.
    truncated = await report.wait_for("conversation.item.truncated", 5, after=interrupted_at)
    report.outcome["truncated"] = truncated


async def vad_barge_in(session: Any, report: common.Report, args: Any) -> None:
    """The user talks over the reply: the server's VAD cancels it and the SDK, on
    speech_started, truncates the item at what it played; the user's turn gets its reply."""
    await session.send_message(common.LONG_PROMPT)
    await report.wait_for("response.output_audio.delta", 10)
    await asyncio.sleep(0.4)
    report.outcome["interrupted_at"] = len(report.events)
    await common.paced(common.speech_frames(args.speech), session.send_audio)
    report.outcome["truncated"] = await report.wait_for("conversation.item.truncated", 5)
    await report.wait_for("response.done", 10,
                          where=lambda e: e["response"]["status"] == "completed")


SCENARIO_STEPS = {"text": text_turn, "audio": audio_turn, "tool": tool_turn,
                  "barge_in": barge_in, "vad_barge_in": vad_barge_in}

if __name__ == "__main__":
    raise SystemExit(main())
