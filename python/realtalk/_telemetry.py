"""Turn latencies as OpenTelemetry histograms, when ``opentelemetry-api`` is installed (the
``otel`` extra); without it nothing is imported, created or recorded.

Each latency of ``client.metrics.turns`` (``TurnMetrics``) is recorded once, in seconds, the
moment it is measured, into a histogram of the same name under ``realtalk.turn.``. The meter
comes from the ``meter_provider`` the client was given, else from the global one (a no-op until
the application installs an SDK)."""

from __future__ import annotations

from typing import Any

__all__ = ["HISTOGRAMS", "TurnTelemetry", "turn_telemetry"]

#: TurnMetrics field -> (histogram name, description).
HISTOGRAMS: dict[str, tuple[str, str]] = {
    "speech_end_to_first_delta_s": (
        "realtalk.turn.speech_end_to_first_delta",
        "From the end of the user's speech to the reply's first audio delta"),
    "request_to_first_delta_s": (
        "realtalk.turn.request_to_first_delta",
        "From the client's response.create to the reply's first audio delta"),
    "first_delta_to_first_audible_s": (
        "realtalk.turn.first_delta_to_first_audible",
        "From the reply's first audio delta to its first sample played"),
}


class TurnTelemetry:
    """The histograms of one client; :meth:`record` takes a turn's latencies as they come."""

    def __init__(self, meter: Any, attributes: dict[str, str]) -> None:
        self._attributes = attributes
        self._histograms = {field: meter.create_histogram(name, unit="s", description=text)
                            for field, (name, text) in HISTOGRAMS.items()}

    def record(self, turn: Any, *names: str) -> None:
        """Record the turn's latencies ``names`` (TurnMetrics fields) that were measured."""
        for name in names:
            value = getattr(turn, name)
            if value is not None:
                self._histograms[name].record(value, self._attributes)


def turn_telemetry(meter_provider: Any, attributes: dict[str, str]) -> TurnTelemetry | None:
    """The client's histograms, or None when ``opentelemetry-api`` is not installed."""
    try:
        from opentelemetry import metrics  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    from realtalk import __version__

    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    return TurnTelemetry(provider.get_meter("realtalk", __version__), attributes)
