"""The tool registry: schema checks, sync and async handlers, timeouts and error outputs."""

from __future__ import annotations

import json
import threading
from typing import Any

import anyio
import pytest

from realtalk.tools import ToolRegistry

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "minLength": 1},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "unit": {"enum": ["c", "f"]},
        },
        "required": ["city"],
        "additionalProperties": False,
    },
}


def weather(arguments: dict[str, Any]) -> dict[str, Any]:
    return {"city": arguments["city"], "temp": 22, "thread": threading.current_thread().name}


async def test_sync_handler_runs_in_a_worker_thread() -> None:
    registry = ToolRegistry()
    registry.add(WEATHER, weather)
    result = await registry.call("get_weather", '{"city": "Paris", "days": 2}')
    assert result.ok
    output = json.loads(result.output)
    assert output["city"] == "Paris" and output["temp"] == 22
    assert output["thread"] != threading.current_thread().name
    assert result.duration_s >= 0


async def test_async_handler_and_string_results_pass_through() -> None:
    registry = ToolRegistry()

    async def lookup(arguments: dict[str, Any]) -> str:
        await anyio.sleep(0)
        return f"plain text for {arguments['city']}"

    registry.add(dict(WEATHER, name="lookup"), lookup)
    result = await registry.call("lookup", {"city": "Oslo"})
    assert result.ok and result.output == "plain text for Oslo"


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ('{"city": ', "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ("{}", "'city' is a required property"),
        ('{"city": "Rome", "days": 9}', "at days: 9 is greater than the maximum of 7"),
        ('{"city": "Rome", "unit": "k"}', "at unit"),
        ('{"city": "Rome", "extra": true}', "Additional properties are not allowed"),
        ('{"city": ""}', "at city"),
    ],
)
async def test_invalid_arguments_become_error_outputs(arguments: str, fragment: str) -> None:
    calls: list[Any] = []
    registry = ToolRegistry()
    registry.add(WEATHER, calls.append)
    result = await registry.call("get_weather", arguments)
    assert not result.ok
    error = json.loads(result.output)["error"]
    assert fragment in error
    assert calls == []  # the handler never saw invalid arguments


async def test_schema_checks_follow_jsonschema_semantics() -> None:
    # Independent oracle: what the jsonschema reference validator accepts for a nested schema.
    import jsonschema

    schema = {"type": "object", "properties": {"items": {"type": "array", "items": {
        "type": "object", "properties": {"n": {"type": "number"}}, "required": ["n"]}}}}
    registry = ToolRegistry()
    registry.add({"name": "nested", "parameters": schema}, lambda a: "ok")
    for candidate in ({"items": [{"n": 1}, {"n": 2.5}]}, {"items": [{"n": "x"}]},
                      {"items": [{}]}, {"items": "no"}, {}):
        expected = jsonschema.Draft202012Validator(schema).is_valid(candidate)
        result = await registry.call("nested", json.dumps(candidate))
        assert result.ok == expected, candidate


async def test_exceptions_and_timeouts_become_error_outputs() -> None:
    registry = ToolRegistry(timeout=0.2)
    released = threading.Event()

    def broken(arguments: dict[str, Any]) -> None:
        raise RuntimeError("database down")

    async def slow(arguments: dict[str, Any]) -> str:
        await anyio.sleep(10)
        return "never"

    def stuck(arguments: dict[str, Any]) -> str:
        released.wait(5)
        return "late"

    registry.add({"name": "broken"}, broken)
    registry.add({"name": "slow"}, slow)
    registry.add({"name": "stuck"}, stuck)
    failed = await registry.call("broken", "{}")
    assert json.loads(failed.output) == {
        "error": "tool 'broken' failed: RuntimeError: database down"}
    with anyio.fail_after(3):
        timed_out = await registry.call("slow", "")
        thread_timed_out = await registry.call("stuck", "{}")
    released.set()
    for result, name in ((timed_out, "slow"), (thread_timed_out, "stuck")):
        assert not result.ok
        assert json.loads(result.output) == {"error": f"tool {name!r} timed out after 0.2 s"}
        assert 0.15 < result.duration_s < 2


async def test_unknown_tool_and_unserialisable_result() -> None:
    registry = ToolRegistry()
    registry.add({"name": "weird"}, lambda a: {1, 2})
    unknown = await registry.call("nope", "{}")
    assert "unknown tool 'nope'" in json.loads(unknown.output)["error"]
    weird = await registry.call("weird", "{}")
    assert not weird.ok and "not JSON" in json.loads(weird.output)["error"]


async def test_handlers_run_concurrently() -> None:
    registry = ToolRegistry()
    barrier = anyio.Event()
    seen: list[str] = []

    async def first(arguments: dict[str, Any]) -> str:
        seen.append("first")
        await barrier.wait()
        return "1"

    async def second(arguments: dict[str, Any]) -> str:
        seen.append("second")
        barrier.set()
        return "2"

    registry.add({"name": "first"}, first)
    registry.add({"name": "second"}, second)
    results: dict[str, str] = {}

    async def run(name: str) -> None:
        results[name] = (await registry.call(name, "{}")).output

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "first")
            tg.start_soon(run, "second")
    assert results == {"first": "1", "second": "2"}


async def test_cancellation_of_the_caller_propagates() -> None:
    registry = ToolRegistry(timeout=None)

    async def forever(arguments: dict[str, Any]) -> str:
        await anyio.sleep_forever()
        return ""

    registry.add({"name": "forever"}, forever)
    with anyio.move_on_after(0.05) as scope:
        await registry.call("forever", "{}")
    assert scope.cancelled_caught


def test_registry_definitions_and_bad_registrations() -> None:
    registry = ToolRegistry()
    registry.add({"name": "bare"}, lambda a: None)
    registry.add(WEATHER, weather)
    definitions = registry.definitions()
    assert [d["name"] for d in definitions] == ["bare", "get_weather"]
    assert definitions[0] == {"type": "function", "name": "bare",
                              "parameters": {"type": "object", "properties": {}}}
    assert definitions[1] == WEATHER
    with pytest.raises(ValueError, match="already registered"):
        registry.add(WEATHER, weather)
    with pytest.raises(ValueError, match="non-empty string 'name'"):
        registry.add({"description": "x"}, weather)
    with pytest.raises(ValueError, match="not a valid JSON schema"):
        registry.add({"name": "bad", "parameters": {"type": "no-such-type"}}, weather)
    with pytest.raises(ValueError, match="only function tools"):
        registry.add({"name": "m", "type": "mcp"}, weather)
    with pytest.raises(TypeError, match="callable"):
        registry.add({"name": "n"}, "not callable")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        ToolRegistry(timeout=0)
    registry.remove("bare")
    assert "bare" not in registry and len(registry) == 1
    with pytest.raises(KeyError, match="no tool named 'bare'"):
        registry.remove("bare")
