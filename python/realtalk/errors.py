"""realtalk's exceptions. Backend-specific errors (anyio, ssl, websockets) are translated into
these in one place (the transport), so user code never sees asyncio's or trio's own types."""

from __future__ import annotations


class RealtalkError(Exception):
    """Base class of every exception realtalk raises on purpose."""


class ProtocolError(RealtalkError):
    """A message broke the wire protocol: malformed JSON, a frame that is not an event, bad
    WebSocket framing. The message says what was wrong."""


class Timeout(RealtalkError, TimeoutError):
    """An operation did not finish within its deadline (open, close, keepalive, a tool)."""


class ConnectError(RealtalkError):
    """The server could not be reached: bad URL, DNS failure, connection refused, TLS failure."""


class HandshakeError(RealtalkError):
    """The server refused the WebSocket upgrade with an HTTP status."""

    def __init__(self, status: int, body: str = "") -> None:
        super().__init__(f"WebSocket handshake refused with HTTP {status}: {body}".rstrip(": "))
        self.status = status
        self.body = body


class ConnectionClosed(RealtalkError):
    """The connection is closed. ``code`` and ``reason`` are the WebSocket close frame's
    (1006 with an empty reason when the peer vanished without one)."""

    def __init__(self, code: int, reason: str = "", *, message: str | None = None) -> None:
        super().__init__(message or f"connection closed with code {code}: {reason or '(no reason)'}")
        self.code = code
        self.reason = reason


class KeepaliveTimeout(ConnectionClosed, Timeout):
    """The peer stopped answering keepalive pings within ``ping_timeout``: the connection was
    dropped (code 1006). Both a ConnectionClosed and a Timeout."""


class AuthenticationError(ConnectionClosed):
    """Close 3000: the API key or ephemeral token was missing, wrong or expired."""


class InvalidRequestError(ConnectionClosed):
    """Close 4000: the request shape or model was refused (for example the retired beta shape)."""


class SessionExpired(ConnectionClosed):
    """Close 1001 with the session-duration reason: the server ended a session at its limit."""


class APIError(RealtalkError):
    """An HTTP API call (an ephemeral token request ...) was refused: ``status`` is the HTTP
    status; ``message``, ``code``, ``param`` and ``type`` come from the server's OpenAI error
    body (``{"error": {...}}``). Without one, ``message`` is the body's text and the others
    are None."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type: str | None = None,
    ) -> None:
        details = ", ".join(f"{name}={value}" for name, value in
                            (("code", code), ("param", param)) if value is not None)
        super().__init__(f"HTTP {status}: {message}" + (f" ({details})" if details else ""))
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type


__all__ = [
    "APIError",
    "AuthenticationError",
    "ConnectError",
    "ConnectionClosed",
    "HandshakeError",
    "InvalidRequestError",
    "KeepaliveTimeout",
    "ProtocolError",
    "RealtalkError",
    "SessionExpired",
    "Timeout",
]
