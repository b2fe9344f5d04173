"""Scripted sessions (`Simulator(script=...)`, `realtalk simulate --script`): turns by user text,
audio or tool output, replies with text, tool calls and faults, sequence and match modes, and a
clear error for every bad script. The client is the `openai` package; the CLI runs as a user
runs it."""

from __future__ import annotations

import base64
import gc
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from openai import OpenAI
from realtalk.simulator import Script, ScriptError, Simulator, buzz

pytestmark = pytest.mark.filterwarnings(
    "ignore:connect\\(\\) must be used as a context manager:DeprecationWarning"
)

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
WEATHER_SCRIPT = {
    "turns": [
        {"user": "weather in (?P<city>\\w+)",
         "reply": [{"text": "Let me check."},
                   {"tool": "get_weather", "arguments": {"city": "{city}"}}]},
        {"tool_output": "get_weather", "reply": "It is {output} in {city}."},
        {"user": "thanks", "reply": [{"text": "You're welcome."}]},
    ]
}  # fmt: skip


class Conversation:
    """One GA session through openai's synchronous client (run in a worker thread)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._manager: Any = None

    @classmethod
    def open(cls, sim: Simulator, **session: Any) -> Conversation:
        client = OpenAI(api_key="sk-local", websocket_base_url=sim.websocket_base_url,
                        max_retries=0)  # fmt: skip
        manager = client.realtime.connect(model="gpt-realtime")
        talk = cls(manager.enter())
        talk._manager = manager
        talk.conn.session.update(
            session={"type": "realtime", "output_modalities": ["text"], **session}
        )
        return talk

    def close(self) -> None:
        self._manager.__exit__(None, None, None)

    def until_done(self) -> list[dict[str, Any]]:
        events = []
        while True:
            event = json.loads(self.conn.recv_bytes())
            events.append(event)
            if event["type"] == "response.done":
                return events

    def say(self, text: str) -> list[dict[str, Any]]:
        self.conn.conversation.item.create(
            item={"type": "message", "role": "user",
                  "content": [{"type": "input_text", "text": text}]}  # fmt: skip
        )
        self.conn.response.create()
        return self.until_done()

    def answer(self, call_id: str, output: str) -> list[dict[str, Any]]:
        self.conn.conversation.item.create(
            item={"type": "function_call_output", "call_id": call_id, "output": output}
        )
        self.conn.response.create()
        return self.until_done()


def done_output(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "response.done"][-1]["response"]["output"]


def text_of(events: list[dict[str, Any]]) -> str:
    return " ".join(
        part["text"]
        for item in done_output(events)
        if item["type"] == "message"
        for part in item["content"]
    )


async def test_a_sequence_script_with_a_tool_turn() -> None:
    async with Simulator(script=WEATHER_SCRIPT) as sim:

        def session() -> list[list[dict[str, Any]]]:
            talk = Conversation.open(sim, tools=[WEATHER_TOOL])
            try:
                first = talk.say("What's the weather in Oslo?")
                call = next(i for i in done_output(first) if i["type"] == "function_call")
                second = talk.answer(call["call_id"], "8 degrees")
                # Off script: turn 3 expects "thanks".
                third = talk.say("and tomorrow?")
                return [first, second, third]
            finally:
                talk.close()

        first, second, third = await anyio.to_thread.run_sync(session)
    message, call = done_output(first)
    assert message["content"][0]["text"] == "Let me check."
    assert (call["name"], json.loads(call["arguments"])) == ("get_weather", {"city": "Oslo"})
    assert text_of(second) == "It is 8 degrees in Oslo."
    error = next(e for e in third if e["type"] == "error")["error"]
    assert error["message"] == (
        "realtalk script: turn 3 expects the user to say /thanks/, but the response answers "
        "the user saying 'and tomorrow?'"
    )
    assert third[-1]["response"]["status"] == "failed"


async def test_each_connection_starts_the_script_afresh() -> None:
    async with Simulator(script=WEATHER_SCRIPT) as sim:

        def first_reply() -> str:
            talk = Conversation.open(sim, tools=[WEATHER_TOOL])
            try:
                return text_of(talk.say("weather in Rome"))
            finally:
                talk.close()

        replies = [await anyio.to_thread.run_sync(first_reply) for _ in range(2)]
    assert replies == ["Let me check.", "Let me check."]


async def test_a_long_running_script_forgets_each_connection_when_it_ends() -> None:
    # `simulate --script` runs for days: where a connection is in the script must go with the
    # connection, not pile up in the script (once per connection ever made).
    from realtalk.simulator.script import _Progress
    from realtalk.transport import open_websocket

    def progress_records() -> int:
        gc.collect()
        return sum(isinstance(o, _Progress) for o in gc.get_objects())

    script = Script.from_json(WEATHER_SCRIPT)
    before = progress_records()
    async with Simulator(script=script) as sim:
        for _ in range(12):
            url = sim.url + "?model=gpt-realtime"
            async with open_websocket(url, headers={"Authorization": "Bearer sk-test"}) as ws:
                await ws.send_text(json.dumps({"type": "session.update", "session": {
                    "type": "realtime", "output_modalities": ["text"]}}))  # fmt: skip
                await ws.send_text(json.dumps({"type": "conversation.item.create", "item": {
                    "type": "message", "role": "user",
                    "content": [{"type": "input_text", "text": "weather in Oslo"}]}}))  # fmt: skip
                await ws.send_text(json.dumps({"type": "response.create"}))
                with anyio.fail_after(10):
                    while json.loads(await ws.receive())["type"] != "response.done":
                        pass
                # While the connection lives, its place in the script is kept.
                assert progress_records() == before + 1
            with anyio.fail_after(10):
                while sim._live:  # the server side finishes closing
                    await anyio.sleep(0.01)
        assert progress_records() == before


async def test_match_mode_picks_the_first_turn_that_holds_then_the_fallback() -> None:
    script = {
        "mode": "match",
        "turns": [
            {"user": "^hello", "reply": "Hi there."},
            {"user": "bye", "reply": [{"text": "Goodbye."}]},
        ],
        "otherwise": [{"text": "I only know hello and bye."}],
    }
    async with Simulator(script=script) as sim:

        def session() -> list[str]:
            talk = Conversation.open(sim)
            try:
                return [text_of(talk.say(t)) for t in ("bye now", "Hello!", "what?", "hello")]
            finally:
                talk.close()

        replies = await anyio.to_thread.run_sync(session)
    assert replies == ["Goodbye.", "Hi there.", "I only know hello and bye.", "Hi there."]


async def test_an_exhausted_script_falls_back_to_the_default_responder() -> None:
    async with Simulator(script=[{"reply": "First."}]) as sim:

        def session() -> list[str]:
            talk = Conversation.open(sim)
            try:
                return [text_of(talk.say(t)) for t in ("one", "two")]
            finally:
                talk.close()

        replies = await anyio.to_thread.run_sync(session)
    assert replies == ["First.", "You said: two"]


async def test_an_audio_turn_is_spoken_and_faults_reach_the_client() -> None:
    script = {
        "turns": [
            {"audio": True, "reply": [{"delay": 0.01}, {"text": "I heard you."}]},
            {"reply": [{"error": "The model is overloaded."}]},
            {"reply": [{"close": 4000, "reason": "scripted close"}]},
        ]
    }
    speech = (np.sin(np.arange(12000) * 2 * np.pi * 150 / 24000) * 8000).astype("<i2")
    async with Simulator(script=script, synthesizer=buzz) as sim:

        def session() -> tuple[list[dict[str, Any]], list[dict[str, Any]], Any]:
            client = OpenAI(api_key="sk-local", websocket_base_url=sim.websocket_base_url,
                            max_retries=0)  # fmt: skip
            with client.realtime.connect(model="gpt-realtime") as conn:
                conn.session.update(session={"type": "realtime",
                                             "audio": {"input": {"turn_detection": None}}})  # fmt: skip
                conn.input_audio_buffer.append(audio=base64.b64encode(speech.tobytes()).decode())
                conn.input_audio_buffer.commit()
                conn.response.create()
                talk = Conversation(conn)
                spoken = talk.until_done()
                failed = talk.say("hello?")
                conn.conversation.item.create(
                    item={"type": "message", "role": "user",
                          "content": [{"type": "input_text", "text": "still there?"}]}  # fmt: skip
                )
                conn.response.create()
                try:
                    while True:
                        conn.recv_bytes()
                except Exception as exc:  # the server closed the connection
                    closed = exc
                return spoken, failed, closed

        spoken, failed, closed = await anyio.to_thread.run_sync(session)
    transcript = next(e for e in spoken if e["type"] == "response.output_audio_transcript.done")
    assert transcript["transcript"] == "I heard you."
    assert any(e["type"] == "response.output_audio.delta" for e in spoken)
    error = next(e for e in failed if e["type"] == "error")["error"]
    assert error["message"] == "The model is overloaded."
    assert getattr(closed, "rcvd", None) is not None and closed.rcvd.code == 4000
    assert closed.rcvd.reason == "scripted close"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"turns": {}}, "turns: expected a list of turns"),
        ({"turns": [], "tempo": 1}, "unknown field 'tempo' (expected mode, turns, otherwise)"),
        ({"mode": "random", "turns": []}, "mode: expected 'sequence' or 'match', got 'random'"),
        ([{"user": "x"}], "turns[0]: missing 'reply'"),
        ([{"user": "(", "reply": "x"}], "turns[0].user: bad regular expression: "),
        ([{"user": "x", "audio": True, "reply": "x"}], "turns[0]: one condition per turn"),
        ([{"reply": "ok"}, {"reply": []}], "turns[1].reply: expected a string or a non-empty"),
        ([{"reply": [{"txt": "hi"}]}], "turns[0].reply[0]: expected one of text, tool, delay"),
        ([{"reply": [{"tool": "f", "arguments": "{bad"}]}],
         "turns[0].reply[0].arguments: a string must hold JSON"),
        ([{"reply": [{"close": 99}]}], "turns[0].reply[0].close: expected a close code"),
        ([{"reply": [{"delay": -1}]}], "turns[0].reply[0].delay: expected seconds"),
        ([{"reply": [{"text": "a", "voice": "b"}]}],
         "turns[0].reply[0]: unknown field 'voice' in a text part"),
        ({"turns": [], "otherwise": 3}, "otherwise: expected a string or a non-empty list"),
        ("turns", "a script is an object with 'turns', or a list of turns"),
    ],
)  # fmt: skip
def test_a_bad_script_says_where_and_what(data: Any, message: str) -> None:
    with pytest.raises(ScriptError) as caught:
        Script.from_json(data)
    assert str(caught.value).startswith(message), str(caught.value)


def test_a_responder_and_a_script_are_exclusive() -> None:
    with pytest.raises(ValueError, match="not both"):
        Simulator(responder=lambda ctx: "x", script=[{"reply": "y"}])


# ---- the command line -----------------------------------------------------------------------

REALTALK = Path(sys.executable).with_name("realtalk")


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    return subprocess.run([str(REALTALK), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)  # fmt: skip


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "realtalk: --script: cannot read "),
        ("{not json", "is not JSON: "),
        ('[{"reply": [{"txt": "x"}]}]', "turns[0].reply[0]: expected one of text, tool"),
    ],
)
def test_simulate_with_a_bad_script_is_one_line(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "turns.json"
    if content is not None:
        path.write_text(content)
    result = run_cli("simulate", "--port", "0", "--script", str(path))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_simulate_serves_a_script(tmp_path: Path) -> None:
    path = tmp_path / "turns.json"
    path.write_text(json.dumps([{"user": "hello", "reply": "Scripted hello back."}]))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with subprocess.Popen([str(REALTALK), "simulate", "--port", str(port), "--pace", "fast",
                           "--speech", "buzz", "--script", str(path)],
                          stdout=subprocess.PIPE, text=True) as server:  # fmt: skip
        try:
            banner = server.stdout.readline() if server.stdout else ""
            assert f"script {path}" in banner, banner
            result = run_cli("talk", "hello there", "--url", f"ws://127.0.0.1:{port}/v1/realtime")
            assert result.returncode == 0, result.stderr
            assert "Scripted hello back." in result.stdout
        finally:
            server.send_signal(2)
            server.wait(timeout=10)


def test_the_readme_example_is_a_valid_script() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    start = readme.index("`turns.json`:\n\n```json\n") + len("`turns.json`:\n\n```json\n")
    script = Script.from_json(json.loads(readme[start : readme.index("```", start)]))
    assert [turn.describe() for turn in script.turns] == [
        "the user to say /weather in (?P<city>\\w+)/",
        "the output of the get_weather tool",
        "the user to speak",
        "the user to say /bye/",
    ]
