"""realtalk: low-latency voice agents on the OpenAI Realtime API, with a Rust audio core."""

from realtalk._audio import __version__

__all__ = ["__version__"]
