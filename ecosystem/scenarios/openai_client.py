"""The openai package as a Realtime client, GA (`client.realtime`) and beta
(`client.beta.realtime`), pointed at the simulator by ``websocket_base_url`` only.

The package has no agent loop: the script plays the application (it sends the tool's output and
the barge-in's truncate itself, as the package's docs show). Every raw server event is validated
with the package's own `RealtimeServerEvent` union for that protocol version.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import common
from openai import AsyncOpenAI
from pydantic import TypeAdapter

SCENARIOS = [f"{version}_{name}" for version in ("ga", "beta")
             for name in ("text", "audio", "tool", "barge_in")]
WEATHER_TOOL = {
    "type": "function",
    "name": common.TOOL_NAME,
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]},
}


def main() -> int:
    args = common.parse_args(SCENARIOS)
    version, name = args.scenario.split("_", 1)
    beta = version == "beta"
    if beta:
        from openai.types.beta.realtime import RealtimeServerEvent
    else:
        from openai.types.realtime import RealtimeServerEvent
    adapter: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
    report = common.Report(args.scenario, ["openai", "websockets", "pydantic"])

    async def scenario() -> None:
        client = AsyncOpenAI(api_key="sk-ecosystem", websocket_base_url=f"{args.url}/v1",
                             max_retries=0)
        realtime = client.beta.realtime if beta else client.realtime
        model = "gpt-4o-realtime-preview" if beta else "gpt-realtime"
        async with realtime.connect(model=model) as conn:

            async def receive() -> None:
                while True:
                    raw = json.loads(await conn.recv_bytes())
                    report.record(raw, adapter.validate_python)

            receiver = asyncio.create_task(receive())
            try:
                await report.wait_for("session.created", 5)
                await SCENARIO_STEPS[name](conn, report, beta, args)
            finally:
                receiver.cancel()

    return common.run(report, args.report, scenario)


def session(beta: bool, **fields: Any) -> dict[str, Any]:
    """A session.update body in the version's shape (GA needs "type": "realtime")."""
    if beta:
        if "output_modalities" in fields:
            fields["modalities"] = fields.pop("output_modalities")
        return fields
    return {"type": "realtime", **fields}


def user_text(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


async def text_turn(conn: Any, report: common.Report, beta: bool, args: Any) -> None:
    await conn.session.update(session=session(beta, output_modalities=["text"]))
    await conn.conversation.item.create(item=user_text(common.TEXT_PROMPT))
    await conn.response.create()
    done = await report.wait_for("response.done", 10)
    report.outcome["status"] = done["response"]["status"]
    report.outcome["reply"] = _reply_text(done)


async def audio_turn(conn: Any, report: common.Report, beta: bool, args: Any) -> None:
    vad = {"type": "server_vad"}
    body = {"turn_detection": vad} if beta else {"audio": {"input": {"turn_detection": vad}}}
    # The reply in the session's default modalities (audio and its transcript).
    await conn.session.update(session=session(beta, **body))
    await report.wait_for("session.updated", 5)
    frames = common.speech_frames(args.speech)

    async def append(frame: bytes) -> None:
        await conn.input_audio_buffer.append(audio=base64.b64encode(frame).decode())

    await common.paced(frames, append)
    done = await report.wait_for("response.done", 10)
    report.outcome["status"] = done["response"]["status"]
    report.outcome["reply"] = _reply_text(done)
    report.outcome["sent_ms"] = len(frames) * common.FRAME_MS


async def tool_turn(conn: Any, report: common.Report, beta: bool, args: Any) -> None:
    await conn.session.update(session=session(beta, output_modalities=["text"],
                                              tools=[WEATHER_TOOL]))
    await conn.conversation.item.create(item=user_text(common.TOOL_PROMPT))
    await conn.response.create()
    first = await report.wait_for("response.done", 10)
    call = next(i for i in first["response"]["output"] if i["type"] == "function_call")
    report.outcome["call"] = {"name": call["name"], "arguments": json.loads(call["arguments"])}
    after = len(report.events)
    await conn.conversation.item.create(item={
        "type": "function_call_output", "call_id": call["call_id"], "output": "sunny, 21 C"})
    await conn.response.create()
    follow_up = await report.wait_for("response.done", 10, after=after)
    report.outcome["status"] = follow_up["response"]["status"]
    report.outcome["reply"] = _reply_text(follow_up)


async def barge_in(conn: Any, report: common.Report, beta: bool, args: Any) -> None:
    """The application's barge-in: truncate the streaming reply at what was played, then cancel
    (the order openai-agents uses), while the reply audio is still coming."""
    audio_delta = "response.audio.delta" if beta else "response.output_audio.delta"
    await conn.conversation.item.create(item=user_text(common.LONG_PROMPT))
    await conn.response.create()
    first = await report.wait_for(audio_delta, 10)
    started = time.monotonic()
    await asyncio.sleep(0.4)
    received_ms = sum(len(base64.b64decode(e["delta"])) for e in report.events
                      if e.get("type") == audio_delta) / 2 / common.RATE * 1000
    played_ms = int(min(received_ms, (time.monotonic() - started) * 1000))
    report.outcome["interrupted_at"] = len(report.events)
    await conn.conversation.item.truncate(item_id=first["item_id"], content_index=0,
                                          audio_end_ms=played_ms)
    await conn.response.cancel()
    truncated = await report.wait_for("conversation.item.truncated", 5)
    done = await report.wait_for("response.done", 5)
    report.outcome.update(played_ms=played_ms, truncated=truncated,
                          status=done["response"]["status"])


def _reply_text(done: dict[str, Any]) -> str:
    texts = []
    for item in done["response"]["output"]:
        for part in item.get("content") or []:
            texts.append(part.get("text") or part.get("transcript") or "")
    return " ".join(t for t in texts if t)


SCENARIO_STEPS = {"text": text_turn, "audio": audio_turn, "tool": tool_turn,
                  "barge_in": barge_in}

if __name__ == "__main__":
    raise SystemExit(main())
