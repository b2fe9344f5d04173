"""realtalk: low-latency voice agents on the OpenAI Realtime API, with a Rust audio core.

The names most programs need are here; the layers have their own modules: ``realtalk.audio``
(the Rust core's numpy face), ``realtalk.events`` (typed GA/beta events), ``realtalk.transport``
(WebSocket on anyio), ``realtalk.simulator`` (the local Realtime server).
"""

from realtalk._audio import __version__
from realtalk.client import (
    ClientEvent,
    ClientMetrics,
    InputBackpressure,
    Notification,
    RealtimeClient,
    ResponseBusy,
    TurnMetrics,
)
from realtalk.connection import RealtimeConnection, connect
from realtalk.conversation import Conversation, Item
from realtalk.errors import (
    AuthenticationError,
    ConnectionClosed,
    HandshakeError,
    InvalidRequestError,
    ProtocolError,
    RealtalkError,
    SessionExpired,
    Timeout,
)

__all__ = [
    "AuthenticationError",
    "ClientEvent",
    "ClientMetrics",
    "ConnectionClosed",
    "Conversation",
    "HandshakeError",
    "InputBackpressure",
    "InvalidRequestError",
    "Item",
    "Notification",
    "ProtocolError",
    "RealtalkError",
    "RealtimeClient",
    "RealtimeConnection",
    "ResponseBusy",
    "SessionExpired",
    "Timeout",
    "TurnMetrics",
    "__version__",
    "connect",
]
