"""Simulated SIP calls: ``Simulator.incoming_call()`` rings a call (what the real server
announces with the ``realtime.call.incoming`` webhook), and the REST call-control endpoints
``POST /v1/realtime/calls/{call_id}/accept|reject|refer|hangup`` act on it. An accepted call's
sideband WebSocket (``/v1/realtime?call_id=...``) opens a session preconfigured with the
accepted session config; reject and hangup close its sidebands.

Choices the API reference leaves open, made here and documented for tests: an unknown call
answers 404 (``call_not_found``); an action that does not fit the call's state (accepting a call
twice, referring a call that ended) answers 400 (``invalid_call_state``); a sideband for a call
that is not accepted is refused with an ``error`` event and close 4000, as other refused
sessions are; hangup and reject close open sidebands with 1000 and the reason
``CALL_ENDED_REASON``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from realtalk.simulator import _config as cfg
from realtalk.simulator._ids import IdFactory
from realtalk.simulator._validate import ClientError, Obj, integer

if TYPE_CHECKING:
    from realtalk.simulator._connection import Connection

CallState = Literal["ringing", "accepted", "rejected", "ended"]
CALL_ENDED_REASON = "The call ended."
CALL_ENDED_CODE = 1000
_ROUTE = re.compile(r"^/v1/realtime/calls/(?P<call_id>[^/]+)/(?P<action>[a-z]+)$")


class CallNotFound(ClientError):
    """An action on a call id the simulator never rang (HTTP 404)."""


@dataclass
class SimulatedCall:
    """One simulated SIP call: its state, the session it was accepted with, and what the
    control endpoints were asked (``rejected_with`` the SIP status, ``referred_to`` each
    ``target_uri`` in order)."""

    call_id: str
    sip_headers: list[dict[str, str]]
    state: CallState = "ringing"
    model: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    rejected_with: int | None = None
    referred_to: list[str] = field(default_factory=list)
    sidebands: set[Connection] = field(default_factory=set)


class CallRegistry:
    """The simulator's calls by id, and the REST actions on them."""

    def __init__(self, ids: IdFactory) -> None:
        self._ids = ids
        self.calls: dict[str, SimulatedCall] = {}

    def ring(self, sip_headers: list[dict[str, str]] | None = None) -> str:
        """A new incoming call; returns its id (``rtc_...``, as the webhook's ``call_id``)."""
        call_id = "rtc_" + self._ids.token(32)
        self.calls[call_id] = SimulatedCall(call_id, list(sip_headers or []))
        return call_id

    @staticmethod
    def route(path: str) -> tuple[str, str] | None:
        """``(call_id, action)`` for a call-control path, else None."""
        match = _ROUTE.match(path)
        return (match["call_id"], match["action"]) if match else None

    def handle(self, call_id: str, action: str, payload: Any) -> dict[str, Any]:
        """Apply one REST action; raises ClientError (400) or CallNotFound (404)."""
        actions: dict[str, Callable[[SimulatedCall, Any], None]] = {
            "accept": self._accept, "reject": self._reject,
            "refer": self._refer, "hangup": self._hangup,
        }
        handler = actions.get(action)
        if handler is None:
            raise CallNotFound(None, f"Invalid URL (POST /v1/realtime/calls/{call_id}/{action})")
        call = self.calls.get(call_id)
        if call is None:
            raise CallNotFound("call_not_found", f"Call '{call_id}' not found.", "call_id")
        handler(call, payload)
        return {}

    def _accept(self, call: SimulatedCall, payload: Any) -> None:
        _require_state(call, "accept", "ringing")
        update = cfg.ga_session_schema()(payload, "")  # requires type "realtime"
        model = update.pop("model", None)
        if model is not None and not cfg.model_supported(model):
            raise ClientError("invalid_value", f"Invalid value: '{model}'.", "model")
        call.model, call.config, call.state = model, update, "accepted"

    def _reject(self, call: SimulatedCall, payload: Any) -> None:
        _require_state(call, "reject", "ringing")
        body = Obj({"status_code": integer(300, 699)})(payload, "")
        call.rejected_with = int(body.get("status_code", 603))
        self._end(call, "rejected")

    def _refer(self, call: SimulatedCall, payload: Any) -> None:
        _require_state(call, "refer", "accepted")
        body = Obj({"target_uri": _target_uri}, required=("target_uri",))(payload, "")
        call.referred_to.append(body["target_uri"])

    def _hangup(self, call: SimulatedCall, payload: Any) -> None:
        _require_state(call, "hang up", "ringing", "accepted")
        self._end(call, "ended")

    def _end(self, call: SimulatedCall, state: CallState) -> None:
        call.state = state
        for connection in list(call.sidebands):
            connection.close(CALL_ENDED_CODE, CALL_ENDED_REASON)
        call.sidebands.clear()

    def attach(self, call_id: str, connection: Connection) -> SimulatedCall:
        """A sideband WebSocket for ``call_id``: the accepted call, or ClientError."""
        call = self.calls.get(call_id)
        if call is None:
            raise ClientError("call_not_found", f"Call '{call_id}' not found.", "call_id")
        if call.state != "accepted":
            raise ClientError("invalid_call_state",
                              f"Call '{call_id}' is {call.state}, not accepted.", "call_id")
        call.sidebands.add(connection)
        return call

    def detach(self, call_id: str, connection: Connection) -> None:
        """A sideband closed."""
        call = self.calls.get(call_id)
        if call is not None:
            call.sidebands.discard(connection)


def _require_state(call: SimulatedCall, verb: str, *allowed: CallState) -> None:
    if call.state not in allowed:
        raise ClientError("invalid_call_state",
                          f"Cannot {verb} call '{call.call_id}': it is {call.state}.", "call_id")


def _target_uri(value: Any, path: str) -> str:
    if not isinstance(value, str) or not re.match(r"^(sip|sips|tel):\S+$", value):
        raise ClientError("invalid_value",
                          f"Invalid value for '{path}': expected a sip:, sips: or tel: URI.",
                          path)
    return value
