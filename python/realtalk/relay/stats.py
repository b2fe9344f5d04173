"""The relay's counters (also served as Prometheus text)."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class RelayStats:
    """Counters since the relay started (``connections_open``/``sessions_open`` are gauges)."""

    connections_total: int = 0
    connections_open: int = 0
    sessions_total: int = 0
    sessions_open: int = 0
    auth_failures: int = 0
    capacity_refusals: int = 0
    subject_limit_refusals: int = 0
    store_failures: int = 0
    upstream_failures: int = 0
    events_from_client: int = 0
    bytes_from_client: int = 0
    events_to_client: int = 0
    bytes_to_client: int = 0
    events_refused: int = 0
    audio_seconds_from_client: float = 0.0
    abuse_closes: int = 0
    oversize_closes: int = 0
    idle_closes: int = 0
    expired_sessions: int = 0

    def prometheus(self) -> str:
        """The counters in the Prometheus text exposition format."""
        lines = []
        for item in fields(self):
            gauge = item.name.endswith("_open")
            suffix = "" if gauge or item.name.endswith("_total") else "_total"
            name = f"realtalk_relay_{item.name}{suffix}"
            lines.append(f"# TYPE {name} {'gauge' if gauge else 'counter'}")
            lines.append(f"{name} {getattr(self, item.name)}")
        return "\n".join(lines) + "\n"

