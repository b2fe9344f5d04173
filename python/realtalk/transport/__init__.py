"""WebSocket client and server on anyio byte streams, driven by websockets' Sans-I/O protocol.

Runs unchanged on asyncio and trio. The protocol objects of the ``websockets`` library
(``ClientProtocol``, ``ServerProtocol``) do the handshake, the framing, masking,
permessage-deflate and the close handshake; this module does the I/O around them. The one
exception is the hot path: a whole unfragmented data message in one read is cut out of the
bytes here and never goes through websockets' per-frame parser (see
:class:`~realtalk.transport.frames.FrameSplitter`), and with no extension in use data frames are
written here too (:func:`~realtalk.transport.frames.data_frame`); websockets still sees every
other frame and owns the protocol's state.

- one reader task per connection (in the connection's own task group) feeds received bytes to the
  protocol, answers pings and close frames, and delivers whole messages into a bounded queue
  (``max_queue`` messages). A slow consumer fills the queue, the reader stops reading, TCP flow
  control stops the peer: memory stays flat. On asyncio with a plain TCP stream the reader does
  its work in the event loop's data callback instead (see :mod:`realtalk.transport.asyncio_fast_path`): a message then
  costs one wake-up of the loop fewer, or two fewer with :meth:`WebSocket.consume`;
- every send goes through one lock and awaits the socket write, so a slow peer slows the sender
  down instead of growing a buffer;
- keepalive pings every ``ping_interval`` seconds; a peer that does not answer within
  ``ping_timeout`` seconds is declared dead and the connection ends with :class:`KeepaliveTimeout`
  (a time during which the reader is blocked by a slow consumer does not count against the peer);
- the close handshake is bounded by ``close_timeout``; after it the TCP connection is dropped.

Errors reach the caller as :mod:`realtalk.errors` exceptions, translated in one place
(:mod:`realtalk.transport.errors`). A close frame becomes the exception the Realtime layer's
:func:`realtalk.close_codes.close_error` names for its code and reason: what the Realtime API
means by a code lives there, this package knows only RFC 6455's.

==========================================  ===========================================
what happened                               exception
==========================================  ===========================================
a close frame                               :func:`realtalk.close_codes.close_error`
no close frame (peer vanished)              ``ConnectionClosed(1006)``
keepalive pong missing                      :class:`~realtalk.errors.KeepaliveTimeout`
HTTP status instead of 101                  ``HandshakeError(status, body)``
peer broke the WebSocket protocol           :class:`~realtalk.errors.ProtocolError`
DNS, refused, TLS failure while dialling    :class:`~realtalk.errors.ConnectError`
open deadline passed                        :class:`~realtalk.errors.Timeout`
==========================================  ===========================================

The package follows websockets' own cuts, one concern per module:

- ``options``: :class:`WebSocketOptions` and the defaults;
- ``errors``: the exception mapping above (``close_error`` is re-exported from
  :mod:`realtalk.close_codes` for existing imports);
- ``http11``: HTTP requests and responses, the request head and body off a stream;
- ``frames``: the data-frame writer and the whole-frame splitter;
- ``messages``: :class:`RawMessage` and the bounded queue from the reader to the consumers;
- ``connection``: :class:`WebSocket`;
- ``client``: :func:`open_websocket`; ``server``: :class:`WebSocketServer` and :func:`serve`;
- ``asyncio_fast_path``: the only module that touches asyncio's or anyio's internals;
- ``log``: the ``realtalk.transport`` logger, with credentials redacted.
"""

from realtalk.close_codes import close_error
from realtalk.transport.client import open_websocket
from realtalk.transport.connection import WebSocket
from realtalk.transport.errors import is_clean_close, map_exceptions
from realtalk.transport.http11 import HTTPRequest, HTTPResponse
from realtalk.transport.log import logger
from realtalk.transport.messages import RawMessage
from realtalk.transport.options import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_SIZE,
    DEFAULT_OPEN_TIMEOUT,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    MAX_REQUEST_HEAD,
    Compression,
    WebSocketOptions,
)
from realtalk.transport.server import (
    Handler,
    HTTPHandler,
    ProcessRequest,
    SelectSubprotocol,
    WebSocketServer,
    serve,
)

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_OPEN_TIMEOUT",
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_PING_TIMEOUT",
    "MAX_REQUEST_HEAD",
    "Compression",
    "HTTPHandler",
    "HTTPRequest",
    "HTTPResponse",
    "Handler",
    "ProcessRequest",
    "RawMessage",
    "SelectSubprotocol",
    "WebSocket",
    "WebSocketOptions",
    "WebSocketServer",
    "close_error",
    "is_clean_close",
    "logger",
    "map_exceptions",
    "open_websocket",
    "serve",
]
