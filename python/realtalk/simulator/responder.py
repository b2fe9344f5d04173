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
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np


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

    @property
    def last_item(self) -> dict[str, Any] | None:
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


def _named_tool(ctx: ResponseContext, text: str) -> dict[str, Any] | None:
    functions = [t for t in ctx.tools if t.get("type") == "function"]
    choice = ctx.tool_choice
    if choice == "none" or not functions:
        return None
    if isinstance(choice, Mapping):
        wanted = choice.get("name") or (choice.get("function") or {}).get("name")
        return next((t for t in functions if t.get("name") == wanted), None)
    lowered = text.lower()
    for tool in functions:
        name = str(tool.get("name", ""))
        spoken = name.replace("_", " ").lower()
        if re.search(rf"\b{re.escape(name.lower())}\b", lowered) or spoken in lowered:
            return tool
    if choice == "required":
        return functions[0]
    return None


def default_responder(ctx: ResponseContext) -> list[Part]:
    """Deterministic replies derived from the input: it echoes text, measures audio, calls a
    tool the user names (with schema-valid arguments) and reports a tool's output."""
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
            arguments = example_value(tool.get("parameters") or {"type": "object"})
            return [FunctionCall(str(tool["name"]), json.dumps(arguments))]
        if texts:
            return [Text(f"You said: {spoken}")]
        if audio_ms > 0:
            return [Text(f"I heard {audio_ms / 1000:.2f} s of speech.")]
    return [Text("I am listening.")]


# ---- speech-like audio ------------------------------------------------------------------

SAMPLE_RATE = 24000


@dataclass(frozen=True)
class Speech:
    """Synthesised speech for a text: pcm16 at 24 kHz, and where each word starts (ms)."""

    pcm: bytes
    word_starts_ms: tuple[float, ...]
    words: tuple[str, ...]


def _glottal_table(size: int = 4096) -> np.ndarray:
    """One period of a voiced source: 12 harmonics with a falling spectrum."""
    phase = 2 * np.pi * np.arange(size) / size
    table = sum(np.sin(k * phase) / k**1.2 for k in range(1, 13))
    return np.asarray(table / np.abs(table).max(), dtype=np.float32)


_GLOTTAL = _glottal_table()


@functools.lru_cache(maxsize=4096)
def _spoken_word(word: str) -> np.ndarray:
    """A word's waveform (pcm16 samples), cached: replies reuse most of their words."""
    seed = zlib.crc32(word.encode())
    letters = max(1, sum(ch.isalnum() for ch in word))
    duration = min(0.75, 0.12 + 0.055 * letters)
    n = int(duration * SAMPLE_RATE)
    t = np.arange(n, dtype=np.float32) / SAMPLE_RATE
    f0 = (120 + seed % 60) + 25 * np.sin(np.pi * t / duration) - 10 * t / duration
    cycles = np.cumsum(f0) / SAMPLE_RATE  # periods elapsed at each sample
    size = len(_GLOTTAL)
    voiced = _GLOTTAL[(cycles * size).astype(np.int64) % size]
    syllables = max(1, round(letters / 3))
    envelope = 0.55 + 0.45 * np.sin(np.pi * syllables * t / duration) ** 2
    edge = min(n // 2, int(0.02 * SAMPLE_RATE))
    if edge:
        ramp = np.linspace(0.0, 1.0, edge, dtype=np.float32)
        envelope[:edge] *= ramp
        envelope[n - edge :] *= ramp[::-1]
    return np.round(0.3 * 32767 * voiced * envelope).astype("<i2")


@functools.lru_cache(maxsize=256)
def synthesize_speech(text: str) -> Speech:
    """Voiced, speech-like sound: a glottal-pulse-like harmonic tone (120-205 Hz, gliding)
    shaped into syllables, words separated by short pauses and sentences by longer ones. Loud
    enough for any energy or voicing VAD to call it speech; deterministic."""
    words = tuple(text.split()) or ("…",)
    chunks: list[np.ndarray] = []
    starts: list[float] = []
    position = 0
    for word in words:
        waveform = _spoken_word(word)
        starts.append(position * 1000 / SAMPLE_RATE)
        gap = int((0.32 if word[-1:] in ".!?;:," else 0.09) * SAMPLE_RATE)
        chunks += [waveform, np.zeros(gap, dtype="<i2")]
        position += len(waveform) + gap
    return Speech(np.concatenate(chunks).tobytes(), tuple(starts), words)


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
    "Speech",
    "Text",
    "default_responder",
    "example_value",
    "synthesize_speech",
]
