"""The simulator on the network: WebSocket connections at ``/v1/realtime`` (GA, or beta with
``OpenAI-Beta: realtime=v1``), the REST token endpoints, authentication, keepalive pings and
session expiry. Each connection owns a task group: a reader, a writer, and one task per
running response; nothing outlives the connection.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.abc
import msgspec
from websockets.frames import Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from realtalk.simulator import _config as cfg
from realtalk.simulator._audio_io import make_vad
from realtalk.simulator._ids import IdFactory
from realtalk.simulator._validate import ClientError, Obj, enum, integer
from realtalk.simulator.responder import Close, Drop, Responder
from realtalk.simulator.session import (
    ConnectionFault,
    ResponseState,
    ServerSession,
    VadFactory,
    stream_response,
)

Pace = Literal["fast", "realtime"]
_encoder = msgspec.json.Encoder()
MAX_HEAD_BYTES = 64 * 1024
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
    ``sim.http_url`` (``http://127.0.0.1:PORT/v1``)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        responder: Responder | None = None,
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
        self.responder = responder
        self.api_keys = None if api_keys is None else set(api_keys)
        self.beta = beta
        self.pace = pace
        self.clock = clock or WallClock()
        self.max_session_s = max_session_s
        self.keepalive_s = keepalive_s
        self.audio_chunk_ms = audio_chunk_ms
        self.drop_after_events = drop_after_events
        self.vad_factory = vad_factory or make_vad
        self.stats = SimulatorStats()
        self._seed = seed
        self._ids = IdFactory(f"{seed}:simulator")
        self._tokens: dict[str, _Token] = {}
        self._task_group: anyio.abc.TaskGroup | None = None
        self._listener: anyio.abc.Listener[Any] | None = None

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
        listener = await anyio.create_tcp_listener(
            local_host=self.host, local_port=self._requested_port
        )
        self._listener = listener
        self.port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._serve, listener)
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()
        try:
            return await self._task_group.__aexit__(*exc_info)
        finally:
            self._task_group = None
            if self._listener is not None:
                with anyio.CancelScope(shield=True):
                    await self._listener.aclose()

    async def _serve(self, listener: anyio.abc.Listener[Any]) -> None:
        assert self._task_group is not None
        await listener.serve(self._handle_stream, task_group=self._task_group)

    # ---- HTTP -------------------------------------------------------------------------

    async def _handle_stream(self, stream: anyio.abc.ByteStream) -> None:
        self.stats.connections += 1
        async with stream:
            try:
                head = bytearray()
                while b"\r\n\r\n" not in head:
                    chunk = await stream.receive()
                    head += chunk
                    if len(head) > MAX_HEAD_BYTES:
                        await self._http_reply(stream, 431, {"error": "request head too large"})
                        return
                end = head.index(b"\r\n\r\n") + 4
                request_line, *header_lines = head[: end - 4].decode("latin-1").split("\r\n")
                method, target, _ = (request_line.split(" ", 2) + ["", ""])[:3]
                headers = {}
                for line in header_lines:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                if method == "GET" and headers.get("upgrade", "").lower() == "websocket":
                    await self._websocket(stream, bytes(head))
                    return
                body = bytes(head[end:])
                length = int(headers.get("content-length", "0") or 0)
                while len(body) < length:
                    body += await stream.receive()
                status, payload = self.http_request(method, target, headers, body[:length])
                await self._http_reply(stream, status, payload)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return
            except (ValueError, UnicodeDecodeError):
                await self._http_reply(stream, 400, {"error": "malformed HTTP request"})

    @staticmethod
    async def _http_reply(stream: anyio.abc.ByteStream, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
                  405: "Method Not Allowed", 431: "Request Header Fields Too Large"}.get(status, "")
        head = (
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        try:
            await stream.send(head.encode() + body)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

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
            return 400, {"error": {"message": exc.message, "type": exc.error_type,
                                   "param": exc.param, "code": exc.code}}

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
            cfg.ga_transcription_session_schema() if kind == "transcription"
            else cfg.ga_session_schema()
        )
        update = schema(session, "session")
        model = update.pop("model", None)
        if model is not None and not cfg.model_supported(model):
            raise ClientError("invalid_value", f"Invalid value: '{model}'.", "session.model")
        probe = ServerSession(
            protocol="ga", model=model or "gpt-realtime",
            intent="transcription" if kind == "transcription" else "realtime",
            ids=IdFactory(self._ids.token()), now=self.clock.time,
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
            cfg.beta_transcription_session_schema() if intent == "transcription"
            else cfg.beta_session_schema()
        )
        update = schema(payload, "")
        update.pop("client_secret", None)
        model = update.pop("model", None)
        probe = ServerSession(
            protocol="beta", model=model or "gpt-4o-realtime-preview", intent=intent,
            ids=IdFactory(self._ids.token()), now=self.clock.time,
        )
        probe.preconfigure(update)
        token = self._issue("beta", intent, model, update, ttl)
        view = dict(probe.session)
        return view | {"client_secret": {"value": token.value, "expires_at": int(token.expires_at)}}

    def _beta_transcription_sessions(self, payload: Any) -> dict[str, Any]:
        return self._beta_sessions(payload, intent="transcription")

    def _issue(self, protocol: str, intent: str, model: str | None, config: dict[str, Any],
               ttl: int) -> _Token:
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

    async def _websocket(self, stream: anyio.abc.ByteStream, head: bytes) -> None:
        protocol = ServerProtocol(
            select_subprotocol=_select_subprotocol, max_size=MAX_MESSAGE_BYTES
        )
        protocol.receive_data(head)
        events = protocol.events_received()
        if not events or not isinstance(events[0], Request):
            return
        request = events[0]
        url = urlsplit(request.path)
        if url.path.rstrip("/") != PATH:
            response = protocol.reject(404, f"Invalid URL (GET {url.path})\n")
            protocol.send_response(response)
            await _send_all(stream, protocol)
            return
        response = protocol.accept(request)
        protocol.send_response(response)
        await _send_all(stream, protocol)
        if protocol.state is not State.OPEN:
            return
        connection = _Connection(self, stream, protocol)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        await connection.run(request, query)


_anything: Any = lambda value, path: value  # noqa: E731


def _api_error(message: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": param,
                      "code": code}}


def _bearer(value: str) -> str | None:
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _select_subprotocol(protocol: ServerProtocol, offered: Any) -> Any:
    # Browsers offer "realtime" plus the key as a subprotocol; answer "realtime" only then.
    return "realtime" if "realtime" in offered else None


async def _send_all(stream: anyio.abc.ByteStream, protocol: ServerProtocol) -> None:
    for data in protocol.data_to_send():
        if data:
            await stream.send(data)


class _Connection:
    """One WebSocket: a reader feeding the session, a single writer (so frames never
    interleave and events keep the order the session produced them in), response tasks."""

    def __init__(self, sim: Simulator, stream: anyio.abc.ByteStream, protocol: ServerProtocol) -> None:
        self.sim = sim
        self.stream = stream
        self.protocol = protocol
        self.session: ServerSession | None = None
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._wake = anyio.Event()
        self._drained = anyio.Event()
        self._closing = False
        self._dropped = False
        self._events_sent = 0
        self._task_group: anyio.abc.TaskGroup | None = None

    # -- output --

    def _take_output(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self._queue.append(data)
                self._queued_bytes += len(data)
            else:
                self._closing = True
        self._wake.set()

    def push(self) -> None:
        """Serialise what the session queued and hand it to the writer, in order."""
        if self.session is None or self._dropped:
            return
        limit = self.sim.drop_after_events
        for event in self.session.drain():
            if limit is not None and self._events_sent >= limit:
                self._drop()
                return
            if self.protocol.state is not State.OPEN:
                return
            self.protocol.send_text(_encoder.encode(event))
            self._events_sent += 1
            self.sim.stats.events_sent += 1
        self._take_output()

    def send_event(self, event: dict[str, Any]) -> None:
        if self.protocol.state is State.OPEN:
            self.protocol.send_text(_encoder.encode(event))
            self._take_output()

    async def flush(self) -> None:
        self.push()
        while self._queued_bytes > WRITE_HIGH_WATER and not self._dropped:
            self._drained = anyio.Event()
            await self._drained.wait()
        await anyio.lowlevel.checkpoint()

    def close(self, code: int, reason: str) -> None:
        if self.protocol.state is State.OPEN:
            self.push()
            self.protocol.send_close(code, reason)
            self._take_output()

    def _drop(self) -> None:
        self._dropped = True
        self._queue.clear()
        self._wake.set()

    async def _writer(self) -> None:
        while True:
            while self._queue:
                data = self._queue.popleft()
                self._queued_bytes -= len(data)
                await self.stream.send(data)
                if self._dropped:
                    break
            self._drained.set()
            if self._dropped:
                raise _Dropped
            if self._closing and not self._queue:
                with anyio.move_on_after(2):
                    await self._closed_by_peer.wait()
                raise _Finished
            self._wake = anyio.Event()
            if self._queue or self._dropped or self._closing:
                continue
            await self._wake.wait()

    # -- lifecycle --

    async def run(self, request: Request, query: dict[str, str]) -> None:
        self._closed_by_peer = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                self._task_group = tg
                tg.start_soon(self._writer)
                if self._open_session(request, query):
                    tg.start_soon(self._expiry)
                    if self.sim.keepalive_s:
                        tg.start_soon(self._keepalive)
                tg.start_soon(self._reader)
        except* (_Dropped, _Finished):
            pass
        except* (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream):
            pass
        finally:
            if self.session is not None:
                stats = self.sim.stats
                stats.input_audio_bytes += self.session.stats.input_audio_bytes
                stats.output_audio_bytes += self.session.stats.output_audio_bytes
                stats.responses += self.session.stats.responses
                stats.errors += self.session.stats.errors

    def _open_session(self, request: Request, query: dict[str, str]) -> bool:
        headers = request.headers
        beta = headers.get("OpenAI-Beta", "").replace(" ", "") == "realtime=v1"
        subprotocols = [
            p.strip() for value in headers.get_all("Sec-WebSocket-Protocol")
            for p in value.split(",")
        ]
        beta = beta or "openai-beta.realtime-v1" in subprotocols
        key = _bearer(headers.get("Authorization", ""))
        if key is None:
            key = next(
                (p[len("openai-insecure-api-key."):] for p in subprotocols
                 if p.startswith("openai-insecure-api-key.")),
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
        protocol = "beta" if beta else "ga"
        intent = query.get("intent", token.intent if token else "realtime")
        model = query.get("model") or (token.model if token else None)
        if intent not in ("realtime", "transcription"):
            self._refuse(ClientError("invalid_value", f"Invalid value: '{intent}'. Supported "
                                     "values are: 'realtime' and 'transcription'.", "intent"), 4000)
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
        self.sim.stats.sessions += 1
        index = self.sim.stats.sessions
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
        ids = IdFactory(None)
        self.send_event({"type": "error", "event_id": ids.new("event"),
                         "error": problem.payload(None)})
        suffix = f".{problem.code}" if problem.code else ""
        self.close(code, f"invalid_request_error{suffix}")

    async def _reader(self) -> None:
        fragments: list[bytes] = []
        fragment_kind: Opcode | None = None
        while True:
            try:
                data = await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self.protocol.receive_eof()
                raise _Finished from None
            self.protocol.receive_data(data)
            for frame in self.protocol.events_received():
                opcode = frame.opcode
                if opcode is Opcode.CONT:
                    fragments.append(frame.data)
                    if not frame.fin:
                        continue
                    opcode, payload = fragment_kind, b"".join(fragments)
                    fragments, fragment_kind = [], None
                elif opcode in (Opcode.TEXT, Opcode.BINARY) and not frame.fin:
                    fragments, fragment_kind = [frame.data], opcode
                    continue
                else:
                    payload = frame.data
                if opcode is Opcode.CLOSE:
                    self._closed_by_peer.set()
                    self._closing = True
                    continue
                if opcode not in (Opcode.TEXT, Opcode.BINARY) or self.session is None:
                    continue
                self.sim.stats.events_received += 1
                frame_in: str | bytes = payload.decode() if opcode is Opcode.TEXT else payload
                self.session.feed(frame_in)
                self._start_responses()
                self.push()
            self._take_output()
            if self.protocol.state is State.CLOSED:
                raise _Finished

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
                session, response, sim.responder, flush=self.flush,
                sleep=sim.clock.sleep, realtime=sim.pace == "realtime",
            )
        except ConnectionFault as fault:
            if isinstance(fault.part, Close):
                self.close(fault.part.code, fault.part.reason)
            elif isinstance(fault.part, Drop):
                self._drop()
        except Exception as exc:  # a responder bug fails the response, not the server
            session.fail_response(response, f"The responder raised {type(exc).__name__}: {exc}")
            self.push()
        self._start_responses()

    async def _expiry(self) -> None:
        assert self.session is not None
        await self.sim.clock.sleep(self.sim.max_session_s)
        limit = self.sim.max_session_s
        if limit % 60 == 0:
            minutes = int(limit // 60)
            span = f"{minutes} minute" + ("s" if minutes != 1 else "")
        else:
            seconds = math.ceil(limit)
            span = f"{seconds} second" + ("s" if seconds != 1 else "")
        reason = f"Your session hit the maximum duration of {span}."
        if self.session.protocol == "beta":
            self.session.emit(
                "error",
                error={"type": "invalid_request_error", "code": "session_expired",
                       "message": reason, "param": None, "event_id": None},
            )
        self.close(1001, reason)

    async def _keepalive(self) -> None:
        assert self.sim.keepalive_s
        while True:
            await anyio.sleep(self.sim.keepalive_s)
            if self.protocol.state is not State.OPEN:
                return
            self.protocol.send_ping(os.urandom(4))
            self._take_output()


class _Dropped(Exception):
    pass


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
