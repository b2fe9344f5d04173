"""Scripted sessions: pin what the simulated model says, turn by turn, for a voice app's CI.

A script is JSON (``realtalk simulate --script turns.json``, ``Simulator(script=...)``)::

    {
      "mode": "sequence",
      "turns": [
        {"user": "weather in (?P<city>\\\\w+)",
         "reply": [{"text": "Let me check."},
                   {"tool": "get_weather", "arguments": {"city": "{city}"}}]},
        {"tool_output": "get_weather", "reply": "It is {output} in {city}."},
        {"audio": true, "reply": [{"delay": 0.5}, {"text": "Sorry, say that again?"}]},
        {"reply": [{"error": "The model is overloaded."}]}
      ],
      "otherwise": "default"
    }

- A turn's condition (at most one; none matches any response): ``"user"``, a regular
  expression searched (ignoring case) in the text of the user message the response answers
  (typed text, or an audio transcript); ``"audio": true``, that message is audio;
  ``"tool_output"``, the response follows the output of that tool (``true``: of any tool).
- ``"reply"``: a string (spoken or written as the session's modality decides) or a list of
  parts: ``{"text"}``, ``{"tool", "arguments", "call_id"?}`` (a function call), and faults:
  ``{"delay": seconds}``, ``{"error": message}`` (the response fails), ``{"close": code,
  "reason"?}`` (the server closes the WebSocket), ``{"drop": true}`` (the connection is cut).
- ``{name}`` in reply text and argument strings is replaced by the ``user`` expression's named
  groups (kept for later turns of the session), ``{output}`` and ``{tool}`` by the tool output
  a ``tool_output`` turn answers.
- ``"mode"``: ``"sequence"`` (default): each response of a session takes the next turn, and a
  turn whose condition does not hold fails that response with an error naming the turn (so a
  test sees the app went off script); ``"match"``: each response takes the first turn whose
  condition holds.
- ``"otherwise"``: what answers when no turn is left (sequence) or none matches (match):
  ``"default"`` (the default responder, the default), ``"error"`` (the response fails), or a
  reply.

A list of turns alone is a sequence script.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from realtalk.simulator.responder import (
    Close,
    Delay,
    Drop,
    FunctionCall,
    Part,
    ResponseContext,
    ServerError,
    Text,
    default_responder,
)

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_PART_KINDS = ("text", "tool", "delay", "error", "close", "drop")


class ScriptError(ValueError):
    """A script that cannot be used, with where in it the problem is."""


@dataclass(frozen=True)
class Turn:
    reply: tuple[Part, ...]
    user: re.Pattern[str] | None = None
    audio: bool = False
    tool_output: str | bool | None = None

    def describe(self) -> str:
        if self.user is not None:
            return f"the user to say /{self.user.pattern}/"
        if self.audio:
            return "the user to speak"
        if self.tool_output is not None:
            tool = "a tool" if self.tool_output is True else f"the {self.tool_output} tool"
            return f"the output of {tool}"
        return "any response"


@dataclass
class _Progress:
    next_turn: int = 0
    values: dict[str, str] = field(default_factory=dict)


class Script:
    """A responder that follows a script (see the module's documentation for the format)."""

    def __init__(
        self,
        turns: list[Turn],
        *,
        mode: str = "sequence",
        otherwise: str | tuple[Part, ...] = "default",
    ) -> None:
        if mode not in ("sequence", "match"):
            raise ScriptError(f"mode: expected 'sequence' or 'match', got {mode!r}")
        self.turns = list(turns)
        self.mode = mode
        self.otherwise = otherwise

    # ---- loading --------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> Script:
        """Read a script file; a missing file, bad JSON or a bad script is a `ScriptError`."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ScriptError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScriptError(f"{path} is not JSON: {exc}") from None
        try:
            return cls.from_json(data)
        except ScriptError as exc:
            raise ScriptError(f"{path}: {exc}") from None

    @classmethod
    def from_json(cls, data: Any) -> Script:
        """A script from its parsed JSON (as in a turns.json file); a bad one raises ScriptError
        saying where."""
        if isinstance(data, list):
            data = {"turns": data}
        if not isinstance(data, Mapping):
            raise ScriptError("a script is an object with 'turns', or a list of turns")
        unknown = set(data) - {"mode", "turns", "otherwise"}
        if unknown:
            raise ScriptError(f"unknown field {sorted(unknown)[0]!r} (expected mode, turns, "
                              "otherwise)")  # fmt: skip
        turns = data.get("turns")
        if not isinstance(turns, list):
            raise ScriptError("turns: expected a list of turns")
        otherwise = data.get("otherwise", "default")
        if otherwise not in ("default", "error"):
            otherwise = _reply(otherwise, "otherwise")
        mode = data.get("mode", "sequence")
        if mode not in ("sequence", "match"):
            raise ScriptError(f"mode: expected 'sequence' or 'match', got {mode!r}")
        return cls([_turn(t, f"turns[{i}]") for i, t in enumerate(turns)], mode=mode,
                   otherwise=otherwise)  # fmt: skip

    # ---- answering ------------------------------------------------------------------------

    def __call__(self, ctx: ResponseContext) -> list[Part]:
        # Where this connection is in the script lives and dies with the connection.
        progress = ctx.session_state.setdefault(self, _Progress())
        if self.mode == "sequence":
            if progress.next_turn < len(self.turns):
                index = progress.next_turn
                progress.next_turn += 1
                turn = self.turns[index]
                if not _holds(turn, ctx, progress):
                    return [ServerError(f"realtalk script: turn {index + 1} expects "
                                        f"{turn.describe()}, but the response answers "
                                        f"{_answers(ctx)}")]  # fmt: skip
                return _fill(turn.reply, progress.values)
        else:
            for turn in self.turns:
                if _holds(turn, ctx, progress):
                    return _fill(turn.reply, progress.values)
        if self.otherwise == "default":
            return default_responder(ctx)
        if self.otherwise == "error":
            return [ServerError(f"realtalk script: no turn for a response that answers "
                                f"{_answers(ctx)}")]  # fmt: skip
        assert isinstance(self.otherwise, tuple)
        return _fill(self.otherwise, progress.values)


# ---- parsing --------------------------------------------------------------------------------


def _turn(data: Any, where: str) -> Turn:
    if not isinstance(data, Mapping):
        raise ScriptError(f"{where}: expected an object with a 'reply'")
    unknown = set(data) - {"user", "audio", "tool_output", "reply"}
    if unknown:
        raise ScriptError(f"{where}: unknown field {sorted(unknown)[0]!r} (expected user, "
                          "audio, tool_output, reply)")  # fmt: skip
    conditions = [key for key in ("user", "audio", "tool_output") if key in data]
    if len(conditions) > 1:
        raise ScriptError(f"{where}: one condition per turn, got {' and '.join(conditions)}")
    if "reply" not in data:
        raise ScriptError(f"{where}: missing 'reply'")
    user = None
    if "user" in data:
        if not isinstance(data["user"], str):
            raise ScriptError(f"{where}.user: expected a regular expression (a string)")
        try:
            user = re.compile(data["user"], re.IGNORECASE)
        except re.error as exc:
            raise ScriptError(f"{where}.user: bad regular expression: {exc}") from None
    if "audio" in data and data["audio"] is not True:
        raise ScriptError(f"{where}.audio: expected true")
    tool_output = data.get("tool_output")
    if "tool_output" in data and not (tool_output is True or isinstance(tool_output, str)):
        raise ScriptError(f"{where}.tool_output: expected a tool name or true")
    return Turn(_reply(data["reply"], f"{where}.reply"), user, "audio" in data, tool_output)


def _reply(data: Any, where: str) -> tuple[Part, ...]:
    if isinstance(data, str):
        return (Text(data),)
    if not isinstance(data, list) or not data:
        raise ScriptError(f"{where}: expected a string or a non-empty list of parts")
    return tuple(_part(p, f"{where}[{i}]") for i, p in enumerate(data))


def _part(data: Any, where: str) -> Part:
    if isinstance(data, str):
        return Text(data)
    kinds = [k for k in _PART_KINDS if isinstance(data, Mapping) and k in data]
    if len(kinds) != 1:
        raise ScriptError(f"{where}: expected one of {', '.join(_PART_KINDS)}, got "
                          f"{json.dumps(data)[:80]}")  # fmt: skip
    kind = kinds[0]
    allowed = {"text": {"text"}, "tool": {"tool", "arguments", "call_id"}, "delay": {"delay"},
               "error": {"error"}, "close": {"close", "reason"}, "drop": {"drop"}}[kind]  # fmt: skip
    extra = set(data) - allowed
    if extra:
        raise ScriptError(f"{where}: unknown field {sorted(extra)[0]!r} in a {kind} part")
    value = data[kind]
    if kind == "text":
        if not isinstance(value, str):
            raise ScriptError(f"{where}.text: expected a string")
        return Text(value)
    if kind == "tool":
        arguments = data.get("arguments", {})
        if not isinstance(value, str) or not value:
            raise ScriptError(f"{where}.tool: expected the tool's name")
        if isinstance(arguments, str):
            try:
                json.loads(arguments)
            except json.JSONDecodeError:
                raise ScriptError(f"{where}.arguments: a string must hold JSON") from None
        elif not isinstance(arguments, Mapping):
            raise ScriptError(f"{where}.arguments: expected an object (or a JSON string)")
        call_id = data.get("call_id")
        if call_id is not None and not isinstance(call_id, str):
            raise ScriptError(f"{where}.call_id: expected a string")
        return FunctionCall(value, arguments, call_id)
    if kind == "delay":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ScriptError(f"{where}.delay: expected seconds (a number >= 0)")
        return Delay(float(value))
    if kind == "error":
        if value is True:
            return ServerError()
        if not isinstance(value, str):
            raise ScriptError(f"{where}.error: expected a message or true")
        return ServerError(value)
    if kind == "close":
        if isinstance(value, bool) or not isinstance(value, int) or not 1000 <= value <= 4999:
            raise ScriptError(f"{where}.close: expected a close code (1000-4999)")
        reason = data.get("reason", "")
        if not isinstance(reason, str):
            raise ScriptError(f"{where}.reason: expected a string")
        return Close(value, reason)
    if value is not True:
        raise ScriptError(f"{where}.drop: expected true")
    return Drop()


# ---- matching -------------------------------------------------------------------------------


def _holds(turn: Turn, ctx: ResponseContext, progress: _Progress) -> bool:
    last = ctx.last_item or {}
    if turn.user is not None:
        text = _user_text(last)
        match = turn.user.search(text) if text is not None else None
        if match is None:
            return False
        progress.values.update({k: v for k, v in match.groupdict().items() if v is not None})
        return True
    if turn.audio:
        return _is_user(last) and any(
            part.get("type") == "input_audio" for part in last.get("content", [])
        )
    if turn.tool_output is not None:
        if last.get("type") != "function_call_output":
            return False
        tool = _tool_of(ctx, last.get("call_id"))
        if turn.tool_output is not True and tool != turn.tool_output:
            return False
        progress.values.update({"output": str(last.get("output", "")), "tool": tool or ""})
        return True
    return True


def _is_user(item: Mapping[str, Any]) -> bool:
    return item.get("type") == "message" and item.get("role") == "user"


def _user_text(item: Mapping[str, Any]) -> str | None:
    if not _is_user(item):
        return None
    texts = [part.get("text") or part.get("transcript") or "" for part in item.get("content", [])]
    return " ".join(t for t in texts if t)


def _tool_of(ctx: ResponseContext, call_id: Any) -> str | None:
    for item in ctx.items:
        if item.get("type") == "function_call" and item.get("call_id") == call_id:
            return str(item.get("name"))
    return None


def _answers(ctx: ResponseContext) -> str:
    last = ctx.last_item or {}
    text = _user_text(last)
    if text:
        return f"the user saying {text!r}"
    if _is_user(last):
        return "user audio"
    if last.get("type") == "function_call_output":
        return f"the output of the {_tool_of(ctx, last.get('call_id')) or 'unknown'} tool"
    return "no user message"


# ---- filling in -----------------------------------------------------------------------------


def _fill(parts: tuple[Part, ...], values: Mapping[str, str]) -> list[Part]:
    def fill(text: str) -> str:
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)

    def fill_json(value: Any) -> Any:
        if isinstance(value, str):
            return fill(value)
        if isinstance(value, list):
            return [fill_json(v) for v in value]
        if isinstance(value, Mapping):
            return {k: fill_json(v) for k, v in value.items()}
        return value

    out: list[Part] = []
    for part in parts:
        if isinstance(part, Text):
            out.append(Text(fill(part.text)))
        elif isinstance(part, FunctionCall):
            arguments = part.arguments
            if isinstance(arguments, str):
                arguments = json.dumps(fill_json(json.loads(arguments)))
            else:
                arguments = fill_json(arguments)
            out.append(FunctionCall(part.name, arguments, part.call_id))
        else:
            out.append(part)
    return out


__all__ = ["Script", "ScriptError", "Turn"]
