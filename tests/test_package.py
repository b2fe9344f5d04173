import os
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


def test_a_whole_turn_runs_without_audioop(tmp_path: Path) -> None:
    # Python 3.13 has no audioop: only the tests may use it (as an oracle), never the package.
    script = (
        "import sys\n"
        "sys.modules['audioop'] = None  # any import of it now raises ImportError\n"
        "from realtalk.cli import main\n"
        f"sys.exit(main(['talk', 'Hello there', '--fast', '--format', 'g711_ulaw', '--out', {str(tmp_path / 'r.wav')!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=90, env={k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "r.wav").stat().st_size > 44


def test_submodules_are_reachable_after_a_bare_import() -> None:
    # A fresh interpreter, so no other test has imported the submodules already.
    script = ("import realtalk, sys\n"
              "assert 'realtalk.relay' not in sys.modules  # lazy: nothing heavy at import\n"
              "print(realtalk.tokens.create_client_secret.__name__, realtalk.simulator.Simulator"
              ".__name__, realtalk.relay.Relay.__name__, realtalk.wav.read_wav.__name__)\n"
              "try:\n    realtalk.nonsense\nexcept AttributeError as exc:\n    print(exc)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "create_client_secret Simulator Relay read_wav",
        "module 'realtalk' has no attribute 'nonsense'",
    ]
