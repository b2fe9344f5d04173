"""ARCHITECTURE.md stays true: every path its code map names exists in the tree."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]


def named_paths() -> list[str]:
    text = (ROOT / "ARCHITECTURE.md").read_text()
    candidates = re.findall(r"`([A-Za-z0-9_./-]+)`", text)
    return sorted({c for c in candidates if "/" in c and not c.startswith(("-", "/"))})


def test_the_code_map_names_only_paths_that_exist() -> None:
    paths = named_paths()
    assert len(paths) >= 20  # the map names the tree; an empty match means the pattern broke
    missing = [p for p in paths if not (ROOT / p.rstrip("/")).exists()]
    assert not missing, f"ARCHITECTURE.md names paths that are gone: {missing}"
