import subprocess
import sys
from pathlib import Path

import realtalk
from realtalk import _audio


def test_version_matches_the_crate() -> None:
    cargo = Path(__file__).parents[1] / "Cargo.toml"
    line = next(l for l in cargo.read_text().splitlines() if l.startswith("version = "))
    assert realtalk.__version__ == line.split('"')[1]


def test_extension_is_a_release_build_with_its_marker_file() -> None:
    # Timing-sensitive code paths (and the benches) are meaningless on a debug build.
    assert _audio.build_profile == "release"
    assert (Path(realtalk.__file__).parent / "py.typed").exists()


def test_stubs_match_the_extension_module() -> None:
    allowlist = Path(__file__).parents[1] / ".mypy-stubtest-allowlist"
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "realtalk._audio", "--allowlist", str(allowlist)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
