"""One simulated connection on the network: the WebSocket's reader feeding its
`ServerSession`, a single writer sending what the session queued (in order, with
backpressure), one task streaming each response, session expiry, and the fault hooks that
close or cut the connection. `Simulator` (`realtalk.simulator.server`) makes one per
WebSocket."""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Literal

import anyio
import anyio.abc
import msgspec

from realtalk.errors import ConnectionClosed
from realtalk.simulator import _config as cfg
from realtalk.simulator._ids import IdFactory
from realtalk.simulator._validate import ClientError
from realtalk.simulator.responder import Close, Drop
from realtalk.simulator.session import ResponseState, ServerSession
from realtalk.simulator.streaming import ConnectionFault, stream_response
from realtalk.transport import WebSocket

if TYPE_CHECKING:
    from realtalk.simulator.server import Simulator

logger = logging.getLogger("realtalk.simulator")
_encoder = msgspec.json.Encoder()
WRITE_HIGH_WATER = 1 << 20


def bearer_token(value: str) -> str | None:
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class Connection:
    """One WebSocket: a reader feeding the session, a single writer (so events keep the order
    the session produced them in), and one task per running response."""

    def __init__(self, sim: Simulator, ws: WebSocket) -> None:
        self.sim = sim
        self.ws = ws
        self.session: ServerSession | None = None
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._wake = anyio.Event()
        self._drained = anyio.Event()
        self._close_with: tuple[int, str] | None = None
        self._dropped = False
        self._events_sent = 0
        self._task_group: anyio.abc.TaskGroup | None = None
        self.call_id: str | None = None

    # -- output --

    def push(self) -> None:
        """Serialise what the session queued and send it, in order: straight to the socket
        while nothing waits ahead of it (no task switch), else through the writer."""
        if self.session is None or self._dropped or self._close_with is not None:
            return
        events = self.session.drain()
        if not events:  # most appends answer nothing: leave the writer asleep
            return
        limit = self.sim.drop_after_events
        queue = self._queue
        send_now = None if queue else self.ws.try_send_text
        for event in events:
            if limit is not None and self._events_sent >= limit:
                self._drop()
                return
            data = _encoder.encode(event)
            self._events_sent += 1
            if send_now is not None:
                if send_now(data):
                    self.sim._stats.events_sent += 1
                    continue
                send_now = None  # refused (a write in progress, backpressure): queue from here
            queue.append(data)
            self._queued_bytes += len(data)
        if queue:
            self._wake.set()

    async def flush(self) -> None:
        self.push()
        while self._queued_bytes > WRITE_HIGH_WATER and not (self._dropped or self._closing_done):
            self._drained = anyio.Event()
            await self._drained.wait()
        await anyio.lowlevel.checkpoint()

    def close(self, code: int, reason: str) -> None:
        """Send what is queued, then the close frame."""
        self.push()
        if self._close_with is None:
            self._close_with = (code, reason)
            self._wake.set()

    def _drop(self) -> None:
        # What is queued still goes out; nothing after it, and no close frame.
        self._dropped = True
        self._wake.set()

    _closing_done = False

    async def _writer(self) -> None:
        ws = self.ws
        while True:
            while self._queue:
                # Everything queued goes out in one socket write.
                burst = list(self._queue)
                self._queue.clear()
                self._queued_bytes -= sum(len(data) for data in burst)
                await ws.send_texts(burst)
                self.sim._stats.events_sent += len(burst)
            self._drained.set()
            if self._dropped:
                # A fault hook: the TCP connection ends without a close frame (1006).
                ws.abort("dropped by a simulator fault hook")
                raise _Finished
            if self._close_with is not None:
                self._closing_done = True
                await ws.close(*self._close_with)
                raise _Finished
            self._wake = anyio.Event()
            if self._queue:
                continue
            await self._wake.wait()

    # -- lifecycle --

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._task_group = tg
                tg.start_soon(self._writer)
                if self._open_session():
                    tg.start_soon(self._expiry)
                    tg.start_soon(self._reader)
        except* _Finished:
            pass
        except* ConnectionClosed:
            pass
        finally:
            if self.call_id is not None:
                self.sim._calls.detach(self.call_id, self)
            if self.session is not None:
                stats = self.sim._stats
                stats.input_audio_bytes += self.session.stats.input_audio_bytes
                stats.output_audio_bytes += self.session.stats.output_audio_bytes
                stats.responses += self.session.stats.responses
                stats.errors += self.session.stats.errors

    def _open_session(self) -> bool:
        request = self.ws.request
        assert request is not None
        headers = request.headers
        query = request.query
        subprotocols = [
            p.strip()
            for value in headers.get_all("Sec-WebSocket-Protocol")
            for p in value.split(",")
        ]
        beta = headers.get("OpenAI-Beta", "").replace(" ", "") == "realtime=v1"
        beta = beta or "openai-beta.realtime-v1" in subprotocols
        key = bearer_token(headers.get("Authorization", ""))
        if key is None:
            key = next(
                (
                    p[len("openai-insecure-api-key.") :]
                    for p in subprotocols
                    if p.startswith("openai-insecure-api-key.")
                ),
                None,
            )
        problem = self.sim._check_key(key, allow_ephemeral=True)
        if problem is not None:
            self._refuse(problem, 3000)
            return False
        if beta and self.sim.beta == "retired":
            self._refuse(
                ClientError(
                    "beta_api_shape_disabled",
                    "The Realtime Beta API is no longer supported. Please use /v1/realtime for "
                    "the GA API.",
                ),
                4000,
            )
            return False
        token = self.sim._tokens.get(key or "")
        protocol: Literal["ga", "beta"] = "beta" if beta else "ga"
        intent = query.get("intent", token.intent if token else "realtime")
        model = query.get("model") or (token.model if token else None)
        call = None
        if "call_id" in query:  # a SIP call's sideband (simulator/_calls.py)
            try:
                call = self.sim._calls.attach(query["call_id"], self)
            except ClientError as refusal:
                self._refuse(refusal, 4000)
                return False
            self.call_id, model = call.call_id, call.model or "gpt-realtime"
        if intent not in ("realtime", "transcription"):
            self._refuse(
                ClientError(
                    "invalid_value",
                    f"Invalid value: '{intent}'. Supported "
                    "values are: 'realtime' and 'transcription'.",
                    "intent",
                ),
                4000,
            )
            return False
        if model is None and intent != "transcription":
            self._refuse(
                ClientError("missing_model", "Missing required parameter: 'model'.", "model"), 4000
            )
            return False
        if model is not None and not cfg.model_supported(model):
            self._refuse(
                ClientError(
                    "invalid_model",
                    f'Model "{model}" is not supported in realtime mode. Please use a realtime '
                    "model such as gpt-realtime.",
                    "model",
                ),
                4000,
            )
            return False
        self.sim._stats.sessions += 1
        index = self.sim._stats.sessions
        session = ServerSession(
            protocol=protocol,
            model=model or "gpt-realtime",
            intent=intent,
            ids=IdFactory(f"{self.sim._seed}:{index}"),
            now=self.sim.clock.time,
            max_session_s=self.sim.max_session_s,
            vad_factory=self.sim.vad_factory,
            audio_chunk_ms=self.sim.audio_chunk_ms,
        )
        if token is not None and token.protocol == protocol:
            session.preconfigure(token.config)
        if call is not None:
            session.preconfigure(call.config)
            session.state.sideband = True
        self.session = session
        session.start()
        self.push()
        return True

    def _refuse(self, problem: ClientError, code: int) -> None:
        event = {
            "type": "error",
            "event_id": IdFactory(None).new("event"),
            "error": problem.payload(None),
        }
        data = _encoder.encode(event)
        self._queue.append(data)
        self._queued_bytes += len(data)
        suffix = f".{problem.code}" if problem.code else ""
        self._close_with = (code, f"invalid_request_error{suffix}")
        self._wake.set()

    async def _reader(self) -> None:
        assert self.session is not None
        session = self.session
        stats = self.sim._stats

        # Called by the transport's reader as each message arrives: no hand-off to this task.
        def on_message(data: bytes, is_text: bool) -> None:
            stats.events_received += 1
            if is_text:
                session.feed_text(data)
            else:
                session.feed(data)
            # Most appends start nothing and answer nothing: skip the calls then.
            if session.has_new_responses:
                self._start_responses()
            if session.has_output:
                self.push()

        await self.ws.consume(on_message)

    def _start_responses(self) -> None:
        assert self.session is not None and self._task_group is not None
        for response in self.session.take_new_responses():
            self._task_group.start_soon(self._run_response, response)

    async def _run_response(self, response: ResponseState) -> None:
        assert self.session is not None
        session = self.session
        sim = self.sim
        try:
            await stream_response(
                session,
                response,
                sim.responder,
                flush=self.flush,
                sleep=sim.clock.sleep,
                realtime=sim.pace == "realtime",
                synthesizer=sim.synthesizer,
            )
        except ConnectionFault as fault:
            if isinstance(fault.part, Close):
                self.close(fault.part.code, fault.part.reason)
            elif isinstance(fault.part, Drop):
                self.push()
                self._drop()
        except Exception as exc:  # a responder bug fails the response, not the server
            logger.exception("responder failed")
            session.fail_response(response, f"The responder raised {type(exc).__name__}: {exc}")
            self.push()
        self._start_responses()

    async def _expiry(self) -> None:
        # Always wall time: a virtual clock jumps ahead on every sleep, which would end every
        # session at once.
        assert self.session is not None
        await anyio.sleep(self.sim.max_session_s)
        reason = expiry_reason(self.sim.max_session_s)
        if self.session.state.adapter.warns_before_expiry:
            self.session.emit(
                "error",
                error={
                    "type": "invalid_request_error",
                    "code": "session_expired",
                    "message": reason,
                    "param": None,
                    "event_id": None,
                },
            )
        self.close(1001, reason)


def expiry_reason(max_session_s: float) -> str:
    """The close reason (GA) and error message (beta) at the session limit:
    "Your session hit the maximum duration of 60 minutes." for the default 3600 s."""
    if max_session_s % 60 == 0:
        minutes = int(max_session_s // 60)
        span = f"{minutes} minute" + ("s" if minutes != 1 else "")
    else:
        span = f"{max_session_s:g} second" + ("s" if max_session_s != 1 else "")
    return f"Your session hit the maximum duration of {span}."


class _Finished(Exception):
    pass
