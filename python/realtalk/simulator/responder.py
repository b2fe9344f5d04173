"""The responder plug-in API: what the simulated model says.

A responder is called once per response with a `ResponseContext` and produces parts:

- `Text(text)`: words of an assistant message. With audio output they are spoken (synthesised
  speech plus the transcript); with text output they are written.
- `Audio(pcm, transcript)`: explicit assistant audio (pcm16, 24 kHz, mono).
- `FunctionCall(name, arguments)`: a tool call (arguments as a JSON string or a mapping).
- Fault hooks: `Delay(seconds)`, `ServerError(message)` (the response fails),
  `Close(code, reason)` (the server closes the WebSocket), `Drop()` (the TCP connection is cut
  without a close frame).

It may be a plain function returning a string, a part or an iterable of parts, a coroutine
function returning any of those, or an async generator function yielding parts::

    async def responder(ctx: ResponseContext):
        yield Text("Let me check.")
        yield FunctionCall("get_weather", {"city": ctx.user_text or "Paris"})

What a responder remembers between the responses of one connection goes in
``ctx.session_state`` (a dict the session keeps and drops when the connection ends).
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np

from realtalk.simulator._arguments import arguments_from_words


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Audio:
    pcm: bytes
    transcript: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.pcm, np.ndarray):
            if self.pcm.dtype != np.int16:
                raise ValueError("Audio.pcm must be int16 samples or pcm16 bytes")
            object.__setattr__(self, "pcm", self.pcm.tobytes())
        if len(self.pcm) % 2:
            raise ValueError("Audio.pcm holds pcm16 samples: its length must be even")


@dataclass(frozen=True)
class FunctionCall:
    name: str
    arguments: str | Mapping[str, Any] = "{}"
    call_id: str | None = None

    @property
    def arguments_json(self) -> str:
        """The arguments as the JSON string that goes on the wire."""
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(dict(self.arguments))


@dataclass(frozen=True)
class Delay:
    seconds: float


@dataclass(frozen=True)
class ServerError:
    message: str = (
        "The server had an error while processing your request. Sorry about that! "
        "You can retry your request, or contact us through our help center if the error "
        "persists."
    )


@dataclass(frozen=True)
class Close:
    code: int = 1001
    reason: str = "going away"


@dataclass(frozen=True)
class Drop:
    """Cut the TCP connection without a close frame (the client sees 1006)."""


Part: TypeAlias = Text | Audio | FunctionCall | Delay | ServerError | Close | Drop
ResponderResult: TypeAlias = str | Part | Iterable[Part] | AsyncIterator[Part] | None
Responder: TypeAlias = Callable[["ResponseContext"], ResponderResult | Awaitable[ResponderResult]]


@dataclass
class ResponseContext:
    """What a responder sees. ``items`` are the context items in GA shape (the conversation, or
    the response's own ``input``), without audio bytes; `input_audio_ms` gives their length."""

    response_id: str
    items: list[dict[str, Any]]
    instructions: str
    tools: list[dict[str, Any]]
    tool_choice: Any
    audio_output: bool
    metadata: dict[str, str] | None
    conversation: str
    protocol: str
    audio_ms: dict[str, float] = field(default_factory=dict)
    session_id: str = ""  # which connection asks
    # Per-connection state for the responder, kept by the session and dropped with it: a
    # responder keeps what it remembers between responses here (keyed by itself), not in a
    # table of its own that would grow with every connection a long-running server accepts.
    session_state: dict[Any, Any] = field(default_factory=dict)

    @property
    def last_item(self) -> dict[str, Any] | None:
        """The conversation's last item, or None when it is empty."""
        return self.items[-1] if self.items else None

    @property
    def user_text(self) -> str | None:
        """The text (or transcript) of the last user message, if it has any."""
        for item in reversed(self.items):
            if item.get("type") == "message" and item.get("role") == "user":
                texts = [
                    part.get("text") or part.get("transcript") or ""
                    for part in item.get("content", [])
                ]
                joined = " ".join(t for t in texts if t)
                return joined or None
        return None

    def input_audio_ms(self, item: Mapping[str, Any]) -> float:
        """How long the user's audio in this item is, in milliseconds."""
        return self.audio_ms.get(str(item.get("id")), 0.0)


async def iterate_parts(result: Any) -> AsyncGenerator[Part, None]:
    """Normalise every responder return shape into one async stream of parts."""
    if inspect.isawaitable(result):
        result = await result
    if result is None:
        return
    if isinstance(result, str):
        yield Text(result)
    elif isinstance(result, (Text, Audio, FunctionCall, Delay, ServerError, Close, Drop)):
        yield result
    elif hasattr(result, "__aiter__"):
        try:
            async for part in result:
                yield _check_part(part)
        finally:
            # A response cancelled mid-stream stops here: close the user's generator now,
            # inside its task, rather than leaving it to the garbage collector.
            aclose = getattr(result, "aclose", None)
            if aclose is not None:
                await aclose()
    elif isinstance(result, Iterable):
        for part in result:
            yield _check_part(part)
    else:
        raise TypeError(f"a responder returned {type(result).__name__}, not parts")


def _check_part(part: Any) -> Part:
    if isinstance(part, str):
        return Text(part)
    if not isinstance(part, (Text, Audio, FunctionCall, Delay, ServerError, Close, Drop)):
        raise TypeError(f"a responder yielded {type(part).__name__}, not a part")
    return part


# ---- the default responder ---------------------------------------------------------------


def example_value(schema: Mapping[str, Any], name: str = "value") -> Any:
    """A deterministic value that satisfies a (simple) JSON schema."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    if schema.get("examples"):
        return schema["examples"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        properties: Mapping[str, Any] = schema.get("properties", {})
        required = schema.get("required", list(properties))
        return {key: example_value(properties.get(key, {}), key) for key in required}
    if kind == "array":
        count = int(schema.get("minItems", 1))
        return [example_value(schema.get("items", {}), name) for _ in range(count)]
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.0))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    text = f"example {name}"
    min_length = int(schema.get("minLength", 0))
    return text.ljust(min_length, "x")


# Verbs that start tool names ("get_weather"): naming the rest ("weather") names the tool.
_TOOL_VERBS = {"get", "set", "fetch", "lookup", "look", "up", "find", "search", "check", "do",
               "make", "call", "run", "list", "create", "update", "delete", "query", "send"}  # fmt: skip


def _names(name: str, text: str) -> bool:
    """Whether ``text`` names the tool ``name``: the name itself, its words spaced out, or its
    words other than a leading verb ("weather" for get_weather)."""
    said = set(re.findall(r"[a-z0-9]+", text.lower()))
    parts = [p for p in re.split(r"[_\W]+|(?<=[a-z])(?=[A-Z])", name) if p]
    lowered = [p.lower() for p in parts]
    if name.lower() in said or " ".join(lowered) in " ".join(re.findall(r"[a-z0-9]+", text.lower())):
        return True
    subject = [p for p in lowered if p not in _TOOL_VERBS]
    return bool(subject) and all(p in said for p in subject)


def _named_tool(ctx: ResponseContext, text: str) -> dict[str, Any] | None:
    functions = [t for t in ctx.tools if t.get("type") == "function"]
    choice = ctx.tool_choice
    if choice == "none" or not functions:
        return None
    if isinstance(choice, Mapping):
        wanted = choice.get("name") or (choice.get("function") or {}).get("name")
        return next((t for t in functions if t.get("name") == wanted), None)
    for tool in functions:
        if _names(str(tool.get("name", "")), text):
            return tool
    if choice == "required":
        return functions[0]
    return None


def default_responder(ctx: ResponseContext) -> list[Part]:
    """Deterministic replies derived from the input: it echoes text, measures audio, calls a
    tool the user names (with arguments from the user's words where the schema allows, see
    `realtalk.simulator._arguments`) and reports a tool's output."""
    last = ctx.last_item
    if last is None:
        return [Text("Hello! How can I help you today?")]
    if last.get("type") == "function_call_output":
        call_id = last.get("call_id")
        name = next(
            (
                item.get("name")
                for item in ctx.items
                if item.get("type") == "function_call" and item.get("call_id") == call_id
            ),
            "tool",
        )
        return [Text(f"The {name} tool returned {last.get('output', '')}.")]
    if last.get("type") == "message" and last.get("role") == "user":
        parts = last.get("content", [])
        texts = [p.get("text") for p in parts if p.get("type") == "input_text" and p.get("text")]
        audio_ms = ctx.input_audio_ms(last)
        spoken = " ".join(texts)
        tool = _named_tool(ctx, spoken)
        if tool is not None:
            name = str(tool["name"])
            schema = tool.get("parameters") or {"type": "object"}
            arguments = arguments_from_words(schema, spoken, example_value, name)
            return [FunctionCall(name, json.dumps(arguments))]
        if texts:
            return [Text(f"You said: {spoken}")]
        if audio_ms > 0:
            return [Text(f"I heard {audio_ms / 1000:.2f} s of speech.")]
    return [Text("I am listening.")]


__all__ = [
    "Audio",
    "Close",
    "Delay",
    "Drop",
    "FunctionCall",
    "Part",
    "Responder",
    "ResponseContext",
    "ServerError",
    "Text",
    "default_responder",
    "example_value",
]
