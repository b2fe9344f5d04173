"""The simulator on the network: WebSocket connections at ``/v1/realtime`` (GA, or beta with
``OpenAI-Beta: realtime=v1``), the REST token endpoints, authentication, keepalive pings and
session expiry. Each connection owns a task group: a reader, a writer, and one task per
running response; nothing outlives the connection.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit
from pathlib import Path

import anyio
import anyio.abc
import msgspec

from realtalk.errors import ConnectionClosed
from realtalk.simulator import _config as cfg
from realtalk.simulator._audio_io import make_vad
from realtalk.simulator._ids import IdFactory
from realtalk.simulator._validate import ClientError, Obj, enum, integer
from realtalk.simulator.responder import Close, Drop, Responder
from realtalk.simulator.script import Script
from realtalk.simulator.speech import Synthesizer, default_synthesizer
from realtalk.simulator.session import (
    ConnectionFault,
    ResponseState,
    ServerSession,
    VadFactory,
    stream_response,
)
from realtalk.transport import HTTPRequest, HTTPResponse, WebSocket, WebSocketServer

logger = logging.getLogger("realtalk.simulator")
Pace = Literal["fast", "realtime"]
_encoder = msgspec.json.Encoder()
MAX_MESSAGE_BYTES = 24 * 1024 * 1024  # a 15 MiB append is 20 MiB of base64 plus JSON
WRITE_HIGH_WATER = 1 << 20
PATH = "/v1/realtime"


class VirtualClock:
    """A clock for tests: sleeping advances virtual time at once (after one checkpoint), so
    real-time pacing, delays and session expiry cost no wall time and stay deterministic."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move virtual time forward (token expiry is judged by this clock)."""
        self._now += max(0.0, seconds)

    async def sleep(self, seconds: float) -> None:
        self._now += max(0.0, seconds)
        await anyio.lowlevel.checkpoint()


class WallClock:
    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


@dataclass
class SimulatorStats:
    connections: int = 0
    sessions: int = 0
    input_audio_bytes: int = 0
    output_audio_bytes: int = 0
    responses: int = 0
    errors: int = 0
    events_sent: int = 0
    events_received: int = 0


@dataclass
class _Token:
    value: str
    expires_at: float
    protocol: str
    intent: str
    model: str | None
    config: dict[str, Any] = field(default_factory=dict)


def _mask(key: str) -> str:
    return key[:3] + "*" * 8 + key[-4:] if len(key) > 8 else "*" * len(key)


class Simulator:
    """A local Realtime API server. ``async with Simulator() as sim:`` then connect to
    ``sim.url`` (``ws://127.0.0.1:PORT/v1/realtime``); REST token endpoints live under
    ``sim.http_url`` (``http://127.0.0.1:PORT/v1``); the `openai` package takes
    ``websocket_base_url=sim.websocket_base_url``.

    - ``responder``: what the model says (see `realtalk.simulator.responder`); default: the
      deterministic `default_responder`.
    - ``script``: a scripted session instead (`realtalk.simulator.script`): a `Script`, the
      path of its JSON file, or the parsed JSON; not together with ``responder``.
    - ``synthesizer``: how replies sound (see `realtalk.simulator.speech`); default:
      espeak-ng speech when ``espeak-ng`` is installed, else the speech-like `buzz`.
    - ``api_keys``: accepted keys (``None`` accepts any key; a missing key is always refused
      with the `error` event and close 3000, as the real server does). ``ek_`` tokens from
      the REST endpoints are accepted until they expire.
    - ``beta``: ``"accept"`` speaks the beta protocol to ``OpenAI-Beta: realtime=v1``
      clients; ``"retired"`` answers them as OpenAI does today (`beta_api_shape_disabled`,
      close 4000).
    - ``pace``: ``"fast"`` streams replies as fast as the client reads; ``"realtime"`` paces
      audio deltas at playback speed. ``clock``: `VirtualClock` for tests (pacing, delays and
      token expiry cost no wall time), or the default `WallClock`.
    - ``max_session_s``: the session ends with close 1001 and the real reason (beta: a
      `session_expired` error first). ``keepalive_s``: WebSocket ping interval (None: off).
    - ``audio_chunk_ms``: the audio carried by one output delta.
    - ``drop_after_events``: fault hook; cut every connection (no close frame) once it has
      been sent this many events.
    - ``seed``: ids are deterministic per seed and connection order. ``compression``:
      offer permessage-deflate like the real server (``None``: off).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        responder: Responder | None = None,
        script: Script | str | Path | dict[str, Any] | list[Any] | None = None,
        synthesizer: Synthesizer | None = None,
        api_keys: set[str] | list[str] | tuple[str, ...] | None = None,
        beta: Literal["accept", "retired"] = "accept",
        pace: Pace = "fast",
        clock: VirtualClock | WallClock | None = None,
        max_session_s: float = 3600,
        keepalive_s: float | None = 20.0,
        audio_chunk_ms: int = 100,
        drop_after_events: int | None = None,
        seed: int = 0,
        vad_factory: VadFactory | None = None,
        compression: Literal["deflate"] | None = "deflate",
    ) -> None:
        if pace not in ("fast", "realtime"):
            raise ValueError(f"pace must be 'fast' or 'realtime', not {pace!r}")
        if beta not in ("accept", "retired"):
            raise ValueError(f"beta must be 'accept' or 'retired', not {beta!r}")
        if audio_chunk_ms <= 0:
            raise ValueError("audio_chunk_ms must be positive")
        self.host = host
        self._requested_port = port
        self.port = 0
        if script is not None:
            if responder is not None:
                raise ValueError("pass a responder or a script, not both")
            if isinstance(script, (str, Path)):
                script = Script.load(script)
            elif not isinstance(script, Script):
                script = Script.from_json(script)
            responder = script
        self.responder = responder
        self.synthesizer = synthesizer or default_synthesizer()
        self.api_keys = None if api_keys is None else set(api_keys)
        self.beta = beta
        self.pace = pace
        self.clock = clock or WallClock()
        self.max_session_s = max_session_s
        self.keepalive_s = keepalive_s
        self.audio_chunk_ms = audio_chunk_ms
        self.drop_after_events = drop_after_events
        self.vad_factory = vad_factory or make_vad
        self._stats = SimulatorStats()
        self._live: set[_Connection] = set()
        self._seed = seed
        self._ids = IdFactory(f"{seed}:simulator")
        self._tokens: dict[str, _Token] = {}
        self.compression = compression
        self._server: WebSocketServer | None = None

    @property
    def stats(self) -> SimulatorStats:
        """Totals so far, open sessions included."""
        totals = SimulatorStats(**vars(self._stats))
        for connection in self._live:
            session = connection.session
            if session is not None:
                totals.input_audio_bytes += session.stats.input_audio_bytes
                totals.output_audio_bytes += session.stats.output_audio_bytes
                totals.responses += session.stats.responses
                totals.errors += session.stats.errors
        return totals

    @property
    def url(self) -> str:
        return f"ws://{self._url_host}:{self.port}{PATH}"

    @property
    def http_url(self) -> str:
        return f"http://{self._url_host}:{self.port}/v1"

    @property
    def websocket_base_url(self) -> str:
        """What to pass to ``openai.AsyncOpenAI(websocket_base_url=...)``."""
        return f"ws://{self._url_host}:{self.port}/v1"

    @property
    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    async def __aenter__(self) -> Simulator:
        self._server = WebSocketServer(
            self._handle_websocket,
            self.host,
            self._requested_port,
            http_handler=self._handle_http,
            process_request=self._process_request,
            select_subprotocol=_select_subprotocol,
            max_size=MAX_MESSAGE_BYTES,
            ping_interval=self.keepalive_s,
            compression=self.compression,
        )
        await self._server.__aenter__()
        self.port = self._server.port
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        try:
            await self._server.__aexit__(*exc_info)
        finally:
            self._server = None

    async def _process_request(self, request: HTTPRequest) -> HTTPResponse | None:
        if request.path.rstrip("/") != PATH:
            return HTTPResponse.json(
                _api_error(f"Invalid URL (GET {request.path})", None, None), 404
            )
        return None

    async def _handle_http(self, request: HTTPRequest) -> HTTPResponse:
        headers = {name.lower(): value for name, value in request.headers.raw_items()}
        status, payload = self.http_request(request.method, request.path, headers, request.body)
        return HTTPResponse.json(payload, status)

    def http_request(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any]:
        """The REST token endpoints: returns (status, JSON payload)."""
        path = urlsplit(target).path.rstrip("/")
        routes = {
            "/v1/realtime/client_secrets": self._client_secrets,
            "/v1/realtime/sessions": self._beta_sessions,
            "/v1/realtime/transcription_sessions": self._beta_transcription_sessions,
        }
        handler = routes.get(path)
        if handler is None:
            return 404, _api_error(f"Invalid URL ({method} {path})", None, None)
        if method != "POST":
            return 405, _api_error(f"Invalid method for URL ({method} {path})", None, None)
        key = _bearer(headers.get("authorization", ""))
        problem = self._check_key(key, allow_ephemeral=False)
        if problem is not None:
            return 401, {"error": problem.payload(None) | {"event_id": None}}
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return 400, _api_error(
                "We could not parse the JSON body of your request.", None, "invalid_json"
            )
        try:
            return 200, handler(payload)
        except ClientError as exc:
            return 400, {
                "error": {
                    "message": exc.message,
                    "type": exc.error_type,
                    "param": exc.param,
                    "code": exc.code,
                }
            }

    def _expiry(self, spec: Any, default: int, path: str) -> int:
        checker = Obj({"anchor": enum("created_at"), "seconds": integer(10, 7200)})
        value = checker(spec, path) if spec is not None else {}
        return int(value.get("seconds", default))

    def _client_secrets(self, payload: Any) -> dict[str, Any]:
        body = Obj({"expires_after": _anything, "session": _anything})(payload, "")
        ttl = self._expiry(body.get("expires_after"), 600, "expires_after")
        session = body.get("session") or {"type": "realtime"}
        kind = session.get("type") if isinstance(session, dict) else None
        schema = (
            cfg.ga_transcription_session_schema()
            if kind == "transcription"
            else cfg.ga_session_schema()
        )
        update = schema(session, "session")
        model = update.pop("model", None)
        if model is not None and not cfg.model_supported(model):
            raise ClientError("invalid_value", f"Invalid value: '{model}'.", "session.model")
        probe = ServerSession(
            protocol="ga",
            model=model or "gpt-realtime",
            intent="transcription" if kind == "transcription" else "realtime",
            ids=IdFactory(self._ids.token()),
            now=self.clock.time,
        )
        probe.preconfigure(update)
        token = self._issue("ga", probe.intent, model, update, ttl)
        view = dict(probe.session)
        view["expires_at"] = 0
        if model is not None and "model" in view:
            view["model"] = model
        return {"value": token.value, "expires_at": int(token.expires_at), "session": view}

    def _beta_sessions(self, payload: Any, intent: str = "realtime") -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise ClientError("invalid_type", "Invalid type for body: expected an object.", None)
        secret = payload.get("client_secret")
        ttl = 60
        if secret is not None:
            secret = Obj({"expires_after": _anything})(secret, "client_secret")
            ttl = self._expiry(secret.get("expires_after"), 60, "client_secret.expires_after")
        schema = (
            cfg.beta_transcription_session_schema()
            if intent == "transcription"
            else cfg.beta_session_schema()
        )
        update = schema(payload, "")
        update.pop("client_secret", None)
        model = update.pop("model", None)
        probe = ServerSession(
            protocol="beta",
            model=model or "gpt-4o-realtime-preview",
            intent=intent,
            ids=IdFactory(self._ids.token()),
            now=self.clock.time,
        )
        probe.preconfigure(update)
        token = self._issue("beta", intent, model, update, ttl)
        view = dict(probe.session)
        return view | {"client_secret": {"value": token.value, "expires_at": int(token.expires_at)}}

    def _beta_transcription_sessions(self, payload: Any) -> dict[str, Any]:
        return self._beta_sessions(payload, intent="transcription")

    def _issue(
        self, protocol: str, intent: str, model: str | None, config: dict[str, Any], ttl: int
    ) -> _Token:
        value = "ek_" + self._ids.token(32)
        token = _Token(value, self.clock.time() + ttl, protocol, intent, model, config)
        self._tokens[value] = token
        return token

    def _check_key(self, key: str | None, *, allow_ephemeral: bool) -> ClientError | None:
        if not key:
            return ClientError(None, "Missing bearer or basic authentication in header")
        if key.startswith("ek_") and allow_ephemeral:
            token = self._tokens.get(key)
            if token is not None and token.expires_at > self.clock.time():
                return None
        elif self.api_keys is None or key in self.api_keys:
            return None
        return ClientError(
            "invalid_api_key",
            f"Incorrect API key provided: {_mask(key)}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
        )

    # ---- WebSocket --------------------------------------------------------------------

    async def _handle_websocket(self, ws: WebSocket) -> None:
        self._stats.connections += 1
        number = self._stats.connections
        started = time.monotonic()
        path = ws.request.path.split("?", 1)[0] if ws.request is not None else "?"
        logger.info("connection %d opened: %s", number, path)
        connection = _Connection(self, ws)
        self._live.add(connection)
        try:
            await connection.run()
        finally:
            self._live.discard(connection)
            logger.info("connection %d closed after %.1f s: code %s %s", number,
                        time.monotonic() - started, ws.close_code, ws.close_reason or "")


_anything: Any = lambda value, path: value


def _api_error(message: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }


def _bearer(value: str) -> str | None:
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _select_subprotocol(request: HTTPRequest, offered: Sequence[str]) -> str | None:
    # Browsers offer "realtime" plus the key as a subprotocol; answer "realtime" only then.
    return "realtime" if "realtime" in offered else None


class _Connection:
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
        key = _bearer(headers.get("Authorization", ""))
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
        if self.session.protocol == "beta":
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


async def run_simulator(
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    ready: Callable[[Simulator], Awaitable[None] | None] | None = None,
    **options: Any,
) -> None:
    """Run a simulator until cancelled (Ctrl-C). ``ready`` is called once it listens."""
    async with Simulator(host, port, **options) as simulator:
        if ready is not None:
            result = ready(simulator)
            if result is not None:
                await result
        await anyio.sleep_forever()
