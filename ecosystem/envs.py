"""One virtual environment per framework, built from its pins file and cached outside the repo.

The cache key is a hash of the pins (<framework>.txt, the direct requirements, and
<framework>.lock, the frozen constraints for all they pull in) and of the version of the
interpreter that builds the environment, so a second run (or a second CI run on the same
machine) reuses what the first one installed, and a changed pin builds a new environment beside
the old one. The location is
``$REALTALK_ECOSYSTEM_CACHE`` (default ``~/.cache/realtalk/ecosystem``)/<hash>/<framework>.

Standard library only: it runs under whatever Python drives the tests.

    python ecosystem/envs.py                # build (or find) every environment, print them
    python ecosystem/envs.py pipecat        # one of them
    python ecosystem/envs.py --relock pipecat   # after changing pins/pipecat.txt
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import venv
from collections.abc import Callable
from pathlib import Path

PINS_DIR = Path(__file__).resolve().parent / "pins"
FRAMEWORKS = ("openai", "openai_agents", "pipecat", "livekit")
COMPLETE_MARKER = ".realtalk-complete"


def cache_root() -> Path:
    configured = os.environ.get("REALTALK_ECOSYSTEM_CACHE")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "realtalk" / "ecosystem"


def pins_file(framework: str) -> Path:
    """The framework's direct requirements, pinned."""
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r}; known: {', '.join(FRAMEWORKS)}")
    return PINS_DIR / f"{framework}.txt"


def lock_file(framework: str) -> Path:
    """Constraints for everything the requirements pull in (a pip freeze of a built env)."""
    return pins_file(framework).with_suffix(".lock")


def pins_hash(framework: str, base_python: str = sys.executable) -> str:
    """Hash of the pins and of the building interpreter's version (a venv is tied to both)."""
    version = subprocess.run(
        [base_python, "-c", "import sys; print(sys.version)"],
        check=True, capture_output=True, text=True,
    ).stdout
    digest = hashlib.sha256()
    for path in (pins_file(framework), lock_file(framework)):
        digest.update(_requirement_lines(path).encode())
    digest.update(version.encode())
    return digest.hexdigest()[:16]


def _requirement_lines(path: Path) -> str:
    """The file without comments and blank lines: editing a comment rebuilds nothing."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return "\n".join(line for line in lines if line) + "\n"


def env_dir(framework: str) -> Path:
    return cache_root() / pins_hash(framework) / framework


def env_python(framework: str) -> Path:
    return env_dir(framework) / "bin" / "python"


def ensure_env(framework: str, *, log: Callable[[str], object] = print) -> Path:
    """Return the environment's python, building the environment first if it is missing.

    Built under a lock, and marked complete only once pip succeeded, so an interrupted or
    concurrent build never leaves a half-installed environment that looks done (the next run
    clears it and builds again).
    """
    target = env_dir(framework)
    if (target / COMPLETE_MARKER).exists():
        return target / "bin" / "python"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{framework}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / COMPLETE_MARKER).exists():
            return target / "bin" / "python"
        log(f"ecosystem: building the {framework} environment in {target}")
        venv.EnvBuilder(with_pip=True, clear=True).create(target)
        subprocess.run(
            [str(target / "bin" / "python"), "-m", "pip", "install", "-q",
             "--disable-pip-version-check", "-r", str(pins_file(framework)),
             "-c", str(lock_file(framework))],
            check=True,
        )
        (target / COMPLETE_MARKER).write_text(pins_file(framework).read_text())
    return target / "bin" / "python"


def relock(framework: str) -> None:
    """Write <framework>.lock afresh: install the pins alone into a scratch environment and
    freeze what pip chose. Run after changing <framework>.txt."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        venv.EnvBuilder(with_pip=True).create(scratch)
        python = str(Path(scratch) / "bin" / "python")
        subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "-r", str(pins_file(framework))], check=True)
        frozen = subprocess.run([python, "-m", "pip", "freeze", "--disable-pip-version-check"],
                                check=True, capture_output=True, text=True).stdout
    lock_file(framework).write_text(
        f"# Constraints: every package the {framework} environment installed, frozen (pip "
        f"freeze) so a rebuild\n# gets the same set. Regenerate with `python ecosystem/envs.py "
        f"--relock {framework}`.\n" + frozen)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--relock"]:
        for framework in argv[1:] or FRAMEWORKS:
            relock(framework)
        argv = argv[1:]
    wanted = argv or list(FRAMEWORKS)
    for framework in wanted:
        try:
            python = ensure_env(framework, log=lambda m: print(m, file=sys.stderr))
        except (ValueError, subprocess.CalledProcessError) as exc:
            print(f"ecosystem: {framework}: {exc}", file=sys.stderr)
            return 1
        print(f"{framework}\t{python}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
