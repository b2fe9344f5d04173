"""WebSocket frames written and cut out here, beside websockets' own parser.

websockets' Sans-I/O protocol owns the connection's state and sees every frame but the common
one: a whole unfragmented data message, written by :func:`data_frame` when no extension is in
use and, on receipt, cut out of the bytes by :class:`FrameSplitter`."""

from __future__ import annotations

import math
import os
from typing import Any

from websockets.exceptions import PayloadTooBig
from websockets.exceptions import ProtocolError as WebSocketsProtocolError
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import CloseCode, Frame, Opcode, apply_mask
from websockets.protocol import Protocol, Side, State

from realtalk.transport.messages import RawMessage

MAX_HEADER = 14


def data_frame(first_byte: int, data: bytes, mask: bool) -> bytes:
    """A whole unfragmented frame with no extension in use, as websockets' Frame.serialize
    writes it, without building a Frame (``first_byte``: 0x81 text, 0x82 binary)."""
    length = len(data)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        head = bytes((first_byte, mask_bit | length))
    elif length < 65536:
        head = bytes((first_byte, mask_bit | 126)) + length.to_bytes(2)
    else:
        head = bytes((first_byte, mask_bit | 127)) + length.to_bytes(8)
    if mask:
        key = os.urandom(4)
        return head + key + apply_mask(data, key)
    return head + data


def frame_extent(data: bytes, pos: int) -> tuple[int, int, bool] | None:
    """(header size, payload length, masked) of the frame starting at ``data[pos]``, or None
    when its header is not all there."""
    available = len(data) - pos
    if available < 2:
        return None
    second = data[pos + 1]
    length = second & 0x7F
    head = 2
    if length == 126:
        head = 4
        length = int.from_bytes(data[pos + 2 : pos + 4])
    elif length == 127:
        head = 10
        length = int.from_bytes(data[pos + 2 : pos + 10])
    masked = second >= 0x80
    if masked:
        head += 4
    if available < head:
        return None
    return head, length, masked


class FrameSplitter:
    """Feeds received bytes to a connection's websockets ``protocol`` and returns what they
    complete, in order: each a :class:`RawMessage` or one of websockets' frames.

    websockets' parser (a generator per frame, a Frame object, a check per field) costs more
    than the rest of receiving a small event. So the common frame, a whole unfragmented text
    or binary message in one read, is cut out here and becomes a RawMessage at once. Every
    other frame (control frames, fragments, compressed or oversized frames, anything
    malformed, frames cut by the end of a read) goes to websockets, whole or, when cut, with
    the count of its bytes still to come, so that its parser only ever stops between frames
    and judges everything this path does not take. Before the connection is open, and once
    it is closing, everything goes to websockets."""

    __slots__ = ("_cut_header", "_fast_max", "_inflater", "_masked", "_parser_owed",
                 "_protocol", "parser_fed")

    def __init__(self, protocol: Protocol) -> None:
        self._protocol = protocol
        # A frame header cut by the end of a read, and how many more bytes belong to a frame
        # websockets' parser is in the middle of.
        self._cut_header = b""
        self._parser_owed = 0
        self.parser_fed = False
        """websockets' protocol took bytes: it may have writes, a close (the reader clears it)."""
        self._masked = protocol.side is Side.SERVER  # a server receives masked frames
        # With permessage-deflate alone, whole compressed messages are inflated here too
        deflate = [e for e in protocol.extensions if isinstance(e, PerMessageDeflate)]
        self._inflater = deflate[0] if len(deflate) == len(protocol.extensions) == 1 else None
        limits = [n for n in (protocol.max_message_size, protocol.max_fragment_size) if n]
        self._fast_max = min(limits, default=math.inf)

    def split(self, data: bytes) -> list[Any]:
        protocol = self._protocol
        events: list[Any] = []
        if self._cut_header:  # websockets has begun a frame whose header was cut: learn its size
            header = self._cut_header + data[:MAX_HEADER]
            extent = frame_extent(header, 0)
            if extent is None:
                self._cut_header = header
                return self._feed_parser(data)
            self._parser_owed = extent[0] + extent[1] - len(self._cut_header)
            self._cut_header = b""
        owed = self._parser_owed
        if owed:  # the rest of a frame websockets' parser is in the middle of
            if len(data) <= owed:
                self._parser_owed = owed - len(data)
                return self._feed_parser(data)
            events = self._feed_parser(data[:owed])
            self._parser_owed = 0
            data = data[owed:]
        pos = 0
        end = len(data)
        masked = self._masked
        while pos < end:
            if protocol.state is not State.OPEN:
                events += self._feed_parser(data[pos:] if pos else data)
                break
            extent = frame_extent(data, pos)
            if extent is None:
                self._cut_header = data[pos:]
                events += self._feed_parser(self._cut_header)
                break
            head, length, is_masked = extent
            size = head + length
            first = data[pos]
            compressed = first & 0x40  # RSV1: permessage-deflate
            if (
                (first & 0xBF == 0x81 or first & 0xBF == 0x82)  # FIN, text or binary, no RSV2/3
                and (not compressed or self._inflater is not None)
                and size <= end - pos
                and is_masked is masked
                and length <= self._fast_max
                and protocol.current_size is None  # not inside a fragmented message
            ):
                payload = data[pos + head : pos + size]
                if is_masked:
                    payload = apply_mask(payload, data[pos + head - 4 : pos + head])
                is_text = first & 0x0F == 1
                if not compressed:
                    events.append(RawMessage(payload, is_text))
                elif (message := self._inflate(payload, is_text)) is not None:
                    events.append(message)
            elif size <= end - pos:
                events += self._feed_parser(data[pos : pos + size])
            else:
                events += self._feed_parser(data[pos:] if pos else data)
                self._parser_owed = size - (end - pos)
                break
            pos += size
        return events

    def _feed_parser(self, data: bytes) -> list[Any]:
        """Hand bytes to websockets' parser; return the frames (events) it completed."""
        self.parser_fed = True
        self._protocol.receive_data(data)
        return self._protocol.events_received()

    def _inflate(self, payload: bytes, is_text: bool) -> RawMessage | None:
        """A whole compressed message, through websockets' own permessage-deflate decoder (the
        compression context stays its); a failure fails the connection as websockets' parser
        would (1009 for a message inflating past the size limit, 1002 for a corrupt one)."""
        assert self._inflater is not None
        protocol = self._protocol
        frame = Frame(Opcode.TEXT if is_text else Opcode.BINARY, payload, rsv1=True)
        limit = None if math.isinf(self._fast_max) else int(self._fast_max)
        try:
            frame = self._inflater.decode(frame, max_size=limit)
        except PayloadTooBig as exc:
            self.parser_fed = True  # (the close frame to write)
            exc.set_current_size(None)  # (no fragmented message was in progress)
            protocol.fail(CloseCode.MESSAGE_TOO_BIG, str(exc))
            protocol.parser_exc = exc
            return None
        except WebSocketsProtocolError as exc:
            self.parser_fed = True
            protocol.fail(CloseCode.PROTOCOL_ERROR, str(exc))
            protocol.parser_exc = exc
            return None
        return RawMessage(bytes(frame.data), is_text)
