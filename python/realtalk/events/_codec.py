"""Parsing and serialisation of events for either protocol version."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Literal, TypeVar, Union

import msgspec

from realtalk.errors import ProtocolError

from ._beta import (
    client_event_from_beta,
    client_event_to_beta,
    server_event_from_beta,
    server_event_to_beta,
)
from ._models import (
    CLIENT_EVENT_TYPES,
    KNOWN_FIELDS,
    SERVER_EVENT_TYPES,
    ClientEvent,
    Event,
    ServerEvent,
    UnknownEvent,
)

Protocol = Literal["ga", "beta"]
_E = TypeVar("_E", bound=Event)
_T = TypeVar("_T")


class InvalidEventError(ProtocolError, ValueError):
    """A known event type whose fields break its schema (a required field missing, a value
    of the wrong type). ``data`` is the decoded JSON object, for callers that skip the event
    and go on."""

    def __init__(self, message: str, data: dict[str, Any]) -> None:
        super().__init__(message)
        self.data = data


# A tagged union: msgspec picks the class by "type" in one pass.
_SERVER_DECODER = msgspec.json.Decoder(Union[tuple(SERVER_EVENT_TYPES.values())])  # noqa: UP007
_CLIENT_DECODER = msgspec.json.Decoder(Union[tuple(CLIENT_EVENT_TYPES.values())])  # noqa: UP007
_RAW_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()


# A random per-process prefix and a counter: unique without a system call per event.
_ID_PREFIX = "event_" + os.urandom(6).hex()
_ID_COUNTER = itertools.count()


def new_event_id() -> str:
    """A fresh id in the server's style: ``event_`` and 21 hex characters (a random
    per-process prefix and a counter)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):09x}"


def _decode_object(data: str | bytes) -> dict[str, Any]:
    try:
        raw = _RAW_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"event is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ProtocolError(f"event is not a JSON object but a JSON {type(raw).__name__}")
    event_type = raw.get("type")
    if event_type is None:
        raise ProtocolError("event has no 'type' field")
    if not isinstance(event_type, str):
        raise ProtocolError(f"event 'type' is not a string: {event_type!r}")
    return raw


def _event_from_object(raw: dict[str, Any], registry: Mapping[str, type[_E]]) -> _E | UnknownEvent:
    event_type = raw["type"]
    cls = registry.get(event_type)
    if cls is None:
        return UnknownEvent(type=event_type, data=raw)
    known = KNOWN_FIELDS[cls]
    extra = {key: value for key, value in raw.items() if key not in known}
    fields = {key: value for key, value in raw.items() if key in known} if extra else raw
    try:
        event = msgspec.convert(fields, cls)
    except msgspec.ValidationError as exc:
        raise InvalidEventError(f"invalid {event_type!r} event: {exc}", raw) from None
    if extra:
        event.__dict__["_extra"] = extra
    return event


def _parse_ga(
    data: str | bytes, decoder: msgspec.json.Decoder[Any], registry: Mapping[str, type[_E]]
) -> _E | UnknownEvent:
    try:
        return decoder.decode(data)  # type: ignore[no-any-return]
    except msgspec.ValidationError:
        # An unknown type or field, or a schema violation: the slow path tells them apart.
        pass
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"event is not valid JSON: {exc}") from None
    return _event_from_object(_decode_object(data), registry)


def _parse_beta(
    data: str | bytes, registry: Mapping[str, type[_E]], from_beta: Any
) -> _E | UnknownEvent:
    return _event_from_object(from_beta(_decode_object(data)), registry)


_SERVER_PARSERS: dict[str, Callable[[str | bytes], ServerEvent | UnknownEvent]] = {
    "ga": partial(_parse_ga, decoder=_SERVER_DECODER, registry=SERVER_EVENT_TYPES),
    "beta": partial(_parse_beta, registry=SERVER_EVENT_TYPES, from_beta=server_event_from_beta),
}
_CLIENT_PARSERS: dict[str, Callable[[str | bytes], ClientEvent | UnknownEvent]] = {
    "ga": partial(_parse_ga, decoder=_CLIENT_DECODER, registry=CLIENT_EVENT_TYPES),
    "beta": partial(_parse_beta, registry=CLIENT_EVENT_TYPES, from_beta=client_event_from_beta),
}


def _parser_of(
    parsers: Mapping[str, Callable[[str | bytes], _T]], protocol: str
) -> Callable[[str | bytes], _T]:
    parser = parsers.get(protocol)
    if parser is None:
        raise ValueError(f"protocol must be 'ga' or 'beta', not {protocol!r}")
    return parser


def _validated_object(
    data: str | bytes, registry: Mapping[str, type[Event]], from_beta: Any
) -> dict[str, Any]:
    raw = _decode_object(data)
    if from_beta is not None:
        raw = from_beta(raw)
    cls = registry.get(raw["type"])
    if cls is None:
        return raw  # an unknown type: kept as it came, as UnknownEvent keeps it
    try:
        msgspec.convert(raw, cls)  # validation only: the model is built and dropped
    except msgspec.ValidationError:
        # Unknown fields (kept in the dict) or a schema violation: check the known ones.
        known = KNOWN_FIELDS[cls]
        try:
            msgspec.convert({k: v for k, v in raw.items() if k in known}, cls)
        except msgspec.ValidationError as exc:
            raise InvalidEventError(f"invalid {raw['type']!r} event: {exc}", raw) from None
    return raw


def parse_server_event_dict(data: str | bytes, *, protocol: Protocol = "ga") -> dict[str, Any]:
    """One server event as a plain dict, validated against its GA model exactly as
    :func:`parse_server_event` validates it (same errors), without handing out the typed
    model: for a receive path whose currency is dicts. Beta events come with GA names and
    shapes; unknown fields and unknown event types are kept as sent."""
    if protocol not in ("ga", "beta"):
        raise ValueError(f"protocol must be 'ga' or 'beta', not {protocol!r}")
    return _validated_object(data, SERVER_EVENT_TYPES,
                             server_event_from_beta if protocol == "beta" else None)


def server_event_parser(
    protocol: Protocol = "ga",
) -> Callable[[str | bytes], ServerEvent | UnknownEvent]:
    """:func:`parse_server_event` with ``protocol`` fixed, for a session's receive path (the
    protocol is settled once per connection, not looked up per event)."""
    return _parser_of(_SERVER_PARSERS, protocol)


def parse_server_event(
    data: str | bytes, *, protocol: Protocol = "ga"
) -> ServerEvent | UnknownEvent:
    """Parse one server event from its wire JSON into its typed GA model.

    Beta events (``protocol="beta"``) are translated to GA names and shapes. An unknown event
    type gives an :class:`UnknownEvent`; unknown fields are kept (``event.extra``). Malformed
    JSON, a non-object, a missing ``type`` or a known event that breaks its schema raise
    :class:`~realtalk.errors.ProtocolError` (the last as :class:`InvalidEventError`).
    """
    return _parser_of(_SERVER_PARSERS, protocol)(data)


def parse_client_event(
    data: str | bytes, *, protocol: Protocol = "ga"
) -> ClientEvent | UnknownEvent:
    """Parse one client event (the server side's view); see :func:`parse_server_event`."""
    return _parser_of(_CLIENT_PARSERS, protocol)(data)


def _serialize(
    event: Event | UnknownEvent | Mapping[str, Any],
    protocol: Protocol,
    base: type[Event],
    registry: Mapping[str, type[Event]],
    to_beta: Any,
) -> bytes:
    if isinstance(event, base):
        extra = event.__dict__.get("_extra")
        if protocol == "ga" and not extra:
            encoded = _ENCODER.encode(event)
            if event.event_id is msgspec.UNSET:
                # The encoding always ends with the object's closing brace: splice the id in.
                return b'%s,"event_id":"%s"}' % (encoded[:-1], new_event_id().encode())
            return encoded
        if protocol not in ("ga", "beta"):
            raise ValueError(f"protocol must be 'ga' or 'beta', not {protocol!r}")
        data = event.to_dict()
        data.setdefault("event_id", new_event_id())
        return _ENCODER.encode(to_beta(data) if protocol == "beta" else data)
    if protocol not in ("ga", "beta"):
        raise ValueError(f"protocol must be 'ga' or 'beta', not {protocol!r}")
    if isinstance(event, UnknownEvent):
        data = event.to_dict()
        data.setdefault("event_id", new_event_id())
        return _ENCODER.encode(to_beta(data) if protocol == "beta" else data)
    if isinstance(event, Mapping):
        if not isinstance(event.get("type"), str):
            raise ProtocolError("event has no string 'type' field")
        typed = _event_from_object(dict(event), registry)
        return _serialize(typed, protocol, base, registry, to_beta)
    raise TypeError(f"expected a {base.__name__} or a mapping, not {type(event).__name__}")


def serialize_client_event(
    event: ClientEvent | UnknownEvent | Mapping[str, Any], protocol: Protocol = "ga"
) -> bytes:
    """Wire JSON of a client event for ``protocol``. The event (a model or a mapping in GA
    names and shapes) is validated; an ``event_id`` is generated when it has none."""
    return _serialize(event, protocol, ClientEvent, CLIENT_EVENT_TYPES, client_event_to_beta)


def serialize_server_event(
    event: ServerEvent | UnknownEvent | Mapping[str, Any], protocol: Protocol = "ga"
) -> bytes:
    """Wire JSON of a server event for ``protocol`` (the simulator's side); see
    :func:`serialize_client_event`."""
    return _serialize(event, protocol, ServerEvent, SERVER_EVENT_TYPES, server_event_to_beta)
