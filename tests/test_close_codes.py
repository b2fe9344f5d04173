"""Close-code meaning lives in the Realtime layer (realtalk.close_codes); the transport knows
only RFC 6455 and asks that module what a received close frame means."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import realtalk.transport
from realtalk import close_codes
from realtalk.errors import (
    AuthenticationError,
    ConnectionClosed,
    InvalidRequestError,
    SessionExpired,
)

TRANSPORT = Path(realtalk.transport.__file__).parent


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        # /work/shared/protocol.md, "handshake" and "session end"
        (3000, "invalid_request_error.invalid_api_key", AuthenticationError),
        (4000, "invalid_request_error.beta_api_shape_disabled", InvalidRequestError),
        (1001, "Your session hit the maximum duration of 60 minutes.", SessionExpired),
        (1001, "YOUR SESSION HIT THE MAXIMUM DURATION OF 30 MINUTES.", SessionExpired),
        (1000, "Your session hit the maximum duration of 60 minutes.", ConnectionClosed),
        (1001, "Idle timeout: no events for 30 s.", ConnectionClosed),
        (3001, "", ConnectionClosed),
        (4001, "", ConnectionClosed),
    ],
)
def test_each_realtime_close_has_its_exception(
    code: int, reason: str, expected: type[ConnectionClosed]
) -> None:
    error = close_codes.close_error(code, reason)
    assert type(error) is expected
    assert (error.code, error.reason) == (code, reason)
    assert close_codes.is_session_expiry(code, reason) is (expected is SessionExpired)


def test_the_transport_reexports_the_one_mapping() -> None:
    assert realtalk.transport.close_error is close_codes.close_error


def test_the_transport_source_names_no_realtime_close_meaning() -> None:
    """3000 and 4000 may appear only as the bounds of RFC 6455's application range
    (3000-4999); the session-expiry reason not at all."""
    offending = []
    for path in sorted(TRANSPORT.glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if "maximum duration" in code.lower() or re.search(r"\b4000\b", code):
                offending.append(f"{path.name}:{number}: {line.strip()}")
            elif re.search(r"\b3000\b", code) and not re.search(r"3000\s*(<=|-)", code):
                offending.append(f"{path.name}:{number}: {line.strip()}")
    assert offending == []
