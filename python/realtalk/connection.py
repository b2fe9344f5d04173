"""``realtalk.connect``: a Realtime API connection that speaks typed events.

One WebSocket (:mod:`realtalk.transport`), one JSON event per text frame: :meth:`send` takes a
client event model or a mapping in GA names and shapes, :meth:`recv` returns typed GA-shaped
server events (:func:`realtalk.events.parse_server_event`); with ``protocol="beta"`` both are
translated to and from the beta wire shape. Server ``error`` events are ordinary events (the
session goes on); a close of the connection raises the exception
:func:`realtalk.close_codes.close_error` names (AuthenticationError for 3000,
InvalidRequestError for 4000, SessionExpired ...).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import ssl
import warnings
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, NoReturn, Unpack
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from realtalk.errors import ConnectionClosed, ProtocolError
from realtalk.events import (
    ClientEvent,
    Protocol,
    ServerEvent,
    UnknownEvent,
    serialize_client_event,
)
from realtalk.events._codec import server_event_parser
from realtalk.transport import WebSocket, WebSocketOptions, is_clean_close, open_websocket
from realtalk.transport.options import OptionOverrides, resolve_options

__all__ = ["OPENAI_REALTIME_URL", "RealtimeConnection", "connect", "realtime_request"]

OPENAI_REALTIME_URL = "wss://api.openai.com/v1/realtime"
_AZURE_HOST_SUFFIXES = (
    ".openai.azure.com",
    ".cognitiveservices.azure.com",
    ".services.ai.azure.com",
)
_SELECTOR_PARAMS = ("model", "call_id", "intent", "deployment")


class RealtimeConnection:
    """An open Realtime API connection. Get one from :func:`connect`.

    - ``await conn.send(event)``: a client event model or a mapping in GA names and shapes
      (``{"type": "session.update", "session": {...}}``); validated, given an ``event_id`` if
      it has none, serialized for the connection's protocol, sent as one text frame.
    - ``await conn.recv()``: the next server event, typed (an ``UnknownEvent`` for a type this
      library does not know). Malformed JSON raises ProtocolError; the connection stays usable.
    - ``async for event in conn``: every event until the connection closes; ends quietly after
      a normal close, raises the closing exception otherwise.
    - ``await conn.consume(handler)``: ``handler(event)`` for every event as it arrives, the
      cheapest way to receive (see there).
    - ``await conn.close()``.
    """

    def __init__(self, websocket: WebSocket, protocol: Protocol) -> None:
        self.websocket = websocket
        """The underlying :class:`~realtalk.transport.WebSocket` (handshake response, ping)."""
        self.protocol: Protocol = protocol
        """The protocol version this connection speaks ("ga" or "beta")."""
        self._parse = server_event_parser(protocol)

    async def send(self, event: ClientEvent | UnknownEvent | Mapping[str, Any]) -> None:
        """Send one client event: a typed event or a mapping in GA names and shapes, translated to
        the beta wire shape on a beta connection."""
        await self.websocket.send_text(serialize_client_event(event, self.protocol))

    async def recv(self) -> ServerEvent | UnknownEvent:
        """The next server event, typed and GA-shaped; raises the transport's exception when the
        connection closes (an `error` event is an ordinary event)."""
        data, is_text = await self.websocket.receive_raw()
        if not is_text:
            raise _binary_frame()
        return self._parse(data)

    async def consume(self, handler: Callable[[ServerEvent | UnknownEvent], object]) -> NoReturn:
        """Call ``handler(event)`` for every server event, in order, as it arrives, until the
        connection ends; then raise the closing exception, as :meth:`recv` would.

        The event is parsed and handed over where the message is read: one wake-up of the
        event loop per event, where :meth:`recv` costs two (one to read, one to resume the
        awaiting task), which is what a server handling many sessions at real-time pace pays
        for. ``handler`` is synchronous and must not block (start a task for slow work); on
        asyncio it runs in the loop's data callback (see :meth:`WebSocket.consume`).
        Malformed JSON, a binary frame or an exception from ``handler`` stop the delivery and
        are raised here; the connection stays open and a new call goes on with the next
        event."""
        parse = self._parse

        def deliver(data: bytes, is_text: bool) -> None:
            if not is_text:
                raise _binary_frame()
            handler(parse(data))

        await self.websocket.consume(deliver)

    def __aiter__(self) -> AsyncIterator[ServerEvent | UnknownEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ServerEvent | UnknownEvent]:
        while True:
            try:
                event = await self.recv()
            except ConnectionClosed as exc:
                if is_clean_close(exc):
                    return
                raise
            yield event

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection with this code and reason, and wait for the close handshake."""
        await self.websocket.close(code, reason)


def _is_azure(host: str) -> bool:
    return host.endswith(_AZURE_HOST_SUFFIXES)


def realtime_request(
    url: str | None = None,
    *,
    model: str | None = "gpt-realtime",
    api_key: str | None = None,
    protocol: Protocol = "ga",
    headers: Mapping[str, str] | None = None,
    organization: str | None = None,
    project: str | None = None,
    azure_deployment: str | None = None,
    azure_api_version: str | None = None,
) -> tuple[str, dict[str, str]]:
    """The WebSocket URL and upgrade headers :func:`connect` uses (see there for the rules)."""
    if protocol not in ("ga", "beta"):
        raise ValueError(f"protocol must be 'ga' or 'beta', not {protocol!r}")
    scheme, host, path, query, _ = urlsplit(url or OPENAI_REALTIME_URL)
    scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"a Realtime URL is ws://, wss://, http:// or https://, not {url!r}")
    hostname = urlsplit(f"//{host}").hostname or ""
    azure = _is_azure(hostname) or azure_deployment is not None or azure_api_version is not None
    path = path.rstrip("/")
    if not path.endswith("/realtime"):
        path += "/realtime"  # a base URL such as .../v1 or .../openai
    params = dict(parse_qsl(query, keep_blank_values=True))
    if azure and azure_api_version is not None:
        # Azure preview: api-version + deployment (beta-shaped events).
        params.setdefault("api-version", azure_api_version)
        deployment = azure_deployment or model
        if deployment and "deployment" not in params:
            params["deployment"] = deployment
    elif not any(name in params for name in _SELECTOR_PARAMS):
        selector = azure_deployment or model
        if selector:
            params["model"] = selector
    full_url = urlunsplit((scheme, host, path, urlencode(params), ""))

    given = {name.lower() for name in headers or {}}
    result: dict[str, str] = {}
    if "authorization" not in given and "api-key" not in given:
        key = api_key
        if key is None:
            key = os.environ.get("AZURE_OPENAI_API_KEY") if azure else None
            key = key or os.environ.get("OPENAI_API_KEY")
        if not key:
            raise ValueError(
                "no API key: pass api_key=, set OPENAI_API_KEY (AZURE_OPENAI_API_KEY for Azure),"
                " or pass an Authorization header"
            )
        if azure and not key.startswith("ek_"):
            result["api-key"] = key
        else:
            result["Authorization"] = f"Bearer {key}"
    if protocol == "beta":
        result["OpenAI-Beta"] = "realtime=v1"
    if organization is not None:
        result["OpenAI-Organization"] = organization
    if project is not None:
        result["OpenAI-Project"] = project
    result.update(headers or {})
    return full_url, result


def _binary_frame() -> ProtocolError:
    return ProtocolError("the server sent a binary frame; Realtime events are text")


def connect(
    url: str | None = None,
    *,
    model: str | None = "gpt-realtime",
    api_key: str | None = None,
    protocol: Protocol = "ga",
    headers: Mapping[str, str] | None = None,
    organization: str | None = None,
    project: str | None = None,
    azure_deployment: str | None = None,
    azure_api_version: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    options: WebSocketOptions | None = None,
    **deprecated_options: Unpack[OptionOverrides],
) -> AbstractAsyncContextManager[RealtimeConnection]:
    """Connect to the Realtime API for the duration of an ``async with`` block::

        async with realtalk.connect() as conn:
            await conn.send({"type": "session.update", "session": {"type": "realtime"}})
            async for event in conn:
                ...

    - ``url``: the Realtime endpoint, default ``wss://api.openai.com/v1/realtime``. A base URL
      whose path does not end in ``/realtime`` (``ws://127.0.0.1:8765/v1``, an Azure
      ``.../openai/v1``) gets ``/realtime`` appended; ``http(s)`` becomes ``ws(s)``.
      ``?model=<model>`` is added unless the URL already names a ``model``, ``call_id``,
      ``intent`` or ``deployment`` (pass ``model=None`` to add nothing).
    - ``api_key``: an API key or an ephemeral ``ek_`` token; default ``OPENAI_API_KEY``. Sent
      as ``Authorization: Bearer``. Not needed if ``headers`` carries ``Authorization`` or
      ``api-key``.
    - ``protocol``: ``"ga"`` (default) or ``"beta"``, which adds ``OpenAI-Beta: realtime=v1``
      and translates events to and from the beta shapes.
    - Azure (an ``*.openai.azure.com`` / ``*.cognitiveservices.azure.com`` host, or any
      ``azure_*`` argument): the key goes in an ``api-key`` header (``ek_`` tokens stay Bearer),
      default ``AZURE_OPENAI_API_KEY`` then ``OPENAI_API_KEY``; ``azure_deployment`` is the
      model; with ``azure_api_version`` (the preview API) the query is
      ``api-version=...&deployment=...`` instead of ``model=...``.
    - ``organization``/``project``: the ``OpenAI-Organization``/``OpenAI-Project`` headers;
      ``headers`` are added last and win.
    - ``ssl_context`` for ``wss://`` (default: the system trust store); ``options``: a
      :class:`realtalk.transport.WebSocketOptions` (message size limit, keepalive, timeouts,
      compression, queue length).

    Deprecated: the options' fields as keyword arguments (``max_size=``, ``ping_interval=``,
    ``ping_timeout=``, ``open_timeout=``, ``close_timeout=``, ``compression=``,
    ``max_queue=``) still work, override the same field of ``options``, and warn
    (DeprecationWarning); any other unknown keyword is a TypeError.
    """
    websocket_options = _websocket_options(options, deprecated_options)
    request = functools.partial(
        realtime_request,
        url,
        model=model,
        api_key=api_key,
        protocol=protocol,
        headers=headers,
        organization=organization,
        project=project,
        azure_deployment=azure_deployment,
        azure_api_version=azure_api_version,
    )
    return _connected(request, protocol, ssl_context, websocket_options)


def _websocket_options(
    options: WebSocketOptions | None, deprecated_options: OptionOverrides
) -> WebSocketOptions:
    """``options`` with the deprecated keyword arguments applied, warning once per call at the
    caller's line (``connect`` is a plain function so that line is the user's)."""
    unknown = set(deprecated_options) - _OPTION_FIELDS
    if unknown:
        raise TypeError(
            f"connect() got an unexpected keyword argument {sorted(unknown)[0]!r}"
        )
    if deprecated_options:
        names = ", ".join(f"{name}=" for name in sorted(deprecated_options))
        warnings.warn(
            f"realtalk.connect({names}...) is deprecated; pass "
            "options=realtalk.transport.WebSocketOptions(...) instead",
            DeprecationWarning,
            stacklevel=3,
        )
    return resolve_options(options, deprecated_options)


_OPTION_FIELDS = frozenset(field.name for field in dataclasses.fields(WebSocketOptions))


@asynccontextmanager
async def _connected(
    request: Callable[[], tuple[str, dict[str, str]]],
    protocol: Protocol,
    ssl_context: ssl.SSLContext | None,
    options: WebSocketOptions,
) -> AsyncIterator[RealtimeConnection]:
    # The URL and headers are worked out on entering the block, as before: a bad URL or
    # protocol raises at ``async with``, not where the context manager was made.
    url, headers = request()
    async with open_websocket(
        url, headers=headers, ssl_context=ssl_context, options=options
    ) as websocket:
        yield RealtimeConnection(websocket, protocol)
