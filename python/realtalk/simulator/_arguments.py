"""Tool-call arguments taken from the user's words, where the tool's JSON schema allows.

"How warm is it in Paris?" against ``{"city": {"type": "string"}}`` gives ``{"city":
"Paris"}``: for each parameter, in schema order,

- an enum value the user said (``"celsius"``, ``"in metric"`` for ``"metric"``);
- a number the user said (digits or a number word up to twenty), within the schema's bounds;
- for a string: the words after the parameter's own name ("city Paris", "named Bob"), quoted
  words, then a proper noun (a capitalised word that does not start a sentence, "New York"
  whole), then the word after a preposition ("weather in paris");
- otherwise the schema's own example (`example_value`: const, enum, default, examples, type).

Required parameters are always present; an optional one only when the words give it a value.
Each word fills at most one parameter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(r"[A-Za-z][\w'-]*|-?\d[\w:]*(?:\.\d+)?")
_QUOTED = re.compile(r"\"([^\"]+)\"|“([^”]+)”|'([^']+)'(?!\w)")
_NUMBER_WORDS = {
    word: value
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
_PREPOSITIONS = {"in", "at", "for", "from", "to", "near", "about", "of", "on", "called", "named"}
_STOP = {
    "a", "an", "the", "is", "it", "me", "my", "please", "and", "or", "what", "whats", "how",
    "i", "you", "your", "this", "that", "there", "here", "today", "tomorrow", "now", "be",
} | _PREPOSITIONS  # fmt: skip


@dataclass
class _Words:
    text: str
    tokens: list[re.Match[str]]
    used: set[int] = field(default_factory=set)  # token indexes already given to a parameter

    @classmethod
    def of(cls, text: str) -> _Words:
        return cls(text, list(_TOKEN.finditer(text)))

    def word(self, index: int) -> str:
        return self.tokens[index].group()

    def starts_sentence(self, index: int) -> bool:
        before = self.text[: self.tokens[index].start()].rstrip()
        return not before or before[-1] in ".!?:;"


def arguments_from_words(
    schema: Mapping[str, Any],
    text: str,
    example_value: Callable[..., Any],
    tool_name: str = "",
) -> Any:
    """Arguments for the tool ``tool_name`` whose ``parameters`` are ``schema``, from the
    user's ``text`` (the words naming the tool are no argument)."""
    properties: Mapping[str, Any] = schema.get("properties") or {}
    if schema.get("type", "object") != "object" or not properties:
        return example_value(schema)
    required = list(schema.get("required", list(properties)))
    words = _Words.of(text)
    naming = set(re.split(r"[_\W]+", tool_name.lower())) - {""}
    words.used |= {i for i in range(len(words.tokens)) if words.word(i).lower() in naming}
    arguments: dict[str, Any] = {}
    for name, spec in properties.items():
        spec = spec if isinstance(spec, Mapping) else {}
        value = _from_words(name, spec, words)
        if value is not None:
            arguments[name] = value
        elif name in required:
            arguments[name] = example_value(spec, name)
    # Keep the schema's order of required names first, as a model would.
    return {k: arguments[k] for k in [*required, *properties] if k in arguments}


def _from_words(name: str, spec: Mapping[str, Any], words: _Words) -> Any:
    kind = spec.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if spec.get("enum"):
        return _enum_value(spec["enum"], words)
    if kind in ("integer", "number"):
        return _number(spec, kind, words)
    if kind == "string" and "format" not in spec:
        return _string(name, words)
    return None


def _enum_value(options: list[Any], words: _Words) -> Any:
    lowered = [w.lower() for w in (words.word(i) for i in range(len(words.tokens)))]
    for option in options:
        spoken = str(option).replace("_", " ").lower().split()
        for index in range(len(lowered) - len(spoken) + 1):
            span = range(index, index + len(spoken))
            if lowered[index : index + len(spoken)] == spoken and not words.used & set(span):
                words.used |= set(span)
                return option
    return None


def _number(spec: Mapping[str, Any], kind: str, words: _Words) -> Any:
    for index in range(len(words.tokens)):
        if index in words.used:
            continue
        token = words.word(index).lower()
        if token in _NUMBER_WORDS:
            value: float = float(_NUMBER_WORDS[token])
        else:
            try:
                value = float(token)
            except ValueError:
                continue
        if kind == "integer" and not value.is_integer():
            continue
        if "minimum" in spec and value < spec["minimum"]:
            continue
        if "maximum" in spec and value > spec["maximum"]:
            continue
        words.used.add(index)
        return int(value) if kind == "integer" or value.is_integer() else value
    return None


def _string(name: str, words: _Words) -> str | None:
    return (
        _after_own_name(name, words)
        or _quoted(words)
        or _proper_noun(words)
        or _after_preposition(words)
    )


def _after_own_name(name: str, words: _Words) -> str | None:
    spoken = name.replace("_", " ").lower().split()
    lowered = [words.word(i).lower() for i in range(len(words.tokens))]
    for index in range(len(lowered) - len(spoken)):
        after = index + len(spoken)
        if lowered[index:after] == spoken and after not in words.used:
            if lowered[after] in ("is", "named", "called") and after + 1 < len(lowered):
                after += 1
            if lowered[after] in _STOP:
                continue
            words.used |= set(range(index, after + 1))
            return words.word(after)
    return None


def _quoted(words: _Words) -> str | None:
    for match in _QUOTED.finditer(words.text):
        inside = [
            i
            for i, token in enumerate(words.tokens)
            if match.start() < token.start() < match.end()
        ]
        if inside and not words.used & set(inside):
            words.used |= set(inside)
            return next(group for group in match.groups() if group)
    return None


def _proper_noun(words: _Words) -> str | None:
    index = 0
    while index < len(words.tokens):
        token = words.word(index)
        if (
            index not in words.used
            and token[:1].isupper()
            and token != "I"
            and not words.starts_sentence(index)
        ):
            end = index + 1  # "New York", "San Francisco": consecutive capitalised words
            while end < len(words.tokens) and words.word(end)[:1].isupper() and end not in words.used:
                end += 1
            words.used |= set(range(index, end))
            return " ".join(words.word(i) for i in range(index, end))
        index += 1
    return None


def _after_preposition(words: _Words) -> str | None:
    for index in range(len(words.tokens) - 1):
        following = index + 1
        if words.word(index).lower() not in _PREPOSITIONS or following in words.used:
            continue
        if words.word(following).lower() in ("the", "a", "an") and following + 1 < len(
            words.tokens
        ):
            following += 1
        candidate = words.word(following)
        if candidate.lower() in _STOP or candidate[:1].isdigit():
            continue
        words.used.add(following)
        return candidate
    return None
