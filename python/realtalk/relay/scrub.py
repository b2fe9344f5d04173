"""The one scrub for everything that leaves the relay downstream or goes to a log: the relay's
API key in every form an upstream (or a library's log line) can carry it.

Forms removed: the key itself; the key with characters written as JSON ``\\uXXXX`` escapes;
the API's masked quotes of a key (``sk-abc****wxyz``: any ``sk-`` run with ``**``, ours or not,
since it names the account's key); in log lines, also any 10-character run of the key (a
truncated or split frame log shows a part of it). A key split across WebSocket frames of one
message is whole again by the time the relay sees the message; the transport's frame logs,
which show each frame, lose their payload (see :class:`RedactingLogFilter`).

Not recognised: a key spelled out across several events (text deltas a client concatenates).
The upstream never holds the key in anything it generates; it only quotes it, masked, in one
error event (and that event is never forwarded: see ``Relay._start_session``).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec

REDACTED = "[redacted]"
_MASKED_KEY = re.compile(r"sk-[A-Za-z0-9_\-]*\*{2,}[A-Za-z0-9_\-]*")
_MASKED_KEY_BYTES = re.compile(_MASKED_KEY.pattern.encode())
_CREDENTIAL_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)\S+"),
    re.compile(r"(openai-insecure-api-key\.)[^\s,'\"]+"),
    re.compile(r"(?i)(api-key:\s*)\S+"),
)
_FRAGMENT = 10  # the shortest run of the key a log line may not show
_json = msgspec.json.Decoder()
_encode = msgspec.json.Encoder().encode


class Scrubber:
    """Removes ``key`` from downstream bytes (:meth:`data`) and from texts such as close
    reasons and log lines (:meth:`text`)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self._key_bytes = key.encode()
        self._redacted = REDACTED.encode()
        step = max(1, min(_FRAGMENT, len(key)))
        self._fragments = re.compile("|".join(
            re.escape(key[start:start + step]) for start in range(len(key) - step + 1)))

    def data(self, data: bytes) -> bytes:
        """A downstream message without the key. Cheap when clean (three substring scans, about
        3 us for a 100 ms audio delta), so it runs on every message."""
        if self._key_bytes in data:
            data = data.replace(self._key_bytes, self._redacted)
        if b"*" in data:
            data = _MASKED_KEY_BYTES.sub(self._redacted, data)
        if b"\\" in data and b"\\u" in data:  # one-byte search first: 30x faster when clean
            data = self._unescaped(data)
        return data

    def _unescaped(self, data: bytes) -> bytes:
        # JSON may spell any character of the key as \uXXXX: compare the decoded text, and
        # forward a re-encoded event (no escapes left) only when that reveals a key.
        try:
            plain = _encode(_json.decode(data))
        except (msgspec.DecodeError, RecursionError):
            text = data.decode("utf-8", "replace")
            unescaped = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m[1], 16)), text)
            plain = unescaped.encode("utf-8", "replace")
        cleaned = self.data(plain) if b"\\u" not in plain else plain.replace(
            self._key_bytes, self._redacted)
        return cleaned if cleaned != plain else data

    def text(self, text: str) -> str:
        """A close reason or log line without the key (nor a 10-character part of it)."""
        if self.key in text:
            text = text.replace(self.key, REDACTED)
        if "*" in text:
            text = _MASKED_KEY.sub(REDACTED, text)
        text = self._fragments.sub(REDACTED, text)
        for pattern in _CREDENTIAL_PATTERNS:
            text = pattern.sub(r"\1" + REDACTED, text)
        return text

    def reason(self, reason: str) -> str:
        """A close reason to send downstream: scrubbed, within a close frame's 123 bytes."""
        reason = self.text(reason)
        encoded = reason.encode()
        if len(encoded) > 123:
            reason = encoded[:123].decode("utf-8", "ignore")
        return reason


class RedactingLogFilter(logging.Filter):
    """On the relay's and the transport's loggers: every record's message is scrubbed, and the
    payload of websockets' DEBUG frame lines (``< TEXT '...' [n bytes]``, truncated to show a
    part of the frame) is not logged at all, only its size."""

    def __init__(self, scrubber: Scrubber) -> None:
        super().__init__()
        self.scrubber = scrubber

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args and _is_frame(args[0]):
            frame: Any = args[0]
            record.args = (f"{frame.opcode.name} [{len(frame.data)} bytes, payload not logged]",
                           *args[1:])
        message = record.getMessage()
        scrubbed = self.scrubber.text(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            if self.scrubber.text(str(exc)) != str(exc):
                record.exc_info = None  # its text quotes the key: the message says enough
                record.exc_text = None
        return True


def _is_frame(value: object) -> bool:
    return type(value).__name__ == "Frame" and hasattr(value, "opcode") and hasattr(
        value, "data")
