"""The knobs a WebSocket connection takes, once: :class:`WebSocketOptions` and its defaults.

:func:`~realtalk.transport.open_websocket`, :class:`~realtalk.transport.WebSocketServer` and
:class:`~realtalk.transport.WebSocket` accept an ``options=WebSocketOptions(...)`` and, as
before, each field as a keyword argument (which overrides the same field of ``options``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, TypedDict

DEFAULT_MAX_SIZE = 16 * 2**20
"""Largest incoming message accepted (16 MiB): above the API's 15 MiB audio append limit."""
DEFAULT_PING_INTERVAL = 20.0
DEFAULT_PING_TIMEOUT = 20.0
DEFAULT_OPEN_TIMEOUT = 10.0
DEFAULT_CLOSE_TIMEOUT = 10.0
DEFAULT_MAX_QUEUE = 32
MAX_REQUEST_HEAD = 64 * 1024
"""Largest HTTP request head (request line and headers) a server reads before answering 431."""
RECEIVE_SIZE = 65536
"""Bytes asked of the stream per read."""

Compression = Literal["deflate"] | None


@dataclass(frozen=True, slots=True)
class WebSocketOptions:
    """How a connection behaves, the same fields on the client and the server side.

    - ``max_size``: largest incoming message in bytes (None: no limit); a larger one fails the
      connection with close 1009.
    - ``ping_interval``/``ping_timeout``: keepalive (None disables either).
    - ``open_timeout`` bounds TCP + TLS + upgrade (server: TLS + request head);
      ``close_timeout`` the close handshake.
    - ``compression``: ``"deflate"`` offers (or accepts) permessage-deflate, None does not.
    - ``max_queue``: messages buffered for a consumer that does not keep up.
    """

    max_size: int | None = DEFAULT_MAX_SIZE
    ping_interval: float | None = DEFAULT_PING_INTERVAL
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT
    open_timeout: float | None = DEFAULT_OPEN_TIMEOUT
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT
    compression: Compression = "deflate"
    max_queue: int = DEFAULT_MAX_QUEUE

    def with_overrides(self, **overrides: object) -> WebSocketOptions:
        """These options with the fields named in ``overrides`` replaced (TypeError for a name
        that is not a field)."""
        unknown = set(overrides) - {field.name for field in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unexpected WebSocket option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **overrides) if overrides else self  # type: ignore[arg-type]


class OptionOverrides(TypedDict, total=False):
    """The fields of :class:`WebSocketOptions` as keyword arguments (``**overrides``)."""

    max_size: int | None
    ping_interval: float | None
    ping_timeout: float | None
    open_timeout: float | None
    close_timeout: float
    compression: Compression
    max_queue: int


DEFAULT_OPTIONS = WebSocketOptions()


def resolve_options(
    options: WebSocketOptions | None, overrides: OptionOverrides
) -> WebSocketOptions:
    """``options`` (default: :data:`DEFAULT_OPTIONS`) with the keyword arguments applied."""
    return (options or DEFAULT_OPTIONS).with_overrides(**overrides)
