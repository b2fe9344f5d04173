"""GA/beta differences in the simulator live in one adapter (simulator/_protocol.py): no module
tests the protocol version itself, and both adapters answer every question the base asks."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import realtalk.simulator
from realtalk.simulator._protocol import ADAPTERS, ProtocolAdapter

SIMULATOR = Path(realtalk.simulator.__file__).parent
VERSION_TEST = re.compile(r"""protocol\s*[!=]=\s*["'](ga|beta)["']""")


def test_no_simulator_module_branches_on_the_protocol_name() -> None:
    branches = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(SIMULATOR.glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if VERSION_TEST.search(line)
    ]
    assert branches == []


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_each_adapter_answers_every_question(name: str) -> None:
    adapter = ADAPTERS[name]
    assert adapter.name == name
    unanswered = [
        method
        for method, function in inspect.getmembers(ProtocolAdapter, inspect.isfunction)
        if "raise NotImplementedError" in inspect.getsource(function)
        and getattr(type(adapter), method) is function
    ]
    assert unanswered == []


def test_the_adapters_report_the_protocols_turn_detection() -> None:
    """GA's server_vad carries idle_timeout_ms (null in protocol.md's session traces); the
    beta default the simulator reports has none."""
    asked = {"type": "server_vad", "threshold": 0.7}
    ga, beta = ADAPTERS["ga"].fill_turn_detection(asked), ADAPTERS["beta"].fill_turn_detection(asked)
    assert ga is not None and beta is not None
    assert ga["idle_timeout_ms"] is None and "idle_timeout_ms" not in beta
    assert ga["threshold"] == beta["threshold"] == 0.7
    assert ADAPTERS["ga"].fill_turn_detection(None) is None
