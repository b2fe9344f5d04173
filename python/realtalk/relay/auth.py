"""Client authentication: where a client's token rides, and the authenticator hook."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from realtalk.transport import HTTPRequest

_KEY_SUBPROTOCOL = "openai-insecure-api-key."


Authenticator = Callable[[str, HTTPRequest], Awaitable[object]]
"""``async def authenticate(token, request) -> identity``: a truthy identity (a user id, a
claims object ...) accepts the client; None or False refuses it (close 3000). ``request`` is the
upgrade request (path, query, headers such as ``Origin``)."""


def _client_token(request: HTTPRequest) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    for value in request.headers.get_all("Sec-WebSocket-Protocol"):
        for offered in value.split(","):
            offered = offered.strip()
            if offered.startswith(_KEY_SUBPROTOCOL) and len(offered) > len(_KEY_SUBPROTOCOL):
                return offered[len(_KEY_SUBPROTOCOL):]
    return None


def _offered_subprotocols(request: HTTPRequest) -> list[str]:
    return [p.strip() for value in request.headers.get_all("Sec-WebSocket-Protocol")
            for p in value.split(",")]


def _select_subprotocol(request: HTTPRequest, offered: Sequence[str]) -> str | None:
    # Browsers fail a handshake that answers none of the offered subprotocols; never echo the
    # one that carries the token.
    return "realtime" if "realtime" in offered else None


