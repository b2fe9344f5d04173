"""What every ``realtalk`` subcommand shares: the one-line failure and the environment's key.

A leaf module: the subcommands import it, and ``realtalk.cli`` (which dispatches to them)
re-exports :class:`CliError`, so no subcommand imports the package that imports it.
"""

from __future__ import annotations

import argparse
import os

EXIT_FAILURE = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A failure to report as one line (without a traceback)."""


def environment_api_key() -> str | None:
    return os.environ.get("OPENAI_API_KEY") or None


def cannot_listen(args: argparse.Namespace, error: Exception) -> CliError:
    """The one line for a server (``simulate``, ``relay``, ``console``) that cannot bind."""
    # The transport maps the socket's OSError to ConnectError and keeps it as the cause.
    cause = error.__cause__ if isinstance(error.__cause__, OSError) else error
    reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause)
    return CliError(f"cannot listen on {args.host}:{args.port}: {reason}")
