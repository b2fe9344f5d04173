"""Responses in the default conversation, and the tool calls they end with.

``ResponseSlot`` is the one-at-a-time rule (design.md, responses): ``idle`` -> ``requested``
(our ``response.create`` is out) -> ``active`` (``response.created``, ours or the server's
own VAD turn) -> ``idle`` (``response.done``, a refusal, a lost connection). Out-of-band
responses (``conversation_id`` null) are not part of it.

``run_tool_calls`` runs a finished response's function calls side by side, sends their
outputs, and asks for the one follow-up response; ``follow_up`` retries that once after a
rate-limit refusal when allowed, waiting ``rate_limit_wait`` from the server's last
``rate_limits``. Neither raises into the session: failures are reported as local errors.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import anyio

from realtalk.errors import RealtalkError, Timeout
from realtalk.tools import ToolRegistry

__all__ = [
    "ResponseBusy",
    "ResponseRefused",
    "RequestRefused",
    "ResponseSlot",
    "follow_up",
    "function_calls",
    "is_out_of_band",
    "rate_limit_wait",
    "run_tool_calls",
]

SendEvent = Callable[[Mapping[str, Any]], Awaitable[str | None]]


class ResponseBusy(RealtalkError):
    """``create_response(wait=False)`` while a response is still running."""


class RequestRefused(RealtalkError):
    """The server answered a client event with an ``error`` (its error object is in
    ``error``)."""

    def __init__(self, error: Mapping[str, Any], request: str = "the request") -> None:
        self.error = dict(error)
        super().__init__(f"{request} was refused: {error.get('message')} "
                         f"(code={error.get('code')}, param={error.get('param')})")


class ResponseRefused(RequestRefused):
    """The server refused a ``response.create`` (its ``error`` object is in ``error``)."""

    def __init__(self, error: Mapping[str, Any]) -> None:
        super().__init__(error, "response.create")


def is_out_of_band(response: Mapping[str, Any]) -> bool:
    """A response outside the default conversation (``conversation_id`` null)."""
    return "conversation_id" in response and response["conversation_id"] is None


def function_calls(response: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The completed function calls a finished response asks the client to run (none unless
    the response itself completed)."""
    if response.get("status") != "completed":
        return []
    return [item for item in response.get("output") or ()
            if isinstance(item, Mapping) and item.get("type") == "function_call"
            and item.get("status", "completed") == "completed"]


class ResponseSlot:
    """The default conversation's one response at a time."""

    def __init__(self) -> None:
        self.state = "idle"  # idle | requested | active
        self.response_id: str | None = None
        self.request_event_id: str | None = None
        self.requested_at: float | None = None  # perf_counter() when response.create left
        self._idle = anyio.Event()
        self._idle.set()
        self._started = anyio.Event()
        self._outcome: str | None = None
        self._refusal: dict[str, Any] | None = None
        self._create_lock = anyio.Lock()

    @property
    def busy(self) -> bool:
        return self.state != "idle"

    @property
    def requested(self) -> bool:
        return self.state == "requested"

    async def create(self, send_event: SendEvent, params: Mapping[str, Any], *, wait: bool,
                     before_request: Callable[[], Awaitable[None]] | None = None) -> str | None:
        """Send one ``response.create`` once the slot is free and wait until it starts.
        Returns its id, or None if the server's own response took the slot first; raises
        :class:`ResponseBusy` (``wait=False``) or :class:`ResponseRefused`."""
        async with self._create_lock:
            while self.busy:
                if not wait:
                    raise ResponseBusy(f"a response is still running ({self.response_id})")
                await self._idle.wait()
            if before_request is not None:
                await before_request()
            self.state = "requested"
            self._idle = anyio.Event()
            self._started = anyio.Event()
            self._outcome = None
            event: dict[str, Any] = {"type": "response.create"}
            if params:
                event["response"] = dict(params)
            self._refusal = None
            self.requested_at = time.perf_counter()
            self.request_event_id = await send_event(event)
            await self._started.wait()
            if self._refusal is not None:
                error, self._refusal = self._refusal, None
                raise ResponseRefused(error)
            return self._outcome

    async def wait_idle(self, timeout: float | None = None) -> None:
        try:
            with anyio.fail_after(timeout):
                await self._idle.wait()
        except TimeoutError:
            raise Timeout(f"the response did not finish within {timeout} s") from None

    def started(self, response_id: str | None) -> None:
        """``response.created`` in the default conversation: ours, or the server's own."""
        self.response_id = response_id
        self.state = "active"
        if self._idle.is_set():
            self._idle = anyio.Event()
        self._outcome = response_id
        self._started.set()

    def owns_done(self, response_id: Any) -> bool:
        """Whether a ``response.done`` ends the response in the slot (a stale one does not)."""
        return not (response_id not in (None, self.response_id) and self.response_id)

    def on_error(self, error: Mapping[str, Any]) -> None:
        """A server error: a lost race frees our request, a refusal of it ends it."""
        if not self.requested:
            return
        if error.get("code") == "conversation_already_has_active_response":
            # Our request lost a race with a response the server started itself; that one is
            # the active response now, and this request needs nothing more.
            self._outcome = None
            self.state = "active"
            self._started.set()
        elif error.get("event_id") is not None and error.get("event_id") == self.request_event_id:
            # Our response.create was refused (bad parameters): nothing will start.
            self._refusal = dict(error)
            self.finish()

    def finish(self) -> None:
        """The slot is free again; a caller still waiting for the start is released."""
        self.state = "idle"
        self.response_id = None
        self._started.set()
        self._idle.set()


def rate_limit_wait(rate_limits: Sequence[Mapping[str, Any]], longest: float) -> float:
    """How long until the server takes requests again, from its last ``rate_limits``: the
    latest reset among the exhausted limits (else the soonest reset), capped at ``longest``."""
    def seconds(limit: Mapping[str, Any]) -> float | None:
        value = limit.get("reset_seconds")
        if isinstance(value, int | float) and math.isfinite(value) and value >= 0:
            return float(value)
        return None

    exhausted = [s for limit in rate_limits if limit.get("remaining") == 0
                 and (s := seconds(limit)) is not None]
    known = [s for limit in rate_limits if (s := seconds(limit)) is not None]
    wait = max(exhausted) if exhausted else min(known) if known else longest
    return min(wait, longest)


class ToolTurnHost(Protocol):
    """What a tool turn needs from the client."""

    tools: ToolRegistry
    retry_rate_limited_s: float | None
    _rate_limits: list[Mapping[str, Any]]  # the server's last rate_limits.updated

    async def _send_event(self, event: Mapping[str, Any]) -> str | None: ...

    async def create_response(self) -> str | None: ...

    def _local_error(self, code: str, message: str, **extra: Any) -> None: ...

    def _emit(self, name: str, data: Mapping[str, Any]) -> None: ...



async def run_tool_calls(host: ToolTurnHost, calls: Sequence[Mapping[str, Any]],
                         tool_run_s: list[float] | None, new_item_id: Callable[[], str]) -> None:
    """Run a response's function calls side by side, send each output as a
    ``function_call_output`` item, then ask for the one follow-up response."""
    outputs: list[tuple[str, str]] = []

    async def run(call: Mapping[str, Any]) -> None:
        result = await host.tools.call(str(call.get("name")), call.get("arguments") or "")
        if tool_run_s is not None:
            tool_run_s.append(result.duration_s)
        if not result.ok:
            host._emit("error", {"error": {"type": "tool_error", "code": "tool_failed",
                                           "message": result.output,
                                           "call_id": call.get("call_id")},
                                 "local": True, "benign": False})
        outputs.append((str(call.get("call_id")), result.output))

    async with anyio.create_task_group() as tg:
        for call in calls:
            tg.start_soon(run, call)
    call_ids = [call_id for call_id, _ in outputs]
    try:
        for call_id, output in outputs:
            await host._send_event({"type": "conversation.item.create",
                                    "item": {"id": new_item_id(),
                                             "type": "function_call_output",
                                             "call_id": call_id, "output": output}})
        await follow_up(host, call_ids)
    except RealtalkError as exc:
        # This runs in the background: a failure here is the user's to see, in an event,
        # never an exception that ends the session.
        host._local_error("followup_failed", f"the response after tool calls {call_ids} "
                          f"did not start: {exc}", call_ids=call_ids)


async def follow_up(host: ToolTurnHost, call_ids: list[str]) -> None:
    """The one response after a turn's tool outputs. A refusal is reported (the outputs stay
    in the conversation; the user's code decides); a rate-limit refusal is retried once after
    the server's reset time when ``retry_rate_limited_s`` allows it."""
    retried = False
    while True:
        try:
            await host.create_response()
            return
        except ResponseRefused as refused:
            code = refused.error.get("code")
            delay = None
            if code == "rate_limit_exceeded" and not retried \
                    and host.retry_rate_limited_s is not None:
                delay = rate_limit_wait(host._rate_limits, host.retry_rate_limited_s)
            host._local_error(
                "followup_refused",
                f"the response after tool calls {call_ids} was refused ({code}); the tool "
                "outputs stay in the conversation"
                + (f"; retrying in {delay:.2f} s" if delay is not None else ""),
                server_code=code, call_ids=call_ids, retry_in_s=delay)
            if delay is None:
                return
            retried = True
            await anyio.sleep(delay)
