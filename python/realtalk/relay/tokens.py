"""Relay tokens: HMAC-signed, expiring, optionally single-use (the relay remembers their
nonce until they expire)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import os
import time
from dataclasses import dataclass

import msgspec

from realtalk.errors import RealtalkError


class InvalidToken(RealtalkError):
    """A relay token was malformed, forged or expired; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid relay token: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified relay token says: its ``subject`` (or None), ``expires_at`` (epoch
    seconds) and ``nonce`` (unique per token: what a single-use token is remembered by)."""

    subject: str | None
    expires_at: float
    nonce: str = ""


_TOKEN_PREFIX = "rt1."
_claims_encoder = msgspec.json.Encoder()


class _Claims(msgspec.Struct, forbid_unknown_fields=True):
    exp: int
    sub: str | None = None
    nonce: str = ""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _secret_bytes(secret: str | bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    if len(key) < 16:
        raise ValueError("the relay secret must be at least 16 bytes")
    return key


def _sign(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())


def issue_token(
    secret: str | bytes, ttl: float, *, subject: str | None = None, now: float | None = None
) -> str:
    """A relay token valid for ``ttl`` seconds, signed with ``secret`` (HMAC-SHA256, at least
    16 bytes). ``subject`` (a user id ...) is carried and shows in the relay's log line. The
    token uses only characters allowed in a WebSocket subprotocol, so browsers can send it as
    ``openai-insecure-api-key.<token>``."""
    if not ttl > 0:
        raise ValueError("ttl must be positive")
    issued = time.time() if now is None else now
    claims = _Claims(exp=math.ceil(issued + ttl), sub=subject, nonce=_b64(os.urandom(9)))
    payload = _b64(_claims_encoder.encode(claims))
    return f"{_TOKEN_PREFIX}{payload}.{_sign(_secret_bytes(secret), payload)}"


def verify_token(secret: str | bytes, token: str, *, now: float | None = None) -> TokenClaims:
    """Check a token made by :func:`issue_token`; :class:`InvalidToken` if it is malformed,
    not signed with ``secret`` or expired."""
    key = _secret_bytes(secret)
    if not token.startswith(_TOKEN_PREFIX):
        raise InvalidToken("malformed")
    payload, dot, signature = token[len(_TOKEN_PREFIX):].partition(".")
    if not dot or not payload:
        raise InvalidToken("malformed")
    if not hmac.compare_digest(_sign(key, payload).encode(), signature.encode()):
        raise InvalidToken("bad signature")
    try:
        claims = msgspec.json.decode(_unb64(payload), type=_Claims)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise InvalidToken("malformed") from None
    if claims.exp <= (time.time() if now is None else now):
        raise InvalidToken("expired")
    return TokenClaims(claims.sub, float(claims.exp), claims.nonce)
