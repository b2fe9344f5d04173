"""When the client reconnects, and how long it waits first: a small pure policy.

Retryable: a close the same request may survive (1001 going away, 1006 dropped, 1011 server
error, 1012 restart, 1013 try again later), a network error, a timeout, a 5xx handshake, a
protocol error. Final: authentication and invalid-request closes, any other close code, a 4xx
handshake (design.md, supervision). Attempts back off exponentially from ``initial_s`` to
``max_s`` with jitter (each wait drawn from its upper half), and stop after ``max_attempts``.
"""

from __future__ import annotations

from dataclasses import dataclass

from realtalk.errors import (
    AuthenticationError,
    ConnectionClosed,
    HandshakeError,
    InvalidRequestError,
)

__all__ = ["RETRYABLE_CLOSE_CODES", "ReconnectPolicy"]

RETRYABLE_CLOSE_CODES = frozenset({1001, 1006, 1011, 1012, 1013})


@dataclass(frozen=True)
class ReconnectPolicy:
    enabled: bool = True
    max_attempts: int = 8
    initial_s: float = 0.2
    max_s: float = 8.0

    @staticmethod
    def is_final(error: BaseException | None) -> bool:
        """Whether the same request would fail again, whatever the wait."""
        if isinstance(error, AuthenticationError | InvalidRequestError):
            return True
        if isinstance(error, ConnectionClosed):
            return error.code not in RETRYABLE_CLOSE_CODES
        return isinstance(error, HandshakeError) and 400 <= error.status < 500

    def gives_up(self, error: BaseException | None, attempt: int) -> bool:
        """After the ``attempt``-th failure in a row (counting from 1)."""
        return not self.enabled or self.is_final(error) or attempt > self.max_attempts

    def delay(self, attempt: int, jitter: float) -> float:
        """The wait before attempt ``attempt`` (from 1); ``jitter`` is uniform in [0, 1)."""
        ceiling = min(self.max_s, self.initial_s * 2.0 ** (attempt - 1))
        return ceiling * (0.5 + jitter / 2)
