"""The ecosystem run's closing table: per framework, its versions, scenarios passed and time."""

from __future__ import annotations

import sys
from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    module = sys.modules.get("test_ecosystem")
    results = getattr(module, "RESULTS", [])
    if not results:
        return
    write = terminalreporter.write_line
    terminalreporter.section("ecosystem")
    for framework in dict.fromkeys(r["framework"] for r in results):
        rows = [r for r in results if r["framework"] == framework]
        passed = [r["scenario"] for r in rows if r.get("checked")]
        failed = [r["scenario"] for r in rows if not r.get("checked")]
        versions: dict[str, str] = next((r["versions"] for r in rows if r["versions"]), {})
        seconds = sum(r["seconds"] for r in rows)
        write(f"{framework}: {len(passed)}/{len(rows)} scenarios in {seconds:.1f} s "
              f"({', '.join(f'{k} {v}' for k, v in versions.items())})")
        if failed:
            write(f"  not passing: {', '.join(failed)}")
        for row in rows:
            for warning in row["warnings"]:
                write(f"  {row['scenario']} logged: {warning}")
