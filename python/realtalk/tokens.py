"""Ephemeral client secrets (``ek_...``): a server holding the API key mints short-lived tokens
that a browser or device uses to open a Realtime session without ever seeing the key::

    secret = await create_client_secret(session={"type": "realtime", "instructions": "Be brief."})
    # hand secret.value to the browser; it is valid until secret.expires_at (epoch seconds)

GA: ``POST /v1/realtime/client_secrets`` with ``{"expires_after": {...}, "session": {...}}``.
Beta: ``POST /v1/realtime/sessions`` with the flat beta session config plus
``client_secret.expires_after``. HTTP runs on httpx, so this works on asyncio and trio.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from realtalk.errors import APIError, ConnectError, ProtocolError, Timeout

__all__ = ["OPENAI_BASE_URL", "ClientSecret", "create_client_secret"]

OPENAI_BASE_URL = "https://api.openai.com/v1"
_PATHS = {"ga": "/realtime/client_secrets", "beta": "/realtime/sessions"}


@dataclass(frozen=True, slots=True)
class ClientSecret:
    """A minted ephemeral token. ``value`` is the ``ek_`` token (send it as a Bearer key or as
    the ``openai-insecure-api-key.<value>`` subprotocol); ``expires_at`` is in epoch seconds;
    ``session`` is the effective session config the server attached to it (GA nested shape for
    ``protocol="ga"``, the flat beta session object for ``"beta"``)."""

    value: str
    expires_at: int
    session: dict[str, Any]
    protocol: Literal["ga", "beta"]

    def __repr__(self) -> str:  # the token is a credential: keep it out of logs and tracebacks
        return (
            f"ClientSecret(value='{self.value[:6]}...', expires_at={self.expires_at}, "
            f"protocol={self.protocol!r})"
        )


def _request_body(
    session: Mapping[str, Any] | None, expires_after_s: int, protocol: str
) -> dict[str, Any]:
    expires_after = {"anchor": "created_at", "seconds": expires_after_s}
    if protocol == "ga":
        config = dict(session or {})
        config.setdefault("type", "realtime")
        return {"expires_after": expires_after, "session": config}
    return {**(session or {}), "client_secret": {"expires_after": expires_after}}


def _api_error(response: httpx.Response) -> APIError:
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        text = response.text.strip()[:500] or response.reason_phrase
        return APIError(response.status_code, text)
    return APIError(
        response.status_code,
        str(error.get("message") or response.reason_phrase),
        code=error.get("code"),
        param=error.get("param"),
        type=error.get("type"),
    )


def _api_auth(api_key: str | None, base_url: str | None, organization: str | None,
              project: str | None, **more_headers: str) -> tuple[str, dict[str, str]]:
    """The API's base URL and the request headers: the key (``api_key`` or
    ``OPENAI_API_KEY``), the organization and project when given, then ``more_headers``.
    Shared by the REST calls here and in :mod:`realtalk.calls`."""
    key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
    if not key:
        raise ValueError("no API key: pass api_key= or set OPENAI_API_KEY")
    base = (base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL).rstrip("/")
    headers = {"Authorization": f"Bearer {key}", **more_headers}
    if organization is not None:
        headers["OpenAI-Organization"] = organization
    if project is not None:
        headers["OpenAI-Project"] = project
    return base, headers


async def _post_json(url: str, body: Any, headers: dict[str, str], *, timeout: float,
                     http_client: httpx.AsyncClient | None, what: str) -> httpx.Response:
    """POST ``body`` as JSON on ``http_client`` (default a fresh client); a timeout or a
    transport failure becomes :class:`Timeout` / :class:`ConnectError` naming ``what``."""
    try:
        if http_client is None:
            async with httpx.AsyncClient(timeout=timeout) as client:
                return await client.post(url, json=body, headers=headers)
        return await http_client.post(url, json=body, headers=headers, timeout=timeout)
    except httpx.TimeoutException as exc:
        raise Timeout(f"the {what} request to {url} timed out after {timeout} s") from exc
    except httpx.TransportError as exc:
        raise ConnectError(f"the {what} request to {url} failed: {exc}") from exc


def _parse_result(body: Any, protocol: Literal["ga", "beta"]) -> ClientSecret:
    if not isinstance(body, dict):
        raise ProtocolError("the token endpoint did not answer with a JSON object")
    if protocol == "ga":
        value, expires_at, session = body.get("value"), body.get("expires_at"), body.get("session")
    else:
        secret = body.get("client_secret")
        secret = secret if isinstance(secret, dict) else {}
        value, expires_at = secret.get("value"), secret.get("expires_at")
        session = {key: item for key, item in body.items() if key != "client_secret"}
    if not isinstance(value, str) or not isinstance(expires_at, int):
        raise ProtocolError("the token endpoint's answer has no client secret value/expires_at")
    return ClientSecret(value, expires_at, session if isinstance(session, dict) else {}, protocol)


async def create_client_secret(
    *,
    api_key: str | None = None,
    session: Mapping[str, Any] | None = None,
    expires_after_s: int = 600,
    base_url: str | None = None,
    protocol: Literal["ga", "beta"] = "ga",
    organization: str | None = None,
    project: str | None = None,
    timeout: float = 30.0,
    http_client: httpx.AsyncClient | None = None,
) -> ClientSecret:
    """Mint an ephemeral client secret.

    - ``api_key``: default ``OPENAI_API_KEY``. ``base_url``: default ``OPENAI_BASE_URL`` or
      ``https://api.openai.com/v1`` (the simulator's is ``sim.http_url``).
    - ``session``: the session config the token carries. GA: the nested GA session
      (``type`` defaults to ``"realtime"``; ``{"type": "transcription", ...}`` for a
      transcription session). Beta: the flat beta session (``model``, ``voice`` ...).
    - ``expires_after_s``: lifetime, 10..7200 s (the server checks it).
    - ``http_client``: an ``httpx.AsyncClient`` to reuse (connection pooling); default a fresh
      one per call.

    Raises :class:`~realtalk.errors.APIError` (the server's status, code, message and param)
    when the server refuses, :class:`~realtalk.errors.Timeout` after ``timeout`` seconds,
    :class:`~realtalk.errors.ConnectError` when it cannot be reached.
    """
    if protocol not in _PATHS:
        raise ValueError(f"protocol must be 'ga' or 'beta', not {protocol!r}")
    if isinstance(expires_after_s, bool) or not isinstance(expires_after_s, int):
        raise TypeError("expires_after_s must be an int (seconds)")
    base, headers = _api_auth(api_key, base_url, organization, project,
                              **{"Content-Type": "application/json"})
    body = _request_body(session, expires_after_s, protocol)
    url = base + _PATHS[protocol]
    response = await _post_json(url, body, headers, timeout=timeout, http_client=http_client,
                                what="token")
    if response.status_code != 200:
        raise _api_error(response)
    try:
        result = response.json()
    except ValueError as exc:
        raise ProtocolError("the token endpoint answered with a body that is not JSON") from exc
    return _parse_result(result, protocol)
