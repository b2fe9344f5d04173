"""pipecat: OpenAIRealtimeLLMService in a pipeline with its context aggregators, pointed at the
simulator by ``base_url`` only.

pipecat parses each server event with its own pydantic models
(`pipecat.services.openai.realtime.events.parse_server_event`) and has no hook for the raw
event, so the script puts a byte-for-byte recording relay (common.RecordingRelay) between the
service and the simulator, and validates every recorded event with that same parser. Errors the
service reports as ErrorFrames are findings too.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import common
from openai.types.realtime import RealtimeServerEvent
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMRunFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.llm_service import FunctionCallParams
from pipecat.services.openai.realtime import events
from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService
from pipecat.workers.runner import WorkerRunner
from pydantic import TypeAdapter

GA_SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
SCENARIOS = ["text", "audio", "tool", "barge_in", "vad_barge_in", "retrieve"]
UNKNOWN_ID = "item_not_in_this_conversation"


class ErrorRecorder(FrameProcessor):
    """Keeps every ErrorFrame that passes (the service pushes them up and down)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__()
        self.errors = errors

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, ErrorFrame):
            self.errors.append(str(frame.error)[:2000])
        await self.push_frame(frame, direction)


def validate(raw: dict[str, Any]) -> None:
    """pipecat's own model for the event; an event type pipecat does not model (it skips those)
    is checked against the openai package's GA union instead, so nothing goes unvalidated."""
    if events.parse_server_event(json.dumps(raw)) is None:
        GA_SERVER_EVENT.validate_python(raw)


def main() -> int:
    args = common.parse_args(SCENARIOS)
    report = common.Report(args.scenario, ["pipecat-ai", "openai", "websockets", "pydantic"])
    session_errors: list[str] = []
    report.outcome["session_errors"] = session_errors
    # pipecat logs through loguru: its WARNING+ lines go into the report as well.
    from loguru import logger

    logger.add(lambda message: report.log_problem(
        message.record["level"].no, message.record["name"] or "pipecat",
        message.record["message"]), level="WARNING")
    weather_calls: list[dict[str, Any]] = []

    async def get_weather(params: FunctionCallParams) -> None:
        weather_calls.append(dict(params.arguments))
        await params.result_callback({"forecast": f"sunny in {params.arguments.get('city')}"})

    async def scenario() -> None:
        text_only = args.scenario in ("text", "tool", "retrieve")
        properties = events.SessionProperties(
            output_modalities=["text"] if text_only else ["audio"])
        prompt = {"text": common.TEXT_PROMPT, "retrieve": common.TEXT_PROMPT,
                  "tool": common.TOOL_PROMPT, "barge_in": common.LONG_PROMPT,
                  "vad_barge_in": common.LONG_PROMPT}.get(args.scenario)
        tools = ToolsSchema(standard_tools=[FunctionSchema(
            name=common.TOOL_NAME, description="The weather in a city.",
            properties={"city": {"type": "string"}}, required=["city"])])
        context = LLMContext(messages=[{"role": "user", "content": prompt}] if prompt else [])
        if args.scenario == "tool":
            context.set_tools(tools)

        async with common.RecordingRelay(
                f"{args.url}", lambda raw: report.record(raw, validate)) as relay:
            llm = OpenAIRealtimeLLMService(
                api_key="sk-ecosystem", base_url=f"{relay.url}/v1/realtime",
                settings=OpenAIRealtimeLLMService.Settings(session_properties=properties))
            llm.register_function(common.TOOL_NAME, get_weather)
            aggregators = LLMContextAggregatorPair(context)
            pipeline = Pipeline([aggregators.user(), llm, ErrorRecorder(session_errors),
                                 aggregators.assistant()])
            worker = PipelineWorker(pipeline, idle_timeout_secs=None, enable_rtvi=False,
                                    check_dangling_tasks=False)
            runner = WorkerRunner(handle_sigint=False, check_dangling_tasks=False)
            await runner.add_workers(worker)
            running = asyncio.create_task(runner.run())
            try:
                await report.wait_for("session.created", 5)
                await SCENARIO_STEPS[args.scenario](worker, llm, report, args)
                report.outcome["tool_calls"] = weather_calls
            finally:
                await worker.cancel()
                try:
                    await asyncio.wait_for(running, 5)
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    running.cancel()

    return common.run(report, args.report, scenario)


async def text_turn(worker: Any, llm: Any, report: common.Report, args: Any) -> None:
    await worker.queue_frames([LLMRunFrame()])
    done = await report.wait_for("response.done", 10)
    report.outcome["status"] = done["response"]["status"]


async def audio_turn(worker: Any, llm: Any, report: common.Report, args: Any) -> None:
    """User audio frames at real-time pace; the server's VAD takes the turn."""
    await report.wait_for("session.updated", 5)

    async def send(frame: bytes) -> None:
        await worker.queue_frame(InputAudioRawFrame(audio=frame, sample_rate=common.RATE,
                                                    num_channels=1))

    await common.paced(common.speech_frames(args.speech), send)
    done = await report.wait_for("response.done", 10)
    report.outcome["status"] = done["response"]["status"]


async def tool_turn(worker: Any, llm: Any, report: common.Report, args: Any) -> None:
    """pipecat runs the registered function and sends its result, then asks for a response."""
    await worker.queue_frames([LLMRunFrame()])
    await report.wait_for("response.done", 10,
                          where=lambda e: any(i["type"] == "function_call"
                                              for i in e["response"]["output"]))
    follow_up = await report.wait_for(
        "response.done", 10,
        where=lambda e: any(i["type"] == "message" for i in e["response"]["output"]))
    report.outcome["status"] = follow_up["response"]["status"]


async def barge_in(worker: Any, llm: Any, report: common.Report, args: Any) -> None:
    """pipecat's own interruption: an InterruptionFrame through the pipeline while the reply
    audio streams; the service truncates the item at what it has played."""
    await worker.queue_frames([LLMRunFrame()])
    await report.wait_for("response.output_audio.delta", 10)
    await asyncio.sleep(0.4)
    interrupted_at = report.outcome["interrupted_at"] = len(report.events)
    await worker.queue_frame(InterruptionFrame())
    truncated = await report.wait_for("conversation.item.truncated", 5, after=interrupted_at)
    report.outcome["truncated"] = truncated


async def retrieve(worker: Any, llm: Any, report: common.Report, args: Any) -> None:
    """`retrieve_conversation_item` of the user's item, then of an id the server never had (its
    future must fail with the server's error, not hang), then the known one again (the error
    must not have ended the session)."""
    await worker.queue_frames([LLMRunFrame()])
    await report.wait_for("response.done", 10)
    added = await report.wait_for("conversation.item.added", 5,
                                  where=lambda e: e["item"].get("role") == "user")
    known_id = added["item"]["id"]
    report.outcome["known_id"] = known_id
    item = await asyncio.wait_for(llm.retrieve_conversation_item(known_id), 5)
    report.outcome["known_result"] = item.id
    try:
        await asyncio.wait_for(llm.retrieve_conversation_item(UNKNOWN_ID), 5)
        report.outcome["unknown_raised"] = False
    except asyncio.TimeoutError:
        raise AssertionError("retrieve of an unknown id never resolved") from None
    except Exception as exc:  # noqa: BLE001 - pipecat raises a bare Exception with the message
        report.outcome["unknown_raised"] = True
        report.outcome["unknown_error"] = str(exc)
    again = await asyncio.wait_for(llm.retrieve_conversation_item(known_id), 5)
    report.outcome["known_again"] = again.id


async def vad_barge_in(worker: Any, llm: Any, report: common.Report, args: Any) -> None:
    """The user talks over the reply: the server's VAD cancels it, and the service truncates
    the item on speech_started; the user's turn gets its own reply."""
    await worker.queue_frames([LLMRunFrame()])
    await report.wait_for("response.output_audio.delta", 10)
    await asyncio.sleep(0.4)
    report.outcome["interrupted_at"] = len(report.events)

    async def send(frame: bytes) -> None:
        await worker.queue_frame(InputAudioRawFrame(audio=frame, sample_rate=common.RATE,
                                                    num_channels=1))

    await common.paced(common.speech_frames(args.speech), send)
    report.outcome["truncated"] = await report.wait_for("conversation.item.truncated", 5)
    await report.wait_for("response.done", 10,
                          where=lambda e: e["response"]["status"] == "completed")


SCENARIO_STEPS = {"text": text_turn, "audio": audio_turn, "tool": tool_turn,
                  "barge_in": barge_in, "vad_barge_in": vad_barge_in, "retrieve": retrieve}

if __name__ == "__main__":
    raise SystemExit(main())
