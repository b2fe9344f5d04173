"""realtalk: low-latency voice agents on the OpenAI Realtime API, with a Rust audio core."""

from realtalk._audio import __version__
from realtalk.connection import RealtimeConnection, connect

__all__ = ["RealtimeConnection", "__version__", "connect"]
