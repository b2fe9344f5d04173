"""realtalk.connect takes one WebSocketOptions; the options' fields as keyword arguments still
work for now, through one deprecation path (a DeprecationWarning at the caller's line)."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import realtalk
from realtalk.errors import ProtocolError
from realtalk.transport import WebSocket, WebSocketOptions, WebSocketServer

pytestmark = pytest.mark.timeout(30)

BIG_EVENT = (
    '{"type":"session.created","event_id":"event_1","session":{"instructions":"'
    + "x" * 4096
    + '"}}'
)


@asynccontextmanager
async def sends_a_big_event() -> AsyncIterator[str]:
    """A server whose first message is a 4 KiB event, then waits for the client to go."""

    async def handler(ws: WebSocket) -> None:
        await ws.send(BIG_EVENT)
        async for _ in ws:
            pass

    async with WebSocketServer(handler) as running:
        yield f"ws://127.0.0.1:{running.port}/v1"


async def test_options_reach_the_websocket() -> None:
    async with sends_a_big_event() as url:
        async with realtalk.connect(
            url, api_key="sk", options=WebSocketOptions(max_size=1024)
        ) as conn:
            with pytest.raises(ProtocolError, match="message too big.*1009"):
                await conn.recv()


async def test_default_options_take_the_big_event_without_warning() -> None:
    async with sends_a_big_event() as url:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            async with realtalk.connect(url, api_key="sk") as conn:
                assert (await conn.recv()).type == "session.created"


async def test_old_keyword_still_works_and_warns_at_the_callers_line() -> None:
    async with sends_a_big_event() as url:
        with pytest.warns(DeprecationWarning, match=r"max_size=.*WebSocketOptions") as caught:
            manager = realtalk.connect(url, api_key="sk", max_size=1024)
        assert [w.filename for w in caught] == [__file__]
        async with manager as conn:
            with pytest.raises(ProtocolError, match="message too big.*1009"):
                await conn.recv()


async def test_old_keyword_overrides_the_same_field_of_options() -> None:
    async with sends_a_big_event() as url:
        with pytest.warns(DeprecationWarning):
            manager = realtalk.connect(
                url, api_key="sk", options=WebSocketOptions(max_size=1024), max_size=None
            )
        async with manager as conn:
            assert (await conn.recv()).type == "session.created"


def test_an_unknown_keyword_is_a_type_error_not_a_deprecation() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match="unexpected keyword argument 'max_sise'"):
            realtalk.connect("ws://127.0.0.1:9/v1", api_key="sk", max_sise=1)  # type: ignore[call-arg]


async def test_a_bad_url_still_raises_on_entering_the_block() -> None:
    """Making the context manager checks only its arguments' names; the URL is worked out on
    ``async with``, as before ``options`` existed."""
    manager = realtalk.connect("ftp://127.0.0.1/v1", api_key="sk")
    with pytest.raises(ValueError, match="ws://, wss://"):
        async with manager:
            pass
