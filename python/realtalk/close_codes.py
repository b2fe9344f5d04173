"""What the Realtime API means by a close frame: the one place that knows it.

RFC 6455 gives a close a code and a reason; the Realtime API gives a few of them a meaning
(`/work/shared/protocol.md`, "close codes"):

==========================================  ===========================================
close                                       exception
==========================================  ===========================================
3000 (:data:`AUTHENTICATION_FAILED`)        :class:`~realtalk.errors.AuthenticationError`
4000 (:data:`INVALID_REQUEST`)              :class:`~realtalk.errors.InvalidRequestError`
1001 with "...maximum duration..."          :class:`~realtalk.errors.SessionExpired`
anything else                               :class:`~realtalk.errors.ConnectionClosed`
==========================================  ===========================================

The transport knows only RFC 6455: it hands every close frame it receives to
:func:`close_error` and raises what comes back.
"""

from __future__ import annotations

from realtalk.errors import (
    AuthenticationError,
    ConnectionClosed,
    InvalidRequestError,
    SessionExpired,
)

__all__ = [
    "AUTHENTICATION_FAILED",
    "INVALID_REQUEST",
    "close_error",
    "is_session_expiry",
]

AUTHENTICATION_FAILED = 3000
"""The API key or ephemeral token was missing, wrong or expired."""
INVALID_REQUEST = 4000
"""The request shape or model was refused (the retired beta shape, an unknown model ...)."""
# RFC 6455's 1001 "going away" with the API's reason "Your session hit the maximum duration of ..."
_SESSION_EXPIRED_MARKER = "maximum duration"


def is_session_expiry(code: int, reason: str) -> bool:
    """Whether a close is the server ending the session at its length limit (1001 with the
    "maximum duration" reason) rather than an ordinary going away."""
    return code == 1001 and _SESSION_EXPIRED_MARKER in reason.lower()


def close_error(code: int, reason: str) -> ConnectionClosed:
    """The exception that describes a connection the peer closed with ``code`` and
    ``reason`` (see the module's table)."""
    if code == AUTHENTICATION_FAILED:
        return AuthenticationError(code, reason)
    if code == INVALID_REQUEST:
        return InvalidRequestError(code, reason)
    if is_session_expiry(code, reason):
        return SessionExpired(code, reason)
    return ConnectionClosed(code, reason)
