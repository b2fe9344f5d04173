"""The default responder's tool calls: which tool the user names, and arguments taken from the
user's words where the schema allows, falling back to the schema's examples. Every argument
object is checked with `jsonschema` (an independent validator) against the tool's schema."""

from __future__ import annotations

import json
from typing import Any

import anyio
import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai import OpenAI
from realtalk.simulator import FunctionCall, ResponseContext, Simulator, Text, default_responder

pytestmark = pytest.mark.filterwarnings(
    "ignore:connect\\(\\) must be used as a context manager:DeprecationWarning"
)

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city"],
    },
}
BOOKING = {
    "type": "function",
    "name": "book_table",
    "parameters": {
        "type": "object",
        "properties": {
            "restaurant": {"type": "string"},
            "party_size": {"type": "integer", "minimum": 1, "maximum": 12},
            "time": {"type": "string", "examples": ["19:00"]},
            "outdoor": {"type": "boolean"},
        },
        "required": ["restaurant", "party_size", "time"],
    },
}


def reply(text: str, tools: list[dict[str, Any]], tool_choice: Any = "auto") -> Any:
    ctx = ResponseContext(
        response_id="resp_1",
        items=[{"type": "message", "role": "user",
                "content": [{"type": "input_text", "text": text}]}],
        instructions="",
        tools=tools,
        tool_choice=tool_choice,
        audio_output=False,
        metadata=None,
        conversation="auto",
        protocol="ga",
    )  # fmt: skip
    (part,) = default_responder(ctx)
    return part


def call(text: str, tools: list[dict[str, Any]], tool_choice: Any = "auto") -> tuple[str, Any]:
    part = reply(text, tools, tool_choice)
    assert isinstance(part, FunctionCall), part
    arguments = json.loads(part.arguments_json)
    tool = next(t for t in tools if t["name"] == part.name)
    jsonschema.validate(arguments, tool["parameters"])
    return part.name, arguments


@pytest.mark.parametrize(
    ("text", "tool_choice", "expected"),
    [
        # The issue's example: the city is the proper noun the user said.
        ("How warm is it in Paris?", "required", {"city": "Paris"}),
        ("How warm is it in Paris?", {"type": "function", "name": "get_weather"},
         {"city": "Paris"}),
        # Naming the tool: "weather" names get_weather; an enum value the user said.
        ("What's the weather in New York, in fahrenheit?", "auto",
         {"city": "New York", "unit": "fahrenheit"}),
        # Lower case: the word after a preposition.
        ("get weather for lisbon please", "auto", {"city": "lisbon"}),
        # The parameter's own name, then its value.
        ("weather, city Oslo, unit celsius", "auto", {"city": "Oslo", "unit": "celsius"}),
        # Nothing usable: the schema's example.
        ("get weather", "auto", {"city": "example city"}),
    ],
)  # fmt: skip
def test_weather_arguments_follow_the_words(
    text: str, tool_choice: Any, expected: dict[str, Any]
) -> None:
    assert call(text, [WEATHER], tool_choice) == ("get_weather", expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('Book table at "Chez Panisse" for four people',
         {"restaurant": "Chez Panisse", "party_size": 4, "time": "19:00"}),
        ("book a table at Nopa for 2, time 20:30",
         {"restaurant": "Nopa", "party_size": 2, "time": "20:30"}),
        # 40 is beyond the schema's maximum: the example (the minimum) instead.
        ("book a table for 40 at Nopa", {"restaurant": "Nopa", "party_size": 1, "time": "19:00"}),
    ],
)  # fmt: skip
def test_numbers_quotes_and_examples(text: str, expected: dict[str, Any]) -> None:
    assert call(text, [BOOKING]) == ("book_table", expected)


def test_a_tool_is_called_only_when_named_or_forced() -> None:
    assert reply("How warm is it in Paris?", [WEATHER]) == Text(
        "You said: How warm is it in Paris?"
    )
    assert reply("get weather in Rome", [WEATHER], "none") == Text(
        "You said: get weather in Rome"
    )
    assert call("book a table at Nopa", [WEATHER, BOOKING])[0] == "book_table"


WORDS = st.sampled_from(
    ["Paris", "paris", "in", "for", "the", "4", "twelve", "2.5", "-3", '"Big Sur"', "celsius",
     "city", "at", "Nopa", "unit", "I", "weather", "fahrenheit", "?", ",", "New", "York"]
)  # fmt: skip


@given(st.lists(WORDS, max_size=12))
def test_arguments_always_satisfy_the_schema(words: list[str]) -> None:
    text = " ".join(words)
    for tool in (WEATHER, BOOKING):
        call(text, [tool], "required")


def function_call_done(sim: Simulator, text: str) -> dict[str, Any]:
    client = OpenAI(api_key="sk-local", websocket_base_url=sim.websocket_base_url, max_retries=0)
    with client.realtime.connect(model="gpt-realtime") as conn:
        conn.session.update(session={"type": "realtime", "output_modalities": ["text"],
                                     "tools": [WEATHER], "tool_choice": "required"})  # fmt: skip
        conn.conversation.item.create(
            item={"type": "message", "role": "user",
                  "content": [{"type": "input_text", "text": text}]}  # fmt: skip
        )
        conn.response.create()
        for event in conn:
            if event.type == "response.function_call_arguments.done":
                return event.model_dump()
    raise AssertionError("no function call")


async def test_the_issue_example_through_the_openai_client() -> None:
    async with Simulator() as sim:
        done = await anyio.to_thread.run_sync(function_call_done, sim, "How warm is it in Paris?")
    assert done["name"] == "get_weather"
    assert json.loads(done["arguments"]) == {"city": "Paris"}
