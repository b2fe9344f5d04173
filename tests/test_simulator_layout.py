"""How the simulator is built, held to what its documentation says: `ServerSession` and its
sections do no I/O (nothing they import, down to the last simulator module, touches an event
loop, a socket or a process), and every client event type a protocol version accepts has a
handler."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from realtalk.simulator import ServerSession
from realtalk.simulator._protocol import ADAPTERS

PACKAGE = Path(__file__).parents[1] / "python" / "realtalk" / "simulator"
IO_MODULES = {"anyio", "asyncio", "trio", "socket", "ssl", "selectors", "subprocess",
              "threading", "realtalk.transport", "realtalk.simulator.server",
              "realtalk.simulator.streaming", "realtalk.simulator.speech"}  # fmt: skip


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth of its code (lazy imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            # `from realtalk.simulator import _config` names a module too.
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def simulator_module_file(name: str) -> Path | None:
    prefix = "realtalk.simulator."
    if not name.startswith(prefix):
        return None
    path = PACKAGE / (name[len(prefix) :].replace(".", "/") + ".py")
    return path if path.exists() else None


def test_the_session_and_everything_it_imports_do_no_io() -> None:
    seen: set[str] = set()
    todo = ["realtalk.simulator.session"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = simulator_module_file(name)
        assert path is not None, name
        imports = imported_modules(path)
        io = {m for m in imports if m in IO_MODULES or m.split(".")[0] in IO_MODULES}
        assert not io, f"{name} imports {sorted(io)}"
        todo += [m for m in imports if simulator_module_file(m) is not None]
    # The walk did reach the sections (a broken walk would pass trivially).
    assert {"realtalk.simulator._conversation", "realtalk.simulator._responses",
            "realtalk.simulator._input_buffer", "realtalk.simulator._session_config",
            "realtalk.simulator.responder"} <= seen  # fmt: skip


@pytest.mark.parametrize("protocol", ["ga", "beta"])
def test_every_accepted_client_type_reaches_a_handler(protocol: str) -> None:
    # An event with nothing but its type: each handler answers (an error or events), none
    # is missing, and no type a version does not accept reaches one.
    session = ServerSession(protocol=protocol, intent="realtime")  # type: ignore[arg-type]
    session.start()
    session.drain()
    for kind in ADAPTERS[protocol].client_types:
        replies = session.receive(json.dumps({"type": kind}))
        assert replies, kind
        for reply in replies:
            if reply["type"] == "error":
                assert reply["error"]["message"], kind
                assert not (reply["error"].get("param") == "type"
                            and "Supported values" in reply["error"]["message"]), kind  # fmt: skip
