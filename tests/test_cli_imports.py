"""The command line's modules import in one direction: ``realtalk.cli`` dispatches to its
subcommand modules, which share ``realtalk.cli._common`` and never import the package that
dispatches to them (issue 21: the ``cli`` <-> ``_talk`` cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_ROOT = Path(__file__).parents[1] / "python"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The realtalk modules ``path`` imports at run time, anywhere in the file (a function's
    import is still an edge: it runs when the function does). ``from package import name``
    is an edge to the submodule when ``name`` is one, else to the package. Imports only a
    type checker sees are left out, and so is the parent package that Python initialises
    before any submodule (that is the loader's order, not a dependency)."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for block in ast.walk(tree) if is_type_checking_block(block)
               for n in ast.walk(block)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in known else node.module)
    return {name for name in found if name in known}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in (PACKAGE_ROOT / "realtalk").rglob("*.py")}
    known = set(paths)
    return {name: imported_modules(path, known) - {name} for name, path in paths.items()}


def cycles_through(graph: dict[str, set[str]], prefix: str) -> list[list[str]]:
    """Every import cycle that passes through a module named ``prefix`` or under it, each as
    the path from that module back to itself (depth-first from each such module)."""
    found: list[list[str]] = []
    for start in sorted(n for n in graph if n == prefix or n.startswith(prefix + ".")):
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, path = stack.pop()
            for target in sorted(graph[node]):
                if target == start:
                    found.append([*path, start])
                elif target not in seen:
                    seen.add(target)
                    stack.append((target, [*path, target]))
    return found


def test_the_graph_sees_the_dispatch_to_each_subcommand() -> None:
    # The oracle's own check: the lazy imports inside main() are edges it finds.
    graph = import_graph()
    assert {"realtalk.cli.talk", "realtalk.cli.simulate", "realtalk.cli.relay",
            "realtalk.cli.bench"} <= graph["realtalk.cli"]
    assert "realtalk.cli._common" in graph["realtalk.cli.talk"]


def test_the_command_line_imports_no_cycle() -> None:
    assert cycles_through(import_graph(), "realtalk.cli") == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"realtalk.cli": {"realtalk._talk"}, "realtalk._talk": {"realtalk.cli"},
             "realtalk.wav": set()}
    assert cycles_through(graph, "realtalk.cli") == [["realtalk.cli", "realtalk._talk",
                                                      "realtalk.cli"]]
