"""The reconnect policy (realtalk._supervision): which failures are final, the backoff."""

from __future__ import annotations

import pytest

from realtalk._supervision import ReconnectPolicy
from realtalk.errors import (
    AuthenticationError,
    ConnectError,
    ConnectionClosed,
    HandshakeError,
    InvalidRequestError,
    ProtocolError,
)


@pytest.mark.parametrize(("error", "final"), [
    (ConnectionClosed(1001, "going away"), False),
    (ConnectionClosed(1006, "dropped"), False),
    (ConnectionClosed(1011, "server error"), False),
    (ConnectionClosed(1012, "restart"), False),
    (ConnectionClosed(1013, "try again later"), False),
    (ConnectionClosed(1000, "normal"), True),
    (ConnectionClosed(1008, "policy"), True),
    (AuthenticationError(3000, "bad key"), True),
    (InvalidRequestError(3000, "bad request"), True),
    (HandshakeError(401), True),
    (HandshakeError(404), True),
    (HandshakeError(503), False),
    (ConnectError("refused"), False),
    (OSError("network unreachable"), False),
    (TimeoutError(), False),
    (ProtocolError("garbage"), False),
    (None, False),
])
def test_what_is_final(error: BaseException | None, final: bool) -> None:
    assert ReconnectPolicy.is_final(error) is final
    assert ReconnectPolicy().gives_up(error, 1) is final


def test_gives_up_after_max_attempts_or_when_disabled() -> None:
    policy = ReconnectPolicy(max_attempts=3)
    dropped = ConnectionClosed(1006, "dropped")
    assert [policy.gives_up(dropped, n) for n in (1, 2, 3, 4)] == [False, False, False, True]
    assert ReconnectPolicy(enabled=False).gives_up(dropped, 1)


def test_backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    policy = ReconnectPolicy(initial_s=0.2, max_s=1.0)
    assert [policy.delay(n, 1.0) for n in (1, 2, 3, 4, 5)] == pytest.approx(
        [0.2, 0.4, 0.8, 1.0, 1.0])
    assert policy.delay(3, 0.0) == pytest.approx(0.4)
    assert all(0.4 <= policy.delay(3, j / 10) <= 0.8 for j in range(10))
