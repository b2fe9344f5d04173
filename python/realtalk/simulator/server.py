"""The simulator on the network: WebSocket connections at ``/v1/realtime`` (GA, or beta with
``OpenAI-Beta: realtime=v1``), the REST token endpoints, authentication, keepalive pings and
session expiry. Each connection (`realtalk.simulator._connection.Connection`) owns a task
group: a reader, a writer, and one task per running response; nothing outlives the
connection.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit
from pathlib import Path

import anyio

from realtalk.simulator import _config as cfg
from realtalk.simulator._calls import CallNotFound, CallRegistry, SimulatedCall
from realtalk.simulator._audio_io import make_vad
from realtalk.simulator._connection import Connection, bearer_token
from realtalk.simulator._connection import expiry_reason as expiry_reason
from realtalk.simulator._ids import IdFactory
from realtalk.simulator._validate import ClientError, Obj, enum, integer
from realtalk.simulator.responder import Responder
from realtalk.simulator.script import Script
from realtalk.simulator.speech import Synthesizer, default_synthesizer
from realtalk.simulator.session import ServerSession, VadFactory
from realtalk.transport import HTTPRequest, HTTPResponse, WebSocket, WebSocketServer

logger = logging.getLogger("realtalk.simulator")
Pace = Literal["fast", "realtime"]
MAX_MESSAGE_BYTES = 24 * 1024 * 1024  # a 15 MiB append is 20 MiB of base64 plus JSON
PATH = "/v1/realtime"


class VirtualClock:
    """A clock for tests: sleeping advances virtual time at once (after one checkpoint), so
    real-time pacing, delays and session expiry cost no wall time and stay deterministic."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start

    def time(self) -> float:
        """The clock's time: advanced only by `sleep`."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move virtual time forward (token expiry is judged by this clock)."""
        self._now += max(0.0, seconds)

    async def sleep(self, seconds: float) -> None:
        """Advance the clock at once (nothing waits)."""
        self._now += max(0.0, seconds)
        await anyio.lowlevel.checkpoint()


class WallClock:
    """Real time: the wall clock and anyio's sleep (the default pace)."""

    def time(self) -> float:
        """Seconds since the epoch (`time.time`)."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """Wait for real."""
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
        self._live: set[Connection] = set()
        self._seed = seed
        self._ids = IdFactory(f"{seed}:simulator")
        self._tokens: dict[str, _Token] = {}
        self._calls = CallRegistry(IdFactory(f"{seed}:calls"))
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

    def incoming_call(self, sip_headers: list[dict[str, str]] | None = None) -> str:
        """Ring a simulated SIP call and return its ``call_id`` (what the real server's
        ``realtime.call.incoming`` webhook carries). Control it through the REST endpoints
        under ``http_url`` (``/realtime/calls/{call_id}/accept`` ...), then open its sideband
        at ``url`` with ``?call_id=`` (``RealtimeClient(call_id=...)``)."""
        return self._calls.ring(sip_headers)

    def call(self, call_id: str) -> SimulatedCall:
        """A simulated call's state and what was asked of it (``state``, ``config``,
        ``rejected_with``, ``referred_to``); KeyError for an unknown id."""
        return self._calls.calls[call_id]

    @property
    def url(self) -> str:
        """The WebSocket URL clients connect to (`ws://HOST:PORT/v1/realtime`)."""
        return f"ws://{self._url_host}:{self.port}{PATH}"

    @property
    def http_url(self) -> str:
        """The base URL of the REST endpoints (`http://HOST:PORT/v1`)."""
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
        """The REST token and call-control endpoints: returns (status, JSON payload)."""
        path = urlsplit(target).path.rstrip("/")
        call_route = CallRegistry.route(path)
        routes = {
            "/v1/realtime/client_secrets": self._client_secrets,
            "/v1/realtime/sessions": self._beta_sessions,
            "/v1/realtime/transcription_sessions": self._beta_transcription_sessions,
        }
        handler = routes.get(path)
        if call_route is not None:
            call_id, action = call_route
            handler = lambda payload: self._calls.handle(call_id, action, payload)  # noqa: E731
        if handler is None:
            return 404, _api_error(f"Invalid URL ({method} {path})", None, None)
        if method != "POST":
            return 405, _api_error(f"Invalid method for URL ({method} {path})", None, None)
        key = bearer_token(headers.get("authorization", ""))
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
            return 404 if isinstance(exc, CallNotFound) else 400, {
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
        connection = Connection(self, ws)
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


def _select_subprotocol(request: HTTPRequest, offered: Sequence[str]) -> str | None:
    # Browsers offer "realtime" plus the key as a subprotocol; answer "realtime" only then.
    return "realtime" if "realtime" in offered else None


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
