"""``realtalk relay`` and ``realtalk console``: a relay (the console is a relay serving the
browser page) in front of ``--upstream`` or an embedded simulator."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Literal

from realtalk.cli._common import CliError, cannot_listen, environment_api_key


def run(args: argparse.Namespace) -> int:
    """``realtalk relay``: print a token (``--issue-token``) or serve until Ctrl-C."""
    from realtalk.relay import issue_token

    secret = os.environ.get("REALTALK_RELAY_SECRET")
    if not secret or len(secret.encode()) < 16:
        raise CliError("set REALTALK_RELAY_SECRET to a secret of at least 16 bytes")
    if args.issue_token is not None:
        try:
            print(issue_token(secret, args.issue_token, subject=args.subject))
        except ValueError as exc:
            raise CliError(str(exc)) from None
        return 0
    store = None
    if args.redis is not None:
        from realtalk.errors import RealtalkError
        from realtalk.relay.store import RedisStore

        try:
            store = RedisStore(args.redis)
        except (ValueError, RealtalkError) as exc:
            raise CliError(f"--redis: {exc}") from None
    return _serve_relay(args, secret, store=store, console=args.console, pace="fast")


def run_console(args: argparse.Namespace) -> int:
    """``realtalk console``: a relay serving the browser console, until Ctrl-C."""
    import secrets

    secret = os.environ.get("REALTALK_RELAY_SECRET") or secrets.token_urlsafe(32)
    if len(secret.encode()) < 16:
        raise CliError("REALTALK_RELAY_SECRET must be at least 16 bytes")
    return _serve_relay(args, secret, store=None, console=True, pace="realtime")


def _serve_relay(args: argparse.Namespace, secret: str, *, store: Any, console: bool,
                 pace: Literal["fast", "realtime"]) -> int:
    """Run a relay (``realtalk relay``, ``realtalk console``) until Ctrl-C: to ``--upstream``
    with OPENAI_API_KEY, else to an embedded simulator."""
    import logging
    from contextlib import AsyncExitStack

    import anyio

    from realtalk.relay import Relay, run_relay
    from realtalk.simulator import Simulator

    key = environment_api_key()
    if args.upstream is not None and key is None:
        raise CliError("set OPENAI_API_KEY: the relay opens upstream sessions with it")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)

    def ready(relay: Relay) -> None:
        print(f"realtalk relay listening on {relay.url} -> {relay.upstream}; metrics at "
              f"http://{args.host}:{relay.port}/metrics; Ctrl-C stops it", flush=True)
        if console:
            print(f"realtalk console at http://{args.host}:{relay.port}/ (demo mode: the page "
                  "gets its tokens from the relay)", flush=True)

    async def serve() -> None:
        async with AsyncExitStack() as stack:
            upstream, upstream_key = args.upstream, key
            if upstream is None:
                simulator = await stack.enter_async_context(Simulator(pace=pace))
                upstream, upstream_key = simulator.url, "sk-local"
            await run_relay(args.host, args.port, upstream=upstream, api_key=upstream_key,
                            secret=secret, ready=ready, store=store, console=console)

    from realtalk.errors import ConnectError

    try:
        anyio.run(serve)
    except (OSError, ConnectError) as exc:
        raise cannot_listen(args, exc) from None
    return 0
