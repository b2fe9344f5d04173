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

# Submodules a program reaches through the package (``realtalk.simulator.Simulator`` after a
# bare ``import realtalk``), imported on first use so that ``import realtalk`` stays light.
_SUBMODULES = frozenset({"audio", "calls", "events", "relay", "simulator", "tokens", "tools",
                         "transport", "wav"})


def __getattr__(name: str) -> object:
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"realtalk.{name}")
    raise AttributeError(f"module 'realtalk' has no attribute {name!r}")
