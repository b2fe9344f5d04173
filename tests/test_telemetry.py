"""Turn latencies (``client.metrics.turns``) and their OpenTelemetry export (issue 23), against
the simulator on asyncio and trio.

Oracles: the test's own clock around the request and the first audio delta it saw, a responder
that waits a known time before it speaks, and the OpenTelemetry SDK's ``InMemoryMetricReader``
(skipped when ``opentelemetry-sdk`` is not installed: it is in the ``test`` extra).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import anyio
import pytest

from client_helpers import speech_then_silence, stream, until

from realtalk import _telemetry
from realtalk.client import RealtimeClient, TurnMetrics
from realtalk.simulator import Simulator
from realtalk.simulator.responder import Delay, Text

THINK_S = 0.25  # the simulated model's pause before it speaks
VAD = {"audio": {"input": {"turn_detection": {"type": "server_vad",
                                              "silence_duration_ms": 300}}}}


def thinking_responder(ctx: Any) -> list[Any]:
    return [Delay(THINK_S), Text("Hello there, how can I help?")]


async def requested_turn(client: RealtimeClient) -> tuple[TurnMetrics, float]:
    """Ask for a reply; its metrics and the longest the request could have taken to its
    first audio delta by the test's own clock."""
    first_delta: list[float] = []
    client.on("response.output_audio.delta",
              lambda _: first_delta.append(time.perf_counter()) if not first_delta else None)
    await client.send_user_message_content("hello")
    asked = time.perf_counter()
    response_id = await client.create_response()
    await client.wait_for_response_done(10)
    (turn,) = [t for t in client.metrics.turns if t.response_id == response_id]
    return turn, first_delta[0] - asked


async def test_request_to_first_delta_times_a_response_the_client_asked_for() -> None:
    async with Simulator(responder=thinking_responder) as sim, RealtimeClient(
            sim.url, api_key="sk-test") as client:
        turn, longest = await requested_turn(client)
        assert turn.request_to_first_delta_s is not None
        assert THINK_S <= turn.request_to_first_delta_s <= longest
        assert turn.speech_end_to_first_delta_s is None  # typed, not spoken


async def test_a_response_the_server_started_has_no_request_time() -> None:
    async with Simulator(responder=thinking_responder) as sim, RealtimeClient(
            sim.url, api_key="sk-test", session=VAD) as client:
        await stream(client, speech_then_silence(800, 700))
        await until(lambda: client.metrics.turns
                    and client.metrics.turns[-1].speech_end_to_first_delta_s is not None)
        turn = client.metrics.turns[-1]
        assert turn.request_to_first_delta_s is None
        assert turn.speech_end_to_first_delta_s >= THINK_S


def histograms(reader: Any) -> dict[str, Any]:
    found = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found[metric.name] = metric
    return found


@pytest.mark.parametrize("protocol", ["ga", "beta"])
async def test_the_latencies_are_exported_as_opentelemetry_histograms(protocol: str) -> None:
    pytest.importorskip("opentelemetry.sdk.metrics")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    async with Simulator(responder=thinking_responder) as sim, RealtimeClient(
            sim.url, api_key="sk-test", protocol=protocol, session=VAD,
            meter_provider=provider) as client:
        await stream(client, speech_then_silence(800, 700))  # a turn the server starts
        await until(lambda: client.metrics.turns
                    and client.metrics.turns[-1].speech_end_to_first_delta_s is not None)
        await client.wait_for_response_done(10)
        turn, _ = await requested_turn(client)  # and one the client asks for
        client.playback.pull(client.playback.queued)  # the sound card plays it
        await until(lambda: turn.first_delta_to_first_audible_s is not None)
        turns = list(client.metrics.turns)
    found = histograms(reader)
    assert set(found) == {name for name, _ in _telemetry.HISTOGRAMS.values()}
    for field, (name, _) in _telemetry.HISTOGRAMS.items():
        values = [getattr(t, field) for t in turns if getattr(t, field) is not None]
        (point,) = found[name].data.data_points
        assert found[name].unit == "s"
        # Each measured latency was recorded once, as measured.
        assert point.count == len(values) >= 1, name
        assert point.sum == pytest.approx(sum(values)), name
        assert dict(point.attributes) == {"realtalk.model": "gpt-realtime",
                                          "realtalk.protocol": protocol}


async def test_without_opentelemetry_nothing_is_exported_and_turns_are_measured(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # import fails as if absent
    assert _telemetry.turn_telemetry(None, {}) is None
    async with Simulator(responder=thinking_responder) as sim, RealtimeClient(
            sim.url, api_key="sk-test") as client:
        turn, _ = await requested_turn(client)
        assert client._telemetry is None
        assert turn.request_to_first_delta_s is not None


async def test_a_turn_is_recorded_once_even_if_deltas_keep_coming() -> None:
    recorded: list[tuple[str, float]] = []

    class Histogram:
        def __init__(self, name: str) -> None:
            self.name = name

        def record(self, value: float, attributes: dict[str, str]) -> None:
            recorded.append((self.name, value))

    class Meter:
        def create_histogram(self, name: str, unit: str, description: str) -> Histogram:
            return Histogram(name)

    telemetry = _telemetry.TurnTelemetry(Meter(), {})
    turn = TurnMetrics(request_to_first_delta_s=0.5)
    telemetry.record(turn, "speech_end_to_first_delta_s", "request_to_first_delta_s")
    assert recorded == [("realtalk.turn.request_to_first_delta", 0.5)]
    async with Simulator(responder=thinking_responder) as sim, RealtimeClient(
            sim.url, api_key="sk-test") as client:
        client._telemetry = telemetry
        recorded.clear()
        await requested_turn(client)
        await anyio.sleep(0.05)
        # Many audio deltas, one recording: the first.
        assert [name for name, _ in recorded] == ["realtalk.turn.request_to_first_delta"]
