"""Canaries on the private parts of websockets the transport relies on.

The frame splitter (``realtalk.transport.frames``) reads ``Protocol.current_size`` to know
whether a fragmented message is in progress, sets ``Protocol.parser_exc`` when it fails a
connection itself, and inflates through ``PerMessageDeflate.decode``. None of these is public
API; pyproject.toml bounds websockets below the next major release, and these tests (run
against the newest releases by ``make test-newest``) fail when a release changes them. The
canary for anyio's private stream attributes is
``test_the_reader_reads_from_the_loop_callback_on_asyncio_plain_tcp`` in test_transport.py."""

from __future__ import annotations

import inspect

from websockets.exceptions import PayloadTooBig
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    enable_client_permessage_deflate,
    enable_server_permessage_deflate,
)
from websockets.frames import Frame, Opcode, apply_mask
from websockets.protocol import State

from tests.test_transport_frames import connected_pair


def test_current_size_is_none_between_messages_and_counts_inside_a_fragmented_one() -> None:
    client, server = connected_pair(deflate=False, max_size=None)
    assert client.current_size is None
    server.send_text(b"abc", fin=False)
    client.receive_data(b"".join(server.data_to_send()))
    client.events_received()
    assert client.current_size == 3
    server.send_continuation(b"de", fin=True)
    client.receive_data(b"".join(server.data_to_send()))
    client.events_received()
    assert client.current_size is None


def test_parser_exc_is_a_writable_attribute_that_close_exc_reads() -> None:
    client, _ = connected_pair(deflate=False, max_size=None)
    assert client.parser_exc is None
    client.receive_data(b"\x8f\x00")  # a reserved opcode: websockets' parser fails the connection
    assert client.parser_exc is not None
    assert client.state is State.CLOSING
    client.parser_exc = PayloadTooBig(10, 5)  # the splitter records its own verdicts here
    assert isinstance(client.parser_exc, PayloadTooBig)


def test_payload_too_big_takes_the_current_size() -> None:
    exc = PayloadTooBig(10, 5)
    exc.set_current_size(None)
    assert "10" in str(exc) and "5" in str(exc)


def test_deflate_decode_takes_a_whole_frame_and_a_max_size() -> None:
    assert "max_size" in inspect.signature(PerMessageDeflate.decode).parameters
    client, server = connected_pair(deflate=True, max_size=None)
    (client_deflate,) = client.extensions
    (server_deflate,) = server.extensions
    assert isinstance(client_deflate, PerMessageDeflate)
    assert isinstance(server_deflate, PerMessageDeflate)
    encoded = server_deflate.encode(Frame(Opcode.TEXT, b"hello hello hello"))
    assert encoded.rsv1
    decoded = client_deflate.decode(encoded, max_size=100)
    assert bytes(decoded.data) == b"hello hello hello"
    assert enable_client_permessage_deflate(None) and enable_server_permessage_deflate(None)


def test_apply_mask_is_its_own_inverse() -> None:
    key = b"\x01\x02\x03\x04"
    data = bytes(range(200))
    assert apply_mask(apply_mask(data, key), key) == data
    assert apply_mask(data, key) != data
