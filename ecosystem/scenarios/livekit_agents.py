"""livekit-agents with livekit-plugins-openai: an AgentSession whose LLM is the plugin's
RealtimeModel, pointed at the simulator by ``base_url`` only, with no room: the script gives the
session a real-time audio input and a real-time "speaker" (io.AudioInput / io.AudioOutput), the
way a room or the console would.

The agent runs the tool and asks for the follow-up itself, and barge-in is the session's own
``interrupt()``: the agent activity cancels the reply and truncates the item at the position the
speaker reports. The raw server events come from the RealtimeSession's public
``openai_server_event_received`` event (the model's ``session()`` is extended to subscribe to
it); the plugin reads events with the openai package's GA models (``construct``, no
validation), so the script validates each with that package's `RealtimeServerEvent` union.
The session's ``error`` events and livekit's WARNING+ log lines are findings.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import common
from livekit import rtc
from livekit.agents import Agent, AgentSession, llm
from livekit.agents.voice import io
from livekit.plugins.openai.realtime import RealtimeModel
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

SCENARIOS = ["text", "audio", "tool", "barge_in", "vad_barge_in"]
weather_calls: list[str] = []


@llm.function_tool(name=common.TOOL_NAME)
async def get_weather(city: str) -> str:
    """The weather in a city.

    Args:
        city: the city
    """
    weather_calls.append(city)
    return f"sunny in {city}, 21 C"


class Microphone(io.AudioInput):
    """Frames the script pushes, handed to the session as they come."""

    def __init__(self) -> None:
        super().__init__(label="ecosystem-microphone")
        self.frames: asyncio.Queue[rtc.AudioFrame] = asyncio.Queue()

    async def __anext__(self) -> rtc.AudioFrame:
        return await self.frames.get()


class Speaker(io.AudioOutput):
    """Plays in real time (it only keeps time): a segment ends when its audio has had time to
    play, pause() stops the clock until resume(), and clear_buffer() stops playback at the
    position reached, as a real speaker would."""

    def __init__(self) -> None:
        super().__init__(label="ecosystem-speaker", capabilities=io.AudioOutputCapabilities(
            pause=True), sample_rate=common.RATE)
        self.started: float | None = None
        self.pushed = 0.0
        self.paused_for = 0.0
        self.paused_at: float | None = None
        self.finisher: asyncio.Task[None] | None = None

    def played(self) -> float:
        assert self.started is not None
        now = self.paused_at if self.paused_at is not None else time.monotonic()
        return min(self.pushed, now - self.started - self.paused_for)

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if self.started is None:
            self.started = time.monotonic()
            self.on_playback_started(created_at=time.time())
        self.pushed += frame.duration

    def flush(self) -> None:
        super().flush()
        if self.started is not None:
            self.finisher = asyncio.get_running_loop().create_task(self._play_out())

    async def _play_out(self) -> None:
        while self.played() < self.pushed or self.paused_at is not None:
            await asyncio.sleep(0.02)
        self._finish(interrupted=False)

    def pause(self) -> None:
        super().pause()
        if self.paused_at is None:
            self.paused_at = time.monotonic()

    def resume(self) -> None:
        super().resume()
        if self.paused_at is not None:
            self.paused_for += time.monotonic() - self.paused_at
            self.paused_at = None

    def clear_buffer(self) -> None:
        if self.finisher is not None:
            self.finisher.cancel()
        if self.started is not None:
            self._finish(interrupted=True)

    def _finish(self, *, interrupted: bool) -> None:
        position = self.played()
        self.started, self.pushed, self.finisher = None, 0.0, None
        self.paused_for, self.paused_at = 0.0, None
        self.on_playback_finished(playback_position=position, interrupted=interrupted)


def main() -> int:
    args = common.parse_args(SCENARIOS)
    report = common.Report(args.scenario, ["livekit-agents", "livekit-plugins-openai", "openai",
                                           "aiohttp", "pydantic"])
    adapter: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
    session_errors: list[str] = []
    report.outcome["session_errors"] = session_errors
    # The plugin logs, and skips, an event its handlers fail on ("failed to handle event").
    report.capture_logging("livekit")

    class RecordedRealtimeModel(RealtimeModel):
        def session(self, **options: Any) -> Any:
            realtime = super().session(**options)
            realtime.on("openai_server_event_received",
                        lambda event: report.record(event, adapter.validate_python))
            return realtime

    async def scenario() -> None:
        http_url = args.url.replace("ws://", "http://", 1) + "/v1"
        async with aiohttp.ClientSession() as http:
            # Text turns in text; the audio turn and the barge-in in the plugin's defaults.
            text_only = args.scenario in ("text", "tool")
            model = RecordedRealtimeModel(
                base_url=http_url, api_key="sk-ecosystem", http_session=http,
                **({"modalities": ["text"]} if text_only else {}))
            # The microphone hears no echo of the speaker, so no AEC warm-up (livekit's
            # documented setting for such inputs, e.g. SIP): the user may talk over the reply
            # from its start.
            session: AgentSession = AgentSession(llm=model, aec_warmup_duration=None)
            session.on("error", lambda event: session_errors.append(repr(event.error)[:2000]))
            microphone = Microphone()
            session.input.audio = microphone
            if not text_only:
                session.output.audio = Speaker()
            agent = Agent(instructions="Be brief.",
                          tools=[get_weather] if args.scenario == "tool" else [])
            await session.start(agent)
            try:
                await report.wait_for("session.updated", 5)
                await SCENARIO_STEPS[args.scenario](session, microphone, report, args)
                report.outcome["tool_calls"] = list(weather_calls)
            finally:
                await session.aclose()

    return common.run(report, args.report, scenario)


async def text_turn(session: AgentSession, microphone: Microphone, report: common.Report,
                    args: Any) -> None:
    session.generate_reply(user_input=common.TEXT_PROMPT)
    done = await report.wait_for("response.done", 10)
    report.outcome["status"] = done["response"]["status"]


async def audio_turn(session: AgentSession, microphone: Microphone, report: common.Report,
                     args: Any) -> None:
    """The utterance through the session's audio input at real-time pace; the server's VAD
    (the plugin's default turn detection) takes the turn."""

    async def push(frame: bytes) -> None:
        microphone.frames.put_nowait(rtc.AudioFrame(
            frame, sample_rate=common.RATE, num_channels=1, samples_per_channel=len(frame) // 2))

    await common.paced(common.speech_frames(args.speech), push)
    done = await report.wait_for("response.done", 10)
    report.outcome["status"] = done["response"]["status"]


async def tool_turn(session: AgentSession, microphone: Microphone, report: common.Report,
                    args: Any) -> None:
    """The agent runs the tool and asks for the follow-up (a response.create whose
    instructions are null, the plugin's way)."""
    session.generate_reply(user_input=common.TOOL_PROMPT)
    await report.wait_for("response.done", 10,
                          where=lambda e: any(i["type"] == "function_call"
                                              for i in e["response"]["output"]))
    follow_up = await report.wait_for(
        "response.done", 10,
        where=lambda e: any(i["type"] == "message" for i in e["response"]["output"]))
    report.outcome["status"] = follow_up["response"]["status"]


async def barge_in(session: AgentSession, microphone: Microphone, report: common.Report,
                   args: Any) -> None:
    """The session's own ``interrupt()`` while the reply plays: the agent activity cancels the
    response and truncates the item at the speaker's position."""
    session.generate_reply(user_input=common.LONG_PROMPT)
    await report.wait_for("response.output_audio.delta", 10)
    await asyncio.sleep(0.6)
    report.outcome["interrupted_at"] = len(report.events)
    await session.interrupt()
    report.outcome["truncated"] = await report.wait_for("conversation.item.truncated", 5)


async def vad_barge_in(session: AgentSession, microphone: Microphone, report: common.Report,
                       args: Any) -> None:
    """The user talks over the reply through the microphone: the server's VAD cancels it, the
    agent stops the speaker and truncates the item at its position; the user's turn is
    answered."""
    session.generate_reply(user_input=common.LONG_PROMPT)
    await report.wait_for("response.output_audio.delta", 10)
    await asyncio.sleep(0.6)
    report.outcome["interrupted_at"] = len(report.events)

    async def push(frame: bytes) -> None:
        microphone.frames.put_nowait(rtc.AudioFrame(
            frame, sample_rate=common.RATE, num_channels=1, samples_per_channel=len(frame) // 2))

    await common.paced(common.speech_frames(args.speech), push)
    report.outcome["truncated"] = await report.wait_for("conversation.item.truncated", 5)
    await report.wait_for("response.done", 10,
                          where=lambda e: e["response"]["status"] == "completed")


SCENARIO_STEPS = {"text": text_turn, "audio": audio_turn, "tool": tool_turn,
                  "barge_in": barge_in, "vad_barge_in": vad_barge_in}

if __name__ == "__main__":
    raise SystemExit(main())
