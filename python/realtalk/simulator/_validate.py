"""Strict validation of client payloads, with the error codes, messages and ``param`` paths the
real server uses (protocol.md sections 2 and 8).

A spec is a small tree of checkers. ``check(value, path)`` returns the value (possibly
normalised) or raises `ClientError`; nothing here mutates session state, so an event that fails
anywhere is dropped whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class ClientError(Exception):
    """One `error` event's worth of failure: the session stays open, the event is dropped."""

    def __init__(
        self,
        code: str | None,
        message: str,
        param: str | None = None,
        *,
        error_type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.error_type = error_type

    def payload(self, event_id: str | None) -> dict[str, Any]:
        return {
            "type": self.error_type,
            "code": self.code,
            "message": self.message,
            "param": self.param,
            "event_id": event_id,
        }


def quote_list(values: Iterable[str]) -> str:
    """``'a'``, ``'a' and 'b'``, ``'a', 'b', and 'c'``: the server's enumeration style."""
    quoted = [f"'{v}'" for v in values]
    if len(quoted) <= 1:
        return "".join(quoted)
    if len(quoted) == 2:
        return f"{quoted[0]} and {quoted[1]}"
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}"


def describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def invalid_type(path: str, expected: str, value: object) -> ClientError:
    return ClientError(
        "invalid_type",
        f"Invalid type for '{path}': expected {expected}, but got {describe(value)} instead.",
        path,
    )


def invalid_value(path: str, value: object, supported: Sequence[str]) -> ClientError:
    return ClientError(
        "invalid_value",
        f"Invalid value: '{value}'. Supported values are: {quote_list(supported)}.",
        path,
    )


def missing(path: str) -> ClientError:
    return ClientError("missing_required_parameter", f"Missing required parameter: '{path}'.", path)


def unknown(path: str) -> ClientError:
    return ClientError("unknown_parameter", f"Unknown parameter: '{path}'.", path)


Check = Callable[[Any, str], Any]


def string(*, max_length: int | None = None) -> Check:
    def check(value: Any, path: str) -> Any:
        if not isinstance(value, str):
            raise invalid_type(path, "a string", value)
        if max_length is not None and len(value) > max_length:
            raise ClientError(
                "string_above_max_length",
                f"Invalid '{path}': string too long. Expected a string with maximum length "
                f"{max_length}, but got a string with length {len(value)} instead.",
                path,
            )
        return value

    return check


def enum(*values: str) -> Check:
    def check(value: Any, path: str) -> Any:
        if not isinstance(value, str):
            raise invalid_type(path, "a string", value)
        if value not in values:
            raise invalid_value(path, value, values)
        return value

    return check


def boolean() -> Check:
    def check(value: Any, path: str) -> Any:
        if not isinstance(value, bool):
            raise invalid_type(path, "a boolean", value)
        return value

    return check


def integer(minimum: int | None = None, maximum: int | None = None) -> Check:
    def check(value: Any, path: str) -> Any:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid_type(path, "an integer", value)
        bound_check(value, path, minimum, maximum, "integer")
        return value

    return check


def number(minimum: float | None = None, maximum: float | None = None) -> Check:
    def check(value: Any, path: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise invalid_type(path, "a number", value)
        bound_check(value, path, minimum, maximum, "decimal")
        return value

    return check


def bound_check(
    value: float, path: str, minimum: float | None, maximum: float | None, kind: str
) -> None:
    if minimum is not None and value < minimum:
        raise ClientError(
            f"{kind}_below_min_value",
            f"Invalid '{path}': {kind} below minimum value. Expected a value >= "
            f"{minimum:g}, but got {value:g} instead.",
            path,
        )
    if maximum is not None and value > maximum:
        raise ClientError(
            f"{kind}_above_max_value",
            f"Invalid '{path}': {kind} above maximum value. Expected a value <= "
            f"{maximum:g}, but got {value:g} instead.",
            path,
        )


def anything() -> Check:
    return lambda value, path: value


def nullable(inner: Check) -> Check:
    """A field whose null has a meaning of its own (turn detection off, no metadata ...): it is
    kept as null. Any other optional field treats null as absent (see `Obj`)."""

    def check(value: Any, path: str) -> Any:
        return None if value is None else inner(value, path)

    check.keeps_null = True  # type: ignore[attr-defined]
    return check


def array(inner: Check, *, min_length: int = 0, max_length: int | None = None) -> Check:
    def check(value: Any, path: str) -> Any:
        if not isinstance(value, list):
            raise invalid_type(path, "an array", value)
        if len(value) < min_length:
            raise ClientError(
                "array_below_min_length",
                f"Invalid '{path}': empty array. Expected an array with minimum length "
                f"{min_length}, but got an array with length {len(value)} instead.",
                path,
            )
        if max_length is not None and len(value) > max_length:
            raise ClientError(
                "array_above_max_length",
                f"Invalid '{path}': array too long. Expected an array with maximum length "
                f"{max_length}, but got an array with length {len(value)} instead.",
                path,
            )
        return [inner(v, f"{path}[{i}]") for i, v in enumerate(value)]

    return check


def string_map(*, max_pairs: int, max_key: int, max_value: int) -> Check:
    """`metadata`: up to 16 string pairs, keys <= 64 characters, values <= 512."""

    def check(value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise invalid_type(path, "an object", value)
        if len(value) > max_pairs:
            raise ClientError(
                "object_above_max_properties",
                f"Invalid '{path}': too many properties. Expected an object with at most "
                f"{max_pairs} properties, but got an object with {len(value)} properties "
                "instead.",
                path,
            )
        for key, item in value.items():
            string(max_length=max_key)(key, path)
            string(max_length=max_value)(item, join(path, key))
        return dict(value)

    return check


@dataclass(frozen=True)
class Obj:
    """An object with known fields: a missing required field is reported first, then fields
    in the order the client wrote them (the first failure wins).

    Null on an optional field means "not set", as on the live server (livekit sends
    ``"instructions": null`` with every reply it asks for): the field is dropped, unless its
    checker is `nullable` (null is then a value). A required field refuses null."""

    fields: Mapping[str, Check]
    required: tuple[str, ...] = ()
    open: bool = False  # JSON Schema objects (tool parameters) take any keys

    def __call__(self, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise invalid_type(path, "an object", value)
        for name in self.required:
            if name not in value:
                raise missing(join(path, name))
        out: dict[str, Any] = {}
        for key, item in value.items():
            checker = self.fields.get(key)
            if checker is None:
                if not self.open:
                    raise unknown(join(path, key))
                out[key] = item
                continue
            if item is None and key not in self.required and not _keeps_null(checker):
                continue
            out[key] = checker(item, join(path, key))
        return out


def _keeps_null(checker: Check) -> bool:
    return bool(getattr(checker, "keeps_null", False))


def tagged(tag: str, variants: Mapping[str, Check], *, path_hint: str = "type") -> Check:
    """A union discriminated by ``tag`` (``type`` mostly)."""

    def check(value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise invalid_type(path, "an object", value)
        if tag not in value:
            raise missing(join(path, tag))
        kind = value[tag]
        enum(*variants)(kind, join(path, path_hint))
        return variants[kind](value, path)

    return check


def either(*checks: Check, expected: str) -> Check:
    """The first alternative that accepts the value; otherwise an `invalid_type` naming all."""

    def check(value: Any, path: str) -> Any:
        first: ClientError | None = None
        for alternative in checks:
            try:
                return alternative(value, path)
            except ClientError as exc:
                first = first or exc
        if first is not None and first.code != "invalid_type":
            raise first
        raise invalid_type(path, expected, value)

    return check


def event_fields(
    event: dict[str, Any], fields: dict[str, Check], required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A client event checked against its fields (``type`` and ``event_id`` are checked by
    the dispatcher): unknown fields, wrong types and missing required fields are refused."""
    spec = dict(fields)
    spec["type"] = anything()
    spec["event_id"] = anything()
    checked: dict[str, Any] = Obj(spec, required)(event, "")
    return checked
