"""The one place where foreign errors (anyio, ssl, OS, websockets) become :mod:`realtalk.errors`
exceptions. What a close code means beyond RFC 6455 is not known here: the Realtime layer's
:func:`realtalk.close_codes.close_error` says it."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
from websockets.frames import OK_CLOSE_CODES

from realtalk.errors import (
    ConnectError,
    ConnectionClosed,
    HandshakeError,
    ProtocolError,
    RealtalkError,
    Timeout,
)


def is_clean_close(exc: ConnectionClosed) -> bool:
    """Whether a close ends ``async for`` quietly: RFC 6455's normal codes (1000, 1001, 1005),
    unless the close was given a more specific meaning (a subclass of ConnectionClosed, such as
    a session expiry's 1001), which says something went wrong."""
    return type(exc) is ConnectionClosed and exc.code in OK_CLOSE_CODES


def _translate(exc: BaseException, during: str) -> RealtalkError | None:
    if isinstance(exc, RealtalkError):
        return None
    if isinstance(exc, TimeoutError):
        return Timeout(f"{during} timed out")
    if isinstance(exc, InvalidStatus):
        response = exc.response
        return HandshakeError(response.status_code, bytes(response.body).decode(errors="replace"))
    if isinstance(exc, InvalidHandshake):
        cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
        return ProtocolError(f"invalid handshake answer during {during}: {exc}{cause}")
    if isinstance(exc, InvalidURI):
        return ConnectError(f"invalid WebSocket URL: {exc}")
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return ConnectError(f"TLS failed during {during}: {exc}")
    if isinstance(exc, anyio.EndOfStream | anyio.BrokenResourceError | anyio.ClosedResourceError):
        return ConnectionClosed(1006, "", message=f"connection lost during {during}")
    if isinstance(exc, OSError):
        return ConnectError(f"{during} failed: {exc.strerror or exc}")
    if isinstance(exc, EOFError):
        return ConnectionClosed(1006, "", message=f"connection lost during {during}")
    return None


@contextmanager
def map_exceptions(during: str) -> Iterator[None]:
    """Re-raise anyio, ssl, OS and websockets errors as realtalk errors, chained to the original.

    ``during`` names the operation for the message (``"opening handshake"`` ...)."""
    try:
        yield
    except Exception as exc:
        mapped = _translate(exc, during)
        if mapped is None:
            raise
        raise mapped from exc


# ---- HTTP request and response as the server's hooks see them ----
