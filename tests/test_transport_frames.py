"""The receive path's frame splitter (``WebSocket._frames_of``) against websockets' own parser.

The splitter takes whole unfragmented data frames itself and hands every other frame to
websockets' Sans-I/O protocol. Whatever the peer sends and however TCP cuts it into reads, the
messages, the answers written back (pongs, the close echo) and the final state must be those of
a websockets protocol fed the same bytes: that twin is the oracle."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from realtalk.transport import RawMessage, WebSocket
from realtalk.transport.frames import data_frame as _data_frame
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import (
    enable_client_permessage_deflate,
    enable_server_permessage_deflate,
)
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side
from websockets.server import ServerProtocol
from websockets.streams import StreamReader
from websockets.uri import parse_uri

pytestmark = pytest.mark.anyio


def connected_pair(*, deflate: bool, max_size: int | None) -> tuple[Protocol, Protocol]:
    """A client and a server protocol after an in-memory opening handshake."""
    client = ClientProtocol(
        parse_uri("ws://localhost/v1"),
        extensions=enable_client_permessage_deflate(None) if deflate else None,
        max_size=max_size,
    )
    server = ServerProtocol(
        extensions=enable_server_permessage_deflate(None) if deflate else None,
        max_size=max_size,
    )
    client.send_request(client.connect())
    server.receive_data(b"".join(client.data_to_send()))
    server.send_response(server.accept(server.events_received()[0]))
    client.receive_data(b"".join(server.data_to_send()))
    assert client.events_received()[0].status_code == 101
    return client, server


def receiver(protocol: Protocol) -> WebSocket:
    return WebSocket(
        protocol,
        None,  # type: ignore[arg-type]  # _frames_of never touches the stream
        request=None,
        response=None,
        ping_interval=None,
        ping_timeout=None,
        close_timeout=1.0,
        max_queue=8,
    )


def oracle_messages(frames: list[Any], fragments: list[Any]) -> list[RawMessage]:
    """websockets' frames reassembled into messages, the way any websockets user does."""
    messages = []
    for frame in frames:
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
            fragments[:] = [frame]
        elif frame.opcode is Opcode.CONT:
            fragments.append(frame)
        else:
            continue
        if frame.fin:
            data = b"".join(bytes(part.data) for part in fragments)
            messages.append(RawMessage(data, fragments[0].opcode is Opcode.TEXT))
            fragments.clear()
    return messages


def outcome(protocol: Protocol) -> tuple[Any, ...]:
    return (
        protocol.state,
        protocol.close_rcvd and (protocol.close_rcvd.code, protocol.close_rcvd.reason),
        protocol.close_sent and (protocol.close_sent.code, protocol.close_sent.reason),
        type(protocol.parser_exc),
    )


payloads = st.one_of(
    st.binary(max_size=200),
    st.integers(120, 70_000).map(lambda n: bytes(i % 251 for i in range(n))),
)
actions = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["text", "binary"]), payloads),
        st.tuples(st.just("fragmented"), st.lists(st.binary(max_size=300), min_size=1, max_size=4)),
        st.tuples(st.sampled_from(["ping", "pong"]), st.binary(max_size=125)),
    ),
    max_size=12,
)


def sent_bytes(sender: Protocol, script: list[tuple[str, Any]], close: bool) -> bytes:
    for kind, data in script:
        if kind == "text":
            sender.send_text(data)
        elif kind == "binary":
            sender.send_binary(data)
        elif kind == "fragmented":
            sender.send_text(data[0], fin=len(data) == 1)
            for index, part in enumerate(data[1:], 2):
                if index % 2:  # a ping between fragments, as the RFC allows
                    sender.send_ping(b"mid")
                sender.send_continuation(part, fin=index == len(data))
        elif kind == "ping":
            sender.send_ping(data)
        else:
            sender.send_pong(data)
    if close:
        sender.send_close(1000, "bye")
    return b"".join(sender.data_to_send())


def written(protocol: Protocol) -> list[tuple[Any, ...]]:
    reader = StreamReader()
    reader.feed_data(b"".join(protocol.data_to_send()))
    frames = []
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=protocol.side is Side.CLIENT)
        with pytest.raises(StopIteration) as done:
            next(parser)
        frames.append((done.value.value.opcode, bytes(done.value.value.data)))
    return frames


def cut(data: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


async def check_against_websockets(
    stream: bytes, chunks_at: list[int], *, server_side: bool, deflate: bool, max_size: int | None
) -> None:
    tested, tested_peer = connected_pair(deflate=deflate, max_size=max_size)
    twin, twin_peer = connected_pair(deflate=deflate, max_size=max_size)
    if server_side:
        tested, twin = tested_peer, twin_peer
    ws = receiver(tested)
    got: list[RawMessage] = []
    expected: list[RawMessage] = []
    fragments: list[Any] = []
    for chunk in cut(stream, chunks_at):
        for frame in ws._frames_of(chunk):
            message = ws._message_of(frame)
            if message is not None:
                got.append(RawMessage(bytes(message.data), message.is_text))
        twin.receive_data(chunk)
        expected += oracle_messages(twin.events_received(), fragments)
        # pongs and the close echo (a client masks them with random keys: compare them unmasked)
        assert written(tested) == written(twin)
    assert got == expected
    assert outcome(tested) == outcome(twin)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    script=actions,
    chunks_at=st.lists(st.integers(0, 400_000), max_size=8),
    server_side=st.booleans(),
    deflate=st.booleans(),
    close=st.booleans(),
)
async def test_any_stream_cut_anywhere_gives_what_websockets_gives(
    script: list[tuple[str, Any]],
    chunks_at: list[int],
    server_side: bool,
    deflate: bool,
    close: bool,
) -> None:
    client, server = connected_pair(deflate=deflate, max_size=None)
    stream = sent_bytes(client if server_side else server, script, close)
    await check_against_websockets(
        stream, chunks_at, server_side=server_side, deflate=deflate, max_size=None
    )


@settings(max_examples=100, deadline=None)
@given(
    script=actions,
    garbage=st.binary(min_size=1, max_size=40),
    chunks_at=st.lists(st.integers(0, 100_000), max_size=4),
    server_side=st.booleans(),
)
async def test_garbage_after_valid_frames_fails_like_websockets(
    script: list[tuple[str, Any]], garbage: bytes, chunks_at: list[int], server_side: bool
) -> None:
    client, server = connected_pair(deflate=False, max_size=None)
    stream = sent_bytes(client if server_side else server, script, close=False) + garbage
    await check_against_websockets(
        stream, chunks_at, server_side=server_side, deflate=False, max_size=None
    )


@pytest.mark.parametrize("size", [999, 1000, 1001, 70_000])
@pytest.mark.parametrize("server_side", [False, True])
async def test_a_message_over_max_size_fails_with_1009_like_websockets(
    size: int, server_side: bool
) -> None:
    client, server = connected_pair(deflate=False, max_size=None)
    sender = client if server_side else server
    stream = sent_bytes(sender, [("text", b"a" * 10), ("binary", b"b" * size)], close=False)
    for chunks_at in ([], [3], [len(stream) - 1]):
        await check_against_websockets(
            stream, chunks_at, server_side=server_side, deflate=False, max_size=1000
        )
    tested, _ = connected_pair(deflate=False, max_size=1000)
    if not server_side:
        ws = receiver(tested)
        ws._frames_of(stream)
        assert (tested.close_sent is not None and tested.close_sent.code == 1009) == (size > 1000)


@pytest.mark.parametrize("first_byte", [0x91, 0xA1, 0xC1, 0x83, 0x01, 0x80])
async def test_frames_the_fast_path_must_not_take_reach_websockets(first_byte: int) -> None:
    """RSV bits, reserved opcodes, a lone first fragment, a continuation out of place."""
    frame = bytes([first_byte, 5]) + b"hello"
    await check_against_websockets(
        frame + bytes([0x81, 2]) + b"ok", [], server_side=False, deflate=False, max_size=None
    )


async def test_a_masked_frame_from_a_server_fails_the_client_like_websockets() -> None:
    _, server = connected_pair(deflate=False, max_size=None)
    client_twin, _ = connected_pair(deflate=False, max_size=None)
    client_twin.send_text(b"masked")  # a client's frame is masked: wrong direction
    stream = b"".join(client_twin.data_to_send())
    await check_against_websockets(stream, [], server_side=False, deflate=False, max_size=None)


@pytest.mark.parametrize("server_side", [False, True])
async def test_every_cut_inside_headers_and_payloads_gives_what_websockets_gives(
    server_side: bool,
) -> None:
    """Reads of 1 to 15 bytes cut every header of every length form at every offset."""
    script: list[tuple[str, Any]] = [
        ("text", b"x" * 10),  # 7-bit length
        ("ping", b"p"),
        ("binary", b"y" * 300),  # 16-bit length
        ("fragmented", [b"a", b"b" * 200, b"c"]),
        ("text", b"z" * 66_000),  # 64-bit length
        ("pong", b""),
        ("text", b""),
    ]
    client, server = connected_pair(deflate=False, max_size=None)
    stream = sent_bytes(client if server_side else server, script, close=True)
    for step in range(1, 16):
        await check_against_websockets(
            stream,
            list(range(0, len(stream), step)),
            server_side=server_side,
            deflate=False,
            max_size=None,
        )


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70_000])
@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_frames_written_without_websockets_are_the_frames_websockets_writes(
    size: int, opcode: Opcode
) -> None:
    data = bytes(i % 253 for i in range(size))
    first_byte = 0x81 if opcode is Opcode.TEXT else 0x82
    assert _data_frame(first_byte, data, False) == Frame(opcode, data).serialize(mask=False)
    masked = _data_frame(first_byte, data, True)
    reader = StreamReader()
    reader.feed_data(masked)
    with pytest.raises(StopIteration) as done:
        next(Frame.parse(reader.read_exact, mask=True))
    frame = done.value.value
    assert (frame.opcode, bytes(frame.data), frame.fin, reader.buffer) == (opcode, data, True, b"")
    if size >= 4:
        assert masked[-size:] != data  # masked with a key, not sent in clear


@pytest.mark.parametrize("server_side", [False, True])
async def test_a_corrupt_compressed_message_fails_like_websockets(server_side: bool) -> None:
    client, server = connected_pair(deflate=True, max_size=None)
    stream = bytearray(sent_bytes(client if server_side else server, [("text", b"ok" * 50)], False))
    good = bytes(stream)
    stream[-3] ^= 0xFF  # inside the deflate stream (masked or not, the flip survives)
    for corrupt in (bytes(stream), good + bytes(stream)):
        await check_against_websockets(
            corrupt, [], server_side=server_side, deflate=True, max_size=None
        )


@pytest.mark.parametrize("size", [1000, 1001, 50_000])
async def test_a_compressed_message_inflating_past_max_size_fails_like_websockets(
    size: int,
) -> None:
    client, server = connected_pair(deflate=True, max_size=None)
    stream = sent_bytes(server, [("text", b"a" * 10), ("text", b"z" * size)], close=False)
    assert len(stream) < 1000  # small on the wire: only inflating finds the size
    await check_against_websockets(stream, [], server_side=False, deflate=True, max_size=1000)
    tested, _ = connected_pair(deflate=True, max_size=1000)
    ws = receiver(tested)
    assert all(event.__class__ is RawMessage for event in ws._frames_of(stream))
    assert (tested.close_sent is not None and tested.close_sent.code == 1009) == (size > 1000)
