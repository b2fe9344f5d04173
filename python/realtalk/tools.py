"""Function tools: a registry of definitions and handlers, and the safe way to run a call.

A handler receives the call's arguments as one ``dict`` (parsed from the model's JSON and
checked against the tool's ``parameters`` schema first) and returns a ``str`` (sent as it is)
or anything ``json.dumps`` accepts (but NaN and Infinity, which JSON lacks: refused). Sync
handlers run in a worker thread, async handlers in the caller's task; both under a timeout.
Whatever goes wrong (unknown tool, bad JSON or JSON nested too deeply, arguments that break the
schema, an exception, a timeout, an output that is not JSON) becomes an ``{"error": ...}`` output
the model can read, never an exception in the caller's loop. Cancellation of the caller still
propagates.
"""

from __future__ import annotations

import inspect
import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import jsonschema  # type: ignore[import-untyped]
import jsonschema.exceptions  # type: ignore[import-untyped]
import jsonschema.validators  # type: ignore[import-untyped]

__all__ = ["Tool", "ToolRegistry", "ToolResult"]

ToolHandler = Callable[[dict[str, Any]], Any] | Callable[[dict[str, Any]], Awaitable[Any]]

_EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class Tool:
    """A registered tool: its definition as sent in ``session.tools`` and its handler."""

    definition: dict[str, Any]
    handler: ToolHandler
    validator: Any

    @property
    def name(self) -> str:
        """The tool's name, from its definition."""
        return str(self.definition["name"])


@dataclass(frozen=True)
class ToolResult:
    """The outcome of one call: ``output`` is what goes into ``function_call_output``."""

    name: str
    output: str
    ok: bool
    duration_s: float


def _error_output(message: str) -> str:
    return json.dumps({"error": message})


class ToolRegistry:
    """Tools by name. ``timeout`` (seconds, or None for none) bounds each call."""

    def __init__(self, *, timeout: float | None = 30.0) -> None:
        if timeout is not None and not (timeout > 0 and math.isfinite(timeout)):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.timeout = timeout
        self._tools: dict[str, Tool] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def get(self, name: str) -> Tool | None:
        """The tool with this name, or None."""
        return self._tools.get(name)

    def add(self, definition: Mapping[str, Any], handler: ToolHandler) -> Tool:
        """Register a function tool. ``definition`` is ``{"name", "description"?,
        "parameters"?}`` with an optional ``"type": "function"``; ``parameters`` must be a
        valid JSON schema. A name already registered is refused (remove it first)."""
        if not isinstance(definition, Mapping):
            raise TypeError("a tool definition is a mapping with at least a 'name'")
        if not callable(handler):
            raise TypeError(f"the handler of a tool must be callable, got {type(handler).__name__}")
        name = definition.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("a tool definition needs a non-empty string 'name'")
        kind = definition.get("type", "function")
        if kind != "function":
            raise ValueError(f"only function tools take a handler, not type {kind!r}")
        if name in self._tools:
            raise ValueError(f"a tool named {name!r} is already registered")
        parameters = definition.get("parameters", _EMPTY_PARAMETERS)
        if not isinstance(parameters, Mapping):
            raise ValueError(f"the parameters of tool {name!r} must be a JSON schema object")
        validator_class = jsonschema.validators.validator_for(parameters)
        try:
            validator_class.check_schema(parameters)
        except jsonschema.exceptions.SchemaError as exc:
            raise ValueError(f"the parameters of tool {name!r} are not a valid JSON schema: "
                             f"{exc.message}") from None
        normalized = {"type": "function", **dict(definition), "parameters": dict(parameters)}
        tool = Tool(normalized, handler, validator_class(parameters))
        self._tools[name] = tool
        return tool

    def remove(self, name: str) -> None:
        """Unregister the tool with this name; KeyError when there is none."""
        if name not in self._tools:
            raise KeyError(f"no tool named {name!r} is registered")
        del self._tools[name]

    def definitions(self) -> list[dict[str, Any]]:
        """The definitions for ``session.tools``, in registration order."""
        return [dict(tool.definition) for tool in self._tools.values()]

    async def call(self, name: str, arguments: str | Mapping[str, Any]) -> ToolResult:
        """Run one call of tool ``name`` with the model's ``arguments`` (a JSON string)."""
        started = time.perf_counter()

        def finish(output: str, ok: bool) -> ToolResult:
            return ToolResult(name, output, ok, time.perf_counter() - started)

        tool = self._tools.get(name)
        if tool is None:
            known = ", ".join(sorted(self._tools)) or "none"
            return finish(_error_output(f"unknown tool {name!r} (known tools: {known})"), False)
        if isinstance(arguments, Mapping):
            parsed: Any = dict(arguments)
        else:
            try:
                parsed = json.loads(arguments) if arguments.strip() else {}
            except (ValueError, AttributeError) as exc:
                return finish(_error_output(f"the arguments are not valid JSON: {exc}"), False)
            except RecursionError:
                # The model controls these bytes: nesting deeper than the parser goes is a
                # bad argument like any other, not a crash of the caller's loop.
                return finish(_error_output("the arguments are nested too deeply to parse"),
                              False)
        if not isinstance(parsed, dict):
            return finish(_error_output("the arguments must be a JSON object"), False)
        try:
            error = jsonschema.exceptions.best_match(tool.validator.iter_errors(parsed))
        except RecursionError:
            return finish(_error_output(f"the arguments for {name!r} are nested too deeply "
                                        "to check against its schema"), False)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            return finish(
                _error_output(f"invalid arguments for {name!r} at {where}: {error.message}"),
                False,
            )
        try:
            with anyio.fail_after(self.timeout):
                result = await self._run(tool.handler, parsed)
        except TimeoutError:
            return finish(_error_output(f"tool {name!r} timed out after {self.timeout} s"), False)
        except Exception as exc:  # the model reads the failure; the user's loop goes on
            return finish(_error_output(f"tool {name!r} failed: {type(exc).__name__}: {exc}"),
                          False)
        if isinstance(result, str):
            return finish(result, True)
        try:
            # NaN and Infinity are not JSON: json.dumps would write them as bare words.
            return finish(json.dumps(result, allow_nan=False), True)
        except RecursionError:
            return finish(_error_output(f"tool {name!r} returned a value nested too deeply "
                                        "to send as JSON"), False)
        except (TypeError, ValueError) as exc:
            return finish(_error_output(f"tool {name!r} returned a value that is not JSON: "
                                        f"{exc}"), False)

    @staticmethod
    async def _run(handler: ToolHandler, arguments: dict[str, Any]) -> Any:
        if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)
        ):
            return await handler(arguments)
        # A thread cannot be interrupted: on timeout it is abandoned and finishes on its own.
        result = await anyio.to_thread.run_sync(handler, arguments, abandon_on_cancel=True)
        if inspect.isawaitable(result):
            return await result
        return result
