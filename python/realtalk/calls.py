"""SIP call control: answer, decline, transfer and end calls that reach the Realtime API over
SIP (the ``realtime.call.incoming`` webhook carries the ``call_id``)::

    await realtalk.calls.accept(call_id, session={"instructions": "You answer the phone."})
    async with RealtimeClient(call_id=call_id) as client:  # the call's sideband WebSocket
        ...
    await realtalk.calls.refer(call_id, "tel:+14155550123")  # or hangup(call_id)

``POST /v1/realtime/calls/{call_id}/accept`` (body: the GA session, ``type`` defaults to
``"realtime"``), ``/reject`` (``{"status_code"}``, the server's default 603 Decline),
``/refer`` (``{"target_uri"}``) and ``/hangup``. Each answers an empty 200. HTTP runs on httpx
with the same key, base-URL and error handling as :mod:`realtalk.tokens`, so this works on
asyncio and trio.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import httpx

from realtalk.connection import OPENAI_REALTIME_URL
from realtalk.tokens import _api_auth, _api_error, _post_json

__all__ = ["accept", "hangup", "refer", "reject", "sideband_url"]


async def accept(
    call_id: str,
    *,
    session: Mapping[str, Any] | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    organization: str | None = None,
    project: str | None = None,
    timeout: float = 30.0,
    http_client: httpx.AsyncClient | None = None,
) -> None:
    """Answer an incoming SIP call with the session that will handle it (GA shape:
    ``instructions``, ``audio``, ``tools``, ``model`` ...; ``type`` defaults to
    ``"realtime"``). Then open its sideband with ``RealtimeClient(call_id=call_id)``.

    - ``api_key``: default ``OPENAI_API_KEY``. ``base_url``: default ``OPENAI_BASE_URL`` or
      ``https://api.openai.com/v1`` (the simulator's is ``sim.http_url``).
    - ``http_client``: an ``httpx.AsyncClient`` to reuse; default a fresh one per call.

    Raises :class:`~realtalk.errors.APIError` (the server's status, code, message and param)
    when the server refuses (an unknown call is a 404), :class:`~realtalk.errors.Timeout`
    after ``timeout`` seconds, :class:`~realtalk.errors.ConnectError` when it cannot be
    reached. The other functions here take the same keyword arguments and raise the same
    errors."""
    if session is not None and not isinstance(session, Mapping):
        raise TypeError(f"session must be a mapping (the GA session config), not "
                        f"{type(session).__name__}")
    body = dict(session or {})
    body.setdefault("type", "realtime")
    await _post(call_id, "accept", body, api_key=api_key, base_url=base_url,
                organization=organization, project=project, timeout=timeout,
                http_client=http_client)


async def reject(
    call_id: str,
    *,
    status_code: int | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    organization: str | None = None,
    project: str | None = None,
    timeout: float = 30.0,
    http_client: httpx.AsyncClient | None = None,
) -> None:
    """Decline an incoming SIP call with the SIP ``status_code`` sent to the caller (486
    Busy Here, 603 Decline ...; the server's default is 603). Keyword arguments and errors
    as in :func:`accept`."""
    body: dict[str, Any] = {}
    if status_code is not None:
        if isinstance(status_code, bool) or not isinstance(status_code, int):
            raise TypeError(f"status_code must be an int (a SIP status), not {status_code!r}")
        body["status_code"] = status_code
    await _post(call_id, "reject", body, api_key=api_key, base_url=base_url,
                organization=organization, project=project, timeout=timeout,
                http_client=http_client)


async def refer(
    call_id: str,
    target_uri: str,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    organization: str | None = None,
    project: str | None = None,
    timeout: float = 30.0,
    http_client: httpx.AsyncClient | None = None,
) -> None:
    """Transfer an active SIP call: ``target_uri`` goes into the SIP ``Refer-To`` header
    (``"tel:+14155550123"``, ``"sip:agent@example.com"``). Keyword arguments and errors as in
    :func:`accept`."""
    if not isinstance(target_uri, str) or not target_uri:
        raise ValueError(f"target_uri must be a non-empty SIP or tel URI, not {target_uri!r}")
    await _post(call_id, "refer", {"target_uri": target_uri}, api_key=api_key,
                base_url=base_url, organization=organization, project=project,
                timeout=timeout, http_client=http_client)


async def hangup(
    call_id: str,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    organization: str | None = None,
    project: str | None = None,
    timeout: float = 30.0,
    http_client: httpx.AsyncClient | None = None,
) -> None:
    """End an active call (SIP or WebRTC); its sideband WebSocket closes. Keyword arguments
    and errors as in :func:`accept`."""
    await _post(call_id, "hangup", None, api_key=api_key, base_url=base_url,
                organization=organization, project=project, timeout=timeout,
                http_client=http_client)


def sideband_url(url: str | None, call_id: str) -> str:
    """``url`` (a Realtime WebSocket URL, default OpenAI's) selecting the call ``call_id`` instead of a model:
    what ``RealtimeClient(call_id=...)`` connects to. A URL that already names a ``model``
    or another ``call_id`` is refused (the server takes exactly one)."""
    _check_call_id(call_id)
    scheme, host, path, query, fragment = urlsplit(url or OPENAI_REALTIME_URL)
    params = dict(parse_qsl(query, keep_blank_values=True))
    for name in ("model", "call_id"):
        if name in params and params[name] != call_id:
            raise ValueError(f"the URL already selects {name}={params[name]!r}; a call's "
                             "sideband is selected by call_id alone")
    params["call_id"] = call_id
    return urlunsplit((scheme, host, path, urlencode(params), fragment))


def _check_call_id(call_id: Any) -> None:
    if not isinstance(call_id, str) or not call_id.strip():
        raise ValueError(f"call_id must be a non-empty string (the webhook's call_id), not "
                         f"{call_id!r}")


async def _post(
    call_id: str,
    action: str,
    body: dict[str, Any] | None,
    *,
    api_key: str | None,
    base_url: str | None,
    organization: str | None,
    project: str | None,
    timeout: float,
    http_client: httpx.AsyncClient | None,
) -> None:
    _check_call_id(call_id)
    base, headers = _api_auth(api_key, base_url, organization, project, Accept="*/*")
    url = f"{base}/realtime/calls/{quote(call_id, safe='')}/{action}"
    response = await _post_json(url, body, headers, timeout=timeout, http_client=http_client,
                                what=f"call {action}")
    if not 200 <= response.status_code < 300:
        raise _api_error(response)
