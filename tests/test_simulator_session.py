"""The I/O-free `ServerSession` against protocol.md: the event cascades of section 9 (order
and fields, GA and beta, table-driven) and every error case of section 8 (code, message,
`param`, and that the failing event changed nothing)."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import anyio
import anyio.lowlevel
import numpy as np
import pytest
from realtalk.simulator import Delay, FunctionCall, ServerSession, Text
from realtalk.simulator._audio_io import make_vad
from realtalk.simulator.streaming import stream_response

EVENT_ID = re.compile(r"^event_[0-9A-Za-z]{21}$")
RATE = 24000

# Required fields per server event (protocol.md section 5).
REQUIRED: dict[str, set[str]] = {
    "error": {"error"},
    "session.created": {"session"},
    "session.updated": {"session"},
    "conversation.item.created": {"previous_item_id", "item"},
    "conversation.item.added": {"previous_item_id", "item"},
    "conversation.item.done": {"previous_item_id", "item"},
    "conversation.item.retrieved": {"item"},
    "conversation.item.truncated": {"item_id", "content_index", "audio_end_ms"},
    "conversation.item.deleted": {"item_id"},
    "input_audio_buffer.committed": {"previous_item_id", "item_id"},
    "input_audio_buffer.cleared": set(),
    "input_audio_buffer.speech_started": {"audio_start_ms", "item_id"},
    "input_audio_buffer.speech_stopped": {"audio_end_ms", "item_id"},
    "response.created": {"response"},
    "response.done": {"response"},
    "response.output_item.added": {"response_id", "output_index", "item"},
    "response.output_item.done": {"response_id", "output_index", "item"},
    "response.content_part.added": {
        "response_id",
        "item_id",
        "output_index",
        "content_index",
        "part",
    },
    "response.content_part.done": {
        "response_id",
        "item_id",
        "output_index",
        "content_index",
        "part",
    },
    "response.output_text.delta": {
        "response_id",
        "item_id",
        "output_index",
        "content_index",
        "delta",
    },
    "response.text.delta": {"response_id", "item_id", "output_index", "content_index", "delta"},
    "response.output_text.done": {
        "response_id",
        "item_id",
        "output_index",
        "content_index",
        "text",
    },
    "response.text.done": {"response_id", "item_id", "output_index", "content_index", "text"},
    "response.output_audio.delta": {
        "response_id",
        "item_id",
        "output_index",
        "content_index",
        "delta",
    },
    "response.audio.delta": {"response_id", "item_id", "output_index", "content_index", "delta"},
    "response.output_audio.done": {"response_id", "item_id", "output_index", "content_index"},
    "response.audio.done": {"response_id", "item_id", "output_index", "content_index"},
    "response.output_audio_transcript.delta": {
        "response_id",
        "item_id",
        "output_index",
        "content_index",
        "delta",
    },
    "response.audio_transcript.delta": {
        "response_id",
        "item_id",
        "output_index",
        "content_index",
        "delta",
    },
    "response.output_audio_transcript.done": {
        "response_id",
        "item_id",
        "output_index",
        "content_index",
        "transcript",
    },
    "response.audio_transcript.done": {
        "response_id",
        "item_id",
        "output_index",
        "content_index",
        "transcript",
    },
    "response.function_call_arguments.delta": {
        "response_id",
        "item_id",
        "output_index",
        "call_id",
        "delta",
    },
    "response.function_call_arguments.done": {
        "response_id",
        "item_id",
        "output_index",
        "call_id",
        "arguments",
    },
    "rate_limits.updated": {"rate_limits"},
}


def speech_then_silence(speech_s: float = 1.0, lead_s: float = 0.4, tail_s: float = 0.6) -> bytes:
    t = np.arange(int(speech_s * RATE)) / RATE
    voiced = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 6)) * 0.3 / 2.3
    pcm = np.concatenate([np.zeros(int(lead_s * RATE)), voiced, np.zeros(int(tail_s * RATE))])
    return np.round(pcm * 32767).astype("<i2").tobytes()


class Driver:
    """Runs a session the way the server does, minus the network: client events in, every
    server event out, responses streamed to completion with the default responder."""

    def __init__(self, protocol: str = "ga", **options: Any) -> None:
        self.session = ServerSession(protocol=protocol, vad_factory=make_vad, **options)  # type: ignore[arg-type]
        self.events: list[dict[str, Any]] = self.session.created_events()
        self.responder: Any = None

    async def send(self, *client_events: Any) -> list[dict[str, Any]]:
        start = len(self.events)
        for event in client_events:
            self.session.feed(event if isinstance(event, (str, bytes)) else json.dumps(event))
            self.events += self.session.drain()
            await self._run_responses()
        return self.events[start:]

    async def _run_responses(self) -> None:
        for response in self.session.take_new_responses():

            async def flush() -> None:
                self.events.extend(self.session.drain())

            await stream_response(
                self.session,
                response,
                self.responder,
                flush=flush,
                sleep=lambda s: anyio.lowlevel.checkpoint(),
                realtime=False,
            )

    async def append_audio(self, pcm: bytes, frame_ms: int = 20) -> list[dict[str, Any]]:
        step = 48 * frame_ms
        events = []
        for start in range(0, len(pcm), step):
            chunk = base64.b64encode(pcm[start : start + step]).decode()
            events += await self.send({"type": "input_audio_buffer.append", "audio": chunk})
        return events


def collapse(events: list[dict[str, Any]]) -> list[str]:
    """Event types with runs of deltas collapsed to one ``type*`` entry; interleaved audio and
    transcript deltas collapse into one ``audio+transcript*`` entry."""
    out: list[str] = []
    for event in events:
        kind = event["type"]
        if kind.endswith(".delta"):
            if "audio" in kind and out and out[-1] == "audio+transcript*":
                continue
            label = "audio+transcript*" if "audio" in kind else kind + "*"
            if out and out[-1] == label:
                continue
            out.append(label)
        else:
            out.append(kind)
    return out


def check_fields(events: list[dict[str, Any]]) -> None:
    for event in events:
        assert EVENT_ID.match(event["event_id"]), event
        missing = REQUIRED.get(event["type"], set()) - set(event)
        assert not missing, (event["type"], missing)


USER_TEXT = {
    "type": "conversation.item.create",
    "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
}
TOOL = {
    "type": "function",
    "name": "lookup",
    "description": "d",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
}

GA_TEXT = [
    "conversation.item.added",
    "conversation.item.done",
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    "response.output_text.delta*",
    "response.output_text.done",
    "response.content_part.done",
    "conversation.item.done",
    "response.output_item.done",
    "response.done",
    "rate_limits.updated",
]
BETA_TEXT = [
    "conversation.item.created",
    "response.created",
    "response.output_item.added",
    "conversation.item.created",
    "response.content_part.added",
    "response.text.delta*",
    "rate_limits.updated",
    "response.text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.done",
]
GA_AUDIO_VAD = [
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "input_audio_buffer.committed",
    "conversation.item.added",
    "conversation.item.done",
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    "audio+transcript*",
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.content_part.done",
    "conversation.item.done",
    "response.output_item.done",
    "response.done",
    "rate_limits.updated",
]
BETA_AUDIO_VAD = [
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "input_audio_buffer.committed",
    "conversation.item.created",
    "response.created",
    "response.output_item.added",
    "conversation.item.created",
    "response.content_part.added",
    "audio+transcript*",
    "rate_limits.updated",
    "response.audio.done",
    "response.audio_transcript.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.done",
]
GA_FUNCTION = [
    "conversation.item.added",
    "conversation.item.done",
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.function_call_arguments.delta*",
    "response.function_call_arguments.done",
    "conversation.item.done",
    "response.output_item.done",
    "response.done",
    "rate_limits.updated",
]
BETA_FUNCTION = [
    "conversation.item.created",
    "response.created",
    "response.output_item.added",
    "conversation.item.created",
    "response.function_call_arguments.delta*",
    "rate_limits.updated",
    "response.function_call_arguments.done",
    "response.output_item.done",
    "response.done",
]


def text_session(protocol: str) -> dict[str, Any]:
    if protocol == "ga":
        return {
            "type": "session.update",
            "session": {"type": "realtime", "output_modalities": ["text"]},
        }
    return {"type": "session.update", "session": {"modalities": ["text"]}}


def tools_session(protocol: str) -> dict[str, Any]:
    update = text_session(protocol)
    update["session"]["tools"] = [TOOL]
    return update


@pytest.mark.parametrize(
    ("protocol", "turn", "expected"),
    [
        ("ga", "text", GA_TEXT),
        ("beta", "text", BETA_TEXT),
        ("ga", "audio", GA_AUDIO_VAD),
        ("beta", "audio", BETA_AUDIO_VAD),
        ("ga", "function", GA_FUNCTION),
        ("beta", "function", BETA_FUNCTION),
    ],
)
async def test_event_sequences_follow_section_9(
    protocol: str, turn: str, expected: list[str]
) -> None:
    driver = Driver(protocol)
    assert driver.events[0]["type"] == "session.created"
    if turn == "text":
        await driver.send(text_session(protocol))
        events = await driver.send(USER_TEXT, {"type": "response.create"})
    elif turn == "function":
        await driver.send(tools_session(protocol))
        ask = json.loads(json.dumps(USER_TEXT))
        ask["item"]["content"][0]["text"] = "please lookup the answer"
        events = await driver.send(ask, {"type": "response.create"})
    else:
        events = await driver.append_audio(speech_then_silence())
    assert collapse(events) == expected
    check_fields(events)
    # The project's own event models (written independently) know every event and its shape.
    from realtalk.events import UnknownEvent, parse_server_event

    for event in driver.events:
        parsed = parse_server_event(json.dumps(event), protocol=protocol)  # type: ignore[arg-type]
        assert not isinstance(parsed, UnknownEvent), event["type"]

    response_id = next(e for e in events if e["type"] == "response.created")["response"]["id"]
    for event in events:
        if "response_id" in event:
            assert event["response_id"] == response_id
    created = next(e for e in events if e["type"] == "response.created")["response"]
    assert (
        created["status"] == "in_progress" and created["output"] == [] and created["usage"] is None
    )
    done = next(e for e in events if e["type"] == "response.done")["response"]
    assert done["status"] == "completed" and done["status_details"] is None
    assert (
        done["usage"]["total_tokens"]
        == done["usage"]["input_tokens"] + done["usage"]["output_tokens"]
    )
    assert done["conversation_id"].startswith("conv_")
    if protocol == "ga":
        assert done["output_modalities"] == (["audio"] if turn == "audio" else ["text"])
        assert done["max_output_tokens"] == "inf" and done["metadata"] is None
        assert done["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
        limits = events[-1]["rate_limits"]
        assert [entry["name"] for entry in limits] == ["tokens"]
    else:
        assert set(done) >= {
            "modalities",
            "voice",
            "output_audio_format",
            "temperature",
            "max_output_tokens",
        }

    # The user item, then the assistant item chained to it by previous_item_id.
    item_events = [
        e for e in events if e["type"] in ("conversation.item.added", "conversation.item.created")
    ]
    user_item, assistant_item = item_events[0]["item"], item_events[1]["item"]
    assert item_events[1]["previous_item_id"] == user_item["id"]
    assert user_item["status"] == "completed"
    if turn == "audio":
        assert user_item["content"] == [{"type": "input_audio", "transcript": None}]
        committed = next(e for e in events if e["type"] == "input_audio_buffer.committed")
        assert committed["item_id"] == user_item["id"]
    added = next(e for e in events if e["type"] == "response.output_item.added")
    assert added["item"]["status"] == "in_progress" and added["output_index"] == 0
    assert added["item"]["id"] == assistant_item["id"]

    if turn == "function":
        assert added["item"]["type"] == "function_call" and added["item"]["arguments"] == ""
        args_done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
        assert ("name" in args_done) == (protocol == "ga")
        assert json.loads(args_done["arguments"]) == {"q": "example q"}
        deltas = "".join(
            e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"
        )
        assert deltas == args_done["arguments"]
        assert done["output"][0]["type"] == "function_call"
        return
    assert added["item"]["content"] == []
    part_added = next(e for e in events if e["type"] == "response.content_part.added")
    part_done = next(e for e in events if e["type"] == "response.content_part.done")
    content = done["output"][0]["content"][0]
    if turn == "text":
        assert part_added["part"] == {"type": "text", "text": ""}
        assert part_done["part"] == {"type": "text", "text": content["text"]}
        assert content["type"] == ("output_text" if protocol == "ga" else "text")
        assert content["text"] == "You said: hi"
    else:
        assert part_added["part"] == {"type": "audio", "transcript": ""}
        assert part_done["part"]["type"] == "audio"
        assert content["type"] == ("output_audio" if protocol == "ga" else "audio")
        assert "audio" not in content  # response.done carries no audio bytes
        prefix = "response.output_audio" if protocol == "ga" else "response.audio"
        transcript = "".join(
            e["delta"] for e in events if e["type"] == f"{prefix}_transcript.delta"
        )
        assert transcript == content["transcript"]
        assert all(
            ("obfuscation" in e) == (protocol == "ga")
            for e in events
            if e["type"].endswith(".delta")
        )


async def test_audio_clock_counts_from_the_first_appended_sample() -> None:
    driver = Driver("ga")
    await driver.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {
                    "input": {"turn_detection": {"type": "server_vad", "create_response": False}}
                },
            },
        }
    )
    first = await driver.append_audio(speech_then_silence(lead_s=2.0))
    second = await driver.append_audio(speech_then_silence(lead_s=1.0))
    starts = [
        e["audio_start_ms"]
        for e in first + second
        if e["type"] == "input_audio_buffer.speech_started"
    ]
    stops = [
        e["audio_end_ms"]
        for e in first + second
        if e["type"] == "input_audio_buffer.speech_stopped"
    ]
    # Turn 1: speech 2000-3000 ms; turn 2 starts after 3600 ms of audio: speech 4600-5600 ms.
    assert starts == [pytest.approx(1700, abs=20), pytest.approx(4300, abs=20)]
    # The end includes the 200 ms silence, plus the detector's short hangover.
    assert 3200 <= stops[0] <= 3400 and 5800 <= stops[1] <= 6000
    assert "response.created" not in [e["type"] for e in first + second]


async def test_manual_commit_then_response_and_transcription() -> None:
    driver = Driver("ga")
    await driver.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {
                    "input": {"turn_detection": None, "transcription": {"model": "whisper-1"}}
                },
            },
        }
    )
    assert driver.session.turn_detection is None
    events = await driver.append_audio(speech_then_silence())
    assert events == []
    events = await driver.send({"type": "input_audio_buffer.commit"})
    kinds = [e["type"] for e in events]
    assert kinds == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
    ]
    assert events[-1]["transcript"] == "(2.00 s of speech)"
    reply = await driver.send({"type": "response.create"})
    done = next(e for e in reply if e["type"] == "response.done")["response"]
    assert done["output"][0]["content"][0]["transcript"] == "I heard 2.00 s of speech."


async def _cancel_scenario(protocol: str, cancel: Any) -> list[dict[str, Any]]:
    """A response that speaks, then waits; `cancel` interrupts it while it waits."""
    driver = Driver(protocol)
    gate = anyio.Event()

    async def responder(ctx: Any) -> Any:
        yield Text("one two three")
        await gate.wait()
        yield Text("never said")

    driver.responder = responder
    await driver.send(
        text_session(protocol) if cancel == "client" else {"type": "input_audio_buffer.clear"}
    )
    start = len(driver.events)
    async with anyio.create_task_group() as tg:
        driver.session.feed(json.dumps(USER_TEXT))
        driver.session.feed(json.dumps({"type": "response.create"}))
        driver.events += driver.session.drain()
        response = driver.session.take_new_responses()[0]

        async def flush() -> None:
            driver.events.extend(driver.session.drain())

        tg.start_soon(
            lambda: stream_response(
                driver.session,
                response,
                responder,
                flush=flush,
                sleep=lambda s: anyio.lowlevel.checkpoint(),
                realtime=False,
            )
        )
        await anyio.wait_all_tasks_blocked()
        if cancel == "client":
            driver.events += driver.session.receive(json.dumps({"type": "response.cancel"}))
        else:
            await driver.append_audio(speech_then_silence(tail_s=0.0))
        gate.set()
    return driver.events[start:]


@pytest.mark.parametrize("protocol", ["ga", "beta"])
async def test_cancel_closes_every_open_part_then_done_cancelled(protocol: str) -> None:
    events = await _cancel_scenario(protocol, "client")
    kinds = collapse(events)
    text = "response.output_text" if protocol == "ga" else "response.text"
    tail = kinds[kinds.index(f"{text}.delta*") + 1 :]
    expected = [f"{text}.done", "response.content_part.done"]
    expected += ["conversation.item.done"] if protocol == "ga" else []
    expected += ["response.output_item.done", "response.done"]
    expected += ["rate_limits.updated"] if protocol == "ga" else []
    if protocol == "beta":
        expected.insert(0, "rate_limits.updated")
    assert tail == expected
    item_done = next(e for e in events if e["type"] == "response.output_item.done")
    assert item_done["item"]["status"] == "incomplete"
    done = next(e for e in events if e["type"] == "response.done")["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    assert "never said" not in json.dumps(events)


async def test_speech_interrupts_the_response_with_turn_detected() -> None:
    events = await _cancel_scenario("ga", "speech")
    kinds = [e["type"] for e in events]
    started = kinds.index("input_audio_buffer.speech_started")
    done_index = kinds.index("response.done")
    assert started < done_index
    done = events[done_index]["response"]
    assert done["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    assert done["output"][0]["status"] == "incomplete"
    assert "never said" not in json.dumps(events)


async def test_out_of_band_responses_run_beside_the_default_conversation() -> None:
    driver = Driver("ga")
    await driver.send(text_session("ga"), USER_TEXT)
    driver.session.feed(json.dumps({"type": "response.create"}))
    driver.session.feed(
        json.dumps(
            {
                "type": "response.create",
                "response": {
                    "conversation": "none",
                    "metadata": {"purpose": "summary"},
                    "input": [
                        {
                            "type": "message",
                            "role": "user",
                            "content": [{"type": "input_text", "text": "sum"}],
                        }
                    ],
                },
            }
        )
    )
    events = driver.session.drain()
    assert [e["type"] for e in events] == ["response.created", "response.created"]
    oob = events[1]["response"]
    assert oob["conversation_id"] is None and oob["metadata"] == {"purpose": "summary"}
    await driver._run_responses()
    oob_events = [e for e in driver.events if e.get("response_id") == oob["id"]]
    assert oob_events and not any(
        e["type"].startswith("conversation.item")
        for e in driver.events[-len(oob_events) :]
        if e.get("item", {}).get("id") in {x.get("item_id") for x in oob_events}
    )
    done = [e for e in driver.events if e["type"] == "response.done"]
    texts = {d["response"]["id"]: d["response"]["output"][0]["content"][0]["text"] for d in done}
    assert texts[oob["id"]] == "You said: sum"
    # Out-of-band output never enters the conversation.
    item_ids = driver.session._order
    assert all(
        item["id"] not in item_ids
        for d in done
        if d["response"]["id"] == oob["id"]
        for item in d["response"]["output"]
    )


async def test_truncate_cuts_audio_and_deletes_the_transcript() -> None:
    driver = Driver("ga")
    await driver.send(USER_TEXT, {"type": "response.create"})
    done = next(e for e in driver.events if e["type"] == "response.done")["response"]
    item_id = done["output"][0]["id"]
    events = await driver.send(
        {
            "type": "conversation.item.truncate",
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": 500,
        }
    )
    assert events == [
        {
            "type": "conversation.item.truncated",
            "event_id": events[0]["event_id"],
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": 500,
        }
    ]
    retrieved = (await driver.send({"type": "conversation.item.retrieve", "item_id": item_id}))[0]
    content = retrieved["item"]["content"][0]
    assert content["transcript"] == ""
    assert len(base64.b64decode(content["audio"])) == 500 * 48


async def stream_with_client_events(
    driver: Driver, client_events_after: dict[int, Any]
) -> dict[int, list[dict[str, Any]]]:
    """Stream the pending response; once n audio deltas are out, the client sends
    ``client_events_after[n](item_id)`` about the assistant item that is still streaming.
    Returns each one's replies."""
    replies: dict[int, list[dict[str, Any]]] = {}
    for response in driver.session.take_new_responses():

        async def flush() -> None:
            driver.events.extend(driver.session.drain())
            added = [e for e in driver.events if e["type"] == "response.output_item.added"]
            if not added:
                return
            deltas = sum(e["type"] == "response.output_audio.delta" for e in driver.events)
            for after, make_event in client_events_after.items():
                if deltas >= after and after not in replies:
                    event = make_event(added[-1]["item"]["id"])
                    replies[after] = driver.session.receive(json.dumps(event))
                    driver.events.extend(replies[after])

        await stream_response(
            driver.session,
            response,
            driver.responder,
            flush=flush,
            sleep=lambda s: anyio.lowlevel.checkpoint(),
            realtime=False,
        )
    return replies


def truncate_at(ms: int) -> Any:
    return lambda item_id: {
        "type": "conversation.item.truncate",
        "event_id": "evt_t",
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": ms,
    }


async def start_spoken_reply(driver: Driver) -> None:
    driver.responder = lambda ctx: [Text("one two three four five six seven eight nine ten")]
    driver.session.feed(json.dumps({**USER_TEXT, "item": {**USER_TEXT["item"], "id": "msg_u"}}))
    driver.session.feed(json.dumps({"type": "response.create"}))
    driver.events += driver.session.drain()


async def test_truncate_of_the_item_still_streaming_cuts_it() -> None:
    # openai-agents' session.interrupt() truncates while the reply streams (with server VAD's
    # interrupt_response it sends no response.cancel): the live API cuts the item at the
    # audio played so far, and the conversation keeps neither later audio nor the transcript.
    driver = Driver("ga")
    await start_spoken_reply(driver)
    replies = await stream_with_client_events(driver, {3: truncate_at(150)})
    assert [e["type"] for e in replies[3]] == ["conversation.item.truncated"]
    assert replies[3][0]["audio_end_ms"] == 150
    item_id = replies[3][0]["item_id"]
    # The response went on (nothing cancelled it); the item keeps only what was heard.
    done = next(e for e in driver.events if e["type"] == "response.done")["response"]
    assert done["status"] == "completed"
    sent = sum(
        len(base64.b64decode(e["delta"]))
        for e in driver.events
        if e["type"] == "response.output_audio.delta"
    )
    assert sent > 5 * 100 * 48
    retrieved = (await driver.send({"type": "conversation.item.retrieve", "item_id": item_id}))[0]
    content = retrieved["item"]["content"]
    assert [part["type"] for part in content] == ["output_audio"]
    assert content[0]["transcript"] == ""
    assert len(base64.b64decode(content[0]["audio"])) == 150 * 48


async def test_truncate_while_streaming_refuses_only_audio_not_yet_sent() -> None:
    driver = Driver("ga")
    await start_spoken_reply(driver)
    # Two 100 ms chunks are out: 250 ms is beyond them, 200 ms is not.
    replies = await stream_with_client_events(driver, {2: truncate_at(250), 3: truncate_at(200)})
    error = replies[2][0]["error"]
    assert error["message"] == "Audio content of 200ms is already shorter than 250ms"
    assert [e["type"] for e in replies[3]] == ["conversation.item.truncated"]


async def test_delete_of_the_item_still_streaming_keeps_it_out() -> None:
    # livekit deletes the reply item instead of truncating it when nothing was played yet
    # (audio_end_ms 0), possibly while it still streams; later deltas must not bring it back.
    driver = Driver("ga")
    await start_spoken_reply(driver)
    replies = await stream_with_client_events(
        driver, {1: lambda item_id: {"type": "conversation.item.delete", "item_id": item_id}}
    )
    item_id = replies[1][0]["item_id"]
    assert [e["type"] for e in replies[1]] == ["conversation.item.deleted"]
    assert not any(key[0] == item_id for key in driver.session._audio)
    assert item_id not in driver.session._order
    retrieved = await driver.send({"type": "conversation.item.retrieve", "item_id": item_id})
    assert retrieved[0]["error"]["code"] == "item_retrieve_invalid_item_id"


async def test_truncate_of_an_item_without_audio_is_unsupported_content_type() -> None:
    # Live: "Only model output audio messages can be truncated", code unsupported_content_type
    # (livekit sends audio_end_ms=0 when interrupted before the first audio delta).
    expected = {
        "type": "invalid_request_error",
        "code": "unsupported_content_type",
        "message": "Only model output audio messages can be truncated",
        "param": None,
        "event_id": "evt_t",
    }
    driver = Driver("ga")
    await start_spoken_reply(driver)
    # The assistant item is announced (content_part.added sent), no audio produced yet.
    (response,) = driver.session.take_new_responses()
    driver.session.open_message(response)
    added = driver.session.drain()
    assert added[-1]["type"] == "response.content_part.added"
    item_id = added[-1]["item_id"]
    assert [e.get("error") for e in driver.session.receive(json.dumps(truncate_at(0)(item_id)))] == [
        expected
    ]
    # A user item is never model output audio.
    assert [e.get("error") for e in driver.session.receive(json.dumps(truncate_at(0)("msg_u")))] == [
        expected
    ]


async def test_items_ordering_with_previous_item_id_and_root() -> None:
    driver = Driver("ga")

    def item(text: str, **extra: Any) -> dict[str, Any]:
        return {
            "type": "conversation.item.create",
            **extra,
            "item": {
                "id": f"msg_{text}",
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": text}],
            },
        }

    await driver.send(item("a"), item("b"))
    events = await driver.send(
        item("c", previous_item_id="msg_a"), item("z", previous_item_id="root")
    )
    assert [e["previous_item_id"] for e in events if e["type"] == "conversation.item.added"] == [
        "msg_a",
        None,
    ]
    assert driver.session._order == ["msg_z", "msg_a", "msg_c", "msg_b"]
    deleted = await driver.send({"type": "conversation.item.delete", "item_id": "msg_c"})
    assert deleted[0]["type"] == "conversation.item.deleted" and deleted[0]["item_id"] == "msg_c"
    assert driver.session._order == ["msg_z", "msg_a", "msg_b"]


# ---- section 8: errors ---------------------------------------------------------------------

GA_TYPES = (
    "'session.update', 'session.close', 'input_audio_buffer.append', "
    "'session.input_audio_buffer.append', 'input_audio_buffer.commit', 'input_audio_buffer.clear', "
    "'conversation.item.create', 'conversation.item.truncate', 'conversation.item.delete', "
    "'conversation.item.retrieve', 'response.create', and 'response.cancel'"
)


def user_item(content: list[dict[str, Any]], role: str = "user") -> dict[str, Any]:
    return {
        "type": "conversation.item.create",
        "event_id": "evt_client_1",
        "item": {"type": "message", "role": role, "content": content},
    }


ERROR_CASES: list[tuple[str, str, Any, str | None, str | None, str]] = [
    # (protocol, name, client frame, code, param, message: exact, or a regex when it starts with ^)
    (
        "ga",
        "unknown type",
        {"type": "nope"},
        "invalid_value",
        "type",
        f"Invalid value: 'nope'. Supported values are: {GA_TYPES}.",
    ),
    (
        "ga",
        "ping is not an event",
        {"type": "ping"},
        "invalid_value",
        "type",
        f"Invalid value: 'ping'. Supported values are: {GA_TYPES}.",
    ),
    (
        "ga",
        "beta event name on GA",
        {"type": "transcription_session.update", "session": {}},
        "invalid_value",
        "type",
        "^Invalid value: 'transcription_session.update'. Supported values",
    ),
    (
        "ga",
        "translation endpoint type",
        {"type": "session.close"},
        "invalid_value",
        "type",
        "'session.close' is only supported by the /v1/realtime/translations endpoint.",
    ),
    (
        "ga",
        "missing type",
        {"event_id": "x"},
        "invalid_event",
        None,
        "The 'type' field is missing.",
    ),
    (
        "ga",
        "not JSON",
        "{nope",
        "invalid_json",
        None,
        "^Invalid event: failed to parse JSON value. ",
    ),
    (
        "ga",
        "binary frame",
        b"\x00\x01",
        "invalid_event",
        None,
        "Expected a text WebSocket message; binary frames are not supported.",
    ),
    (
        "ga",
        "unknown session field",
        {
            "type": "session.update",
            "session": {"type": "realtime", "instructions": "x", "bogus_field": 1},
        },
        "unknown_parameter",
        "session.bogus_field",
        "Unknown parameter: 'session.bogus_field'.",
    ),
    (
        "ga",
        "beta-flat field on GA",
        {"type": "session.update", "session": {"type": "realtime", "voice": "ash"}},
        "unknown_parameter",
        "session.voice",
        "Unknown parameter: 'session.voice'.",
    ),
    (
        "ga",
        "missing session.type",
        {"type": "session.update", "session": {"modalities": ["text"]}},
        "missing_required_parameter",
        "session.type",
        "Missing required parameter: 'session.type'.",
    ),
    (
        "ga",
        "16 kHz input",
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}},
            },
        },
        "integer_below_min_value",
        "session.audio.input.format.rate",
        "Invalid 'session.audio.input.format.rate': integer below minimum value. "
        "Expected a value >= 24000, but got 16000 instead.",
    ),
    (
        "ga",
        "string format",
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"format": "pcm16"}}},
        },
        "invalid_type",
        "session.audio.input.format",
        "Invalid type for 'session.audio.input.format': expected an object, but got a string instead.",
    ),
    (
        "ga",
        "both modalities",
        {
            "type": "session.update",
            "session": {"type": "realtime", "output_modalities": ["audio", "text"]},
        },
        "array_above_max_length",
        "session.output_modalities",
        "^Invalid 'session.output_modalities': array too long",
    ),
    (
        "ga",
        "unknown voice",
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"output": {"voice": "robot"}}},
        },
        "invalid_value",
        "session.audio.output.voice",
        "^Invalid value: 'robot'. Supported values are: 'alloy', 'ash', ",
    ),
    (
        "ga",
        "threshold above 1",
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 1.5}}},
            },
        },
        "decimal_above_max_value",
        "session.audio.input.turn_detection.threshold",
        "^Invalid 'session.audio.input.turn_detection.threshold': decimal above maximum value.",
    ),
    (
        "beta",
        "temperature below range",
        {"type": "session.update", "session": {"temperature": 0.1}},
        "decimal_below_min_value",
        "session.temperature",
        "^Invalid 'session.temperature': decimal below",
    ),
    (
        "beta",
        "GA field on beta",
        {"type": "session.update", "session": {"output_modalities": ["text"]}},
        "unknown_parameter",
        "session.output_modalities",
        "Unknown parameter: 'session.output_modalities'.",
    ),
    (
        "ga",
        "missing item.type",
        {"type": "conversation.item.create", "item": {"role": "user"}},
        "missing_required_parameter",
        "item.type",
        "Missing required parameter: 'item.type'.",
    ),
    (
        "ga",
        "user content 'text'",
        user_item([{"type": "text", "text": "hi"}]),
        "invalid_value",
        "item.content[0].type",
        "Invalid value: 'text'. Supported values are: 'input_text' and 'input_audio'.",
    ),
    (
        "ga",
        "system content 'text'",
        user_item([{"type": "text", "text": "hi"}], "system"),
        "invalid_value",
        "item.content[0].type",
        "Invalid value: 'text'. Value must be 'input_text'.",
    ),
    (
        "ga",
        "assistant content 'text'",
        user_item([{"type": "text", "text": "hi"}], "assistant"),
        "invalid_value",
        "item.content[0].type",
        "Invalid value: 'text'. Value must be 'output_text'.",
    ),
    (
        "ga",
        "assistant audio",
        user_item([{"type": "output_audio", "audio": ""}], "assistant"),
        "invalid_value",
        "item.content[0].type",
        "Invalid value: 'output_audio'. Value must be 'output_text'.",
    ),
    (
        "beta",
        "beta user content 'text'",
        user_item([{"type": "text", "text": "hi"}]),
        "invalid_value",
        "item.content[0].type",
        "Invalid value: 'text'. Supported values are: 'input_text' and 'input_audio'.",
    ),
    (
        "ga",
        "empty commit",
        {"type": "input_audio_buffer.commit"},
        "input_audio_buffer_commit_empty",
        None,
        "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but "
        "buffer only has 0.00ms of audio.",
    ),
    (
        "ga",
        "cancel with nothing active",
        {"type": "response.cancel"},
        "response_cancel_not_active",
        None,
        "Cancellation failed: no active response found",
    ),
    (
        "ga",
        "unknown previous_item_id",
        {**user_item([{"type": "input_text", "text": "x"}]), "previous_item_id": "msg_missing"},
        "invalid_value",
        "previous_item_id",
        "^Error adding item: .*'msg_missing' does not exist",
    ),
    (
        "ga",
        "output for an unknown call",
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": "call_nope", "output": "{}"},
        },
        "invalid_value",
        "item.call_id",
        "^No tool call found for function call output with call_id call_nope",
    ),
    (
        "ga",
        "retrieve unknown",
        {"type": "conversation.item.retrieve", "item_id": "msg_x"},
        "item_retrieve_invalid_item_id",
        None,
        "Error retrieving item: the item with id 'msg_x' does not exist.",
    ),
    (
        "beta",
        "retrieve unknown, pipecat's event_id echoed",
        {"type": "conversation.item.retrieve", "item_id": "msg_x", "event_id": "rci_msg_x"},
        "item_retrieve_invalid_item_id",
        None,
        "Error retrieving item: the item with id 'msg_x' does not exist.",
    ),
    (
        "ga",
        "delete unknown",
        {"type": "conversation.item.delete", "item_id": "msg_x"},
        "item_delete_invalid_item_id",
        None,
        "Error deleting item: the item with id 'msg_x' does not exist.",
    ),
    (
        "ga",
        "truncate unknown",
        {
            "type": "conversation.item.truncate",
            "item_id": "msg_x",
            "content_index": 0,
            "audio_end_ms": 10,
        },
        "item_truncate_invalid_item_id",
        None,
        "Error truncating item: the item with id 'msg_x' does not exist.",
    ),
    (
        "ga",
        "negative audio_end_ms",
        {
            "type": "conversation.item.truncate",
            "item_id": "msg_x",
            "content_index": 0,
            "audio_end_ms": -1,
        },
        "integer_below_min_value",
        "audio_end_ms",
        "^Invalid 'audio_end_ms': integer below minimum value",
    ),
    (
        "ga",
        "unknown top-level field",
        {"type": "response.cancel", "bogus": True},
        "unknown_parameter",
        "bogus",
        "Unknown parameter: 'bogus'.",
    ),
]


@pytest.mark.parametrize(
    ("protocol", "frame", "code", "param", "message"),
    [case[:1] + case[2:] for case in ERROR_CASES],
    ids=[case[1] for case in ERROR_CASES],
)
def test_error_cases_of_section_8(
    protocol: str, frame: Any, code: str | None, param: str | None, message: str
) -> None:
    session = ServerSession(protocol=protocol, vad_factory=make_vad)  # type: ignore[arg-type]
    session.created_events()
    before = json.dumps(session.session, sort_keys=True)
    items_before = list(session._order)
    raw = frame if isinstance(frame, (str, bytes)) else json.dumps(frame)
    events = session.receive(raw)
    assert [e["type"] for e in events] == ["error"]
    error = events[0]["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code
    assert error["param"] == param
    if message.startswith("^"):
        assert re.search(message, error["message"]), error["message"]
    else:
        assert error["message"] == message
    client_event_id = frame.get("event_id") if isinstance(frame, dict) else None
    assert error["event_id"] == (client_event_id if isinstance(client_event_id, str) else None)
    # The failing event changed nothing.
    assert json.dumps(session.session, sort_keys=True) == before
    assert session._order == items_before


@pytest.mark.parametrize("protocol", ["ga", "beta"])
def test_duplicate_item_id_is_refused_with_the_live_code(protocol: str) -> None:
    # Live: code item_create_duplicate_item_id, param null; the second item is not added.
    session = ServerSession(protocol=protocol)  # type: ignore[arg-type]
    session.created_events()
    create = {
        "type": "conversation.item.create",
        "item": {
            "id": "msg_a",
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "first"}],
        },
    }
    assert session.receive(json.dumps(create))[-1]["item"]["id"] == "msg_a"
    again = {**create, "event_id": "evt_again"}
    again["item"] = {**create["item"], "content": [{"type": "input_text", "text": "second"}]}
    events = session.receive(json.dumps(again))
    assert [e["type"] for e in events] == ["error"]
    assert events[0]["error"] == {
        "type": "invalid_request_error",
        "code": "item_create_duplicate_item_id",
        "message": "Error adding item: an item with id 'msg_a' already exists.",
        "param": None,
        "event_id": "evt_again",
    }
    assert session._order == ["msg_a"]
    assert session._items["msg_a"]["content"][0]["text"] == "first"


async def test_errors_that_need_state() -> None:
    driver = Driver("ga")
    # Commit of less than 100 ms reports what the buffer holds.
    await driver.send(
        text_session("ga"),
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
        },
    )
    await driver.append_audio(b"\x00\x00" * 1200)  # 50 ms
    error = (await driver.send({"type": "input_audio_buffer.commit"}))[0]["error"]
    assert error["code"] == "input_audio_buffer_commit_empty"
    assert "buffer only has 50.00ms of audio." in error["message"]
    # G.711: 100 ms is 800 bytes.
    await driver.send(
        {"type": "input_audio_buffer.clear"},
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"}}}},
        },
    )
    await driver.append_audio(b"\xff" * 800, frame_ms=100)
    committed = await driver.send({"type": "input_audio_buffer.commit"})
    assert committed[0]["type"] == "input_audio_buffer.committed"

    # A second response.create while one is active: the error echoes the client's event_id
    # and no response.created / response.done follows for it.
    driver.session.feed(json.dumps(USER_TEXT))
    driver.session.feed(json.dumps({"type": "response.create"}))
    driver.session.feed(json.dumps({"type": "response.create", "event_id": "evt_second"}))
    events = driver.session.drain()
    active = next(e for e in events if e["type"] == "response.created")["response"]["id"]
    error = events[-1]["error"]
    assert error["code"] == "conversation_already_has_active_response"
    assert error["message"] == (
        f"Conversation already has an active response in progress: {active}. "
        "Wait until the response is finished before creating a new one."
    )
    assert error["event_id"] == "evt_second" and error["param"] is None
    await driver._run_responses()
    assert sum(e["type"] == "response.done" for e in driver.events) == 1

    # Truncate: a text item is not audio; an audio item cannot be cut past its length.
    text_item = next(e for e in driver.events if e["type"] == "response.done")["response"][
        "output"
    ][0]["id"]
    error = (
        await driver.send(
            {
                "type": "conversation.item.truncate",
                "item_id": text_item,
                "content_index": 0,
                "audio_end_ms": 0,
            }
        )
    )[0]["error"]
    assert error["message"] == "Only model output audio messages can be truncated"
    assert (error["code"], error["param"]) == ("unsupported_content_type", None)
    await driver.send(
        {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["audio"]}}
    )
    await driver.send(USER_TEXT, {"type": "response.create"})
    done = [e for e in driver.events if e["type"] == "response.done"][-1]["response"]
    audio_item = done["output"][0]["id"]
    length_ms = driver.session.stats.output_audio_bytes // 48
    error = (
        await driver.send(
            {
                "type": "conversation.item.truncate",
                "item_id": audio_item,
                "content_index": 0,
                "audio_end_ms": length_ms + 500,
            }
        )
    )[0]["error"]
    assert error["message"] == (
        f"Audio content of {length_ms}ms is already shorter than {length_ms + 500}ms"
    )
    assert error["param"] == "audio_end_ms"
    # The voice is locked once the model produced audio.
    error = (
        await driver.send(
            {
                "type": "session.update",
                "session": {"type": "realtime", "audio": {"output": {"voice": "ash"}}},
            }
        )
    )[0]["error"]
    assert error["code"] == "cannot_update_voice"


async def test_responder_parts_become_one_response() -> None:
    driver = Driver("ga")

    async def responder(ctx: Any) -> Any:
        assert ctx.user_text == "hi" and not ctx.audio_output
        yield Text("First,")
        yield Delay(0.0)
        yield FunctionCall("lookup", {"q": "x"})
        yield Text("then this.")

    driver.responder = responder
    events = await driver.send(text_session("ga"), USER_TEXT, {"type": "response.create"})
    done = next(e for e in events if e["type"] == "response.done")["response"]
    assert [item["type"] for item in done["output"]] == ["message", "function_call", "message"]
    assert [e["output_index"] for e in events if e["type"] == "response.output_item.added"] == [
        0,
        1,
        2,
    ]
    assert json.loads(done["output"][1]["arguments"]) == {"q": "x"}
    assert done["output"][2]["content"][0]["text"] == "then this."


@pytest.mark.parametrize(
    ("fmt", "ga_type", "decode"),
    [
        ("g711_ulaw", "audio/pcmu", "ulaw2lin"),
        ("g711_alaw", "audio/pcma", "alaw2lin"),
    ],
)
async def test_g711_in_and_out(fmt: str, ga_type: str, decode: str) -> None:
    import audioop  # the oracle for G.711

    driver = Driver("ga")
    await driver.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {
                    "input": {"format": {"type": ga_type}},
                    "output": {"format": {"type": ga_type}},
                },
            },
        }
    )
    # Speech at 8 kHz, G.711-encoded by the oracle: 0.5 s silence, 1 s voiced, 0.6 s silence.
    t = np.arange(8000) / 8000
    voiced = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 6)) * 0.3 / 2.3
    pcm = np.concatenate([np.zeros(4000), voiced, np.zeros(4800)])
    linear = np.round(pcm * 32767).astype("<i2").tobytes()
    encode = audioop.lin2ulaw if fmt == "g711_ulaw" else audioop.lin2alaw
    events = await driver.append_audio(encode(linear, 2), frame_ms=20 * 6)  # 160 bytes = 20 ms
    started = next(e for e in events if e["type"] == "input_audio_buffer.speech_started")
    stopped = next(e for e in events if e["type"] == "input_audio_buffer.speech_stopped")
    assert started["audio_start_ms"] == pytest.approx(200, abs=20)  # 500 ms - 300 ms padding
    assert 1700 <= stopped["audio_end_ms"] <= 1900  # 1500 ms + 200 ms tail (+ hangover)
    done = next(e for e in events if e["type"] == "response.done")["response"]
    assert done["audio"]["output"]["format"] == {"type": ga_type}
    audio = b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )
    # 8 bytes per ms; decoded by the oracle it is voiced speech with pauses.
    samples = np.frombuffer(getattr(audioop, decode)(audio, 2), dtype="<i2").astype(float)
    frames = samples[: len(samples) // 160 * 160].reshape(-1, 160)
    level = 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) / 32768 + 1e-12)
    assert (level > -30).mean() > 0.5 and (level < -60).any()
    transcript = done["output"][0]["content"][0]["transcript"]
    # The committed item is the audio from speech start to speech end.
    heard = (stopped["audio_end_ms"] - started["audio_start_ms"]) / 1000
    assert transcript == f"I heard {heard:.2f} s of speech."


@pytest.mark.parametrize("modality", ["text", "audio"])
async def test_max_output_tokens_ends_the_response_incomplete(modality: str) -> None:
    driver = Driver("ga")
    driver.responder = lambda ctx: [Text("word " * 200)]
    events = await driver.send(
        {
            "type": "response.create",
            "response": {"output_modalities": [modality], "max_output_tokens": 5},
        }
    )
    done = next(e for e in events if e["type"] == "response.done")["response"]
    assert done["status"] == "incomplete"
    assert done["status_details"] == {"type": "incomplete", "reason": "max_output_tokens"}
    assert done["max_output_tokens"] == 5
    assert done["output"][0]["status"] == "incomplete"
    assert 5 <= done["usage"]["output_tokens"] <= 7
    kinds = [e["type"] for e in events]
    assert kinds.index("response.output_item.done") < kinds.index("response.done")


async def test_idle_timeout_commits_the_silence_and_responds() -> None:
    driver = Driver("ga")
    await driver.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "output_modalities": ["text"],
                "audio": {
                    "input": {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 5000}}
                },
            },
        },
        USER_TEXT,
        {"type": "response.create"},
    )
    # No timer before the 5 s of silence after response.done have passed.
    assert await driver.append_audio(b"\x00\x00" * 24 * 4900) == []
    events = await driver.append_audio(b"\x00\x00" * 24 * 200)
    kinds = [e["type"] for e in events]
    assert kinds[:5] == [
        "input_audio_buffer.timeout_triggered",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
    ]
    timeout = events[0]
    assert timeout["audio_start_ms"] == 0
    assert timeout["audio_end_ms"] == 5000
    assert events[1]["item_id"] == timeout["item_id"]
    check_fields(events)
    from realtalk.events import UnknownEvent, parse_server_event

    assert not isinstance(parse_server_event(json.dumps(timeout)), UnknownEvent)
    # The committed item holds the idle audio; the reply reports it.
    done = next(e for e in events if e["type"] == "response.done")["response"]
    assert done["output"][0]["content"][0]["text"] == "I heard 5.00 s of speech."
    # Without idle_timeout_ms nothing happens however long the silence.
    quiet = Driver("ga")
    await quiet.send(USER_TEXT, {"type": "response.create"})
    assert await quiet.append_audio(b"\x00\x00" * 24 * 8000) == []
