"""What every ``realtalk`` subcommand shares: the one-line failure and the environment's key.

A leaf module: the subcommands import it, and ``realtalk.cli`` (which dispatches to them)
re-exports :class:`CliError`, so no subcommand imports the package that imports it.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from urllib.parse import urlsplit

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


def key_for(url: str, api_key: str | None) -> str:
    """The key to send to ``url``: the one given, else any key for a server on this machine
    (a local simulator or relay takes any); a remote server without one is a CliError."""
    if api_key is not None:
        return api_key
    if not _is_loopback(url):
        raise CliError("no API key: set OPENAI_API_KEY or give --api-key for a server that "
                       "is not on this machine")
    return "sk-local"


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
