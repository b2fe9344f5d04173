"""``realtalk simulate``: the local Realtime simulator as a server, until Ctrl-C."""

from __future__ import annotations

import argparse
import sys

from realtalk.cli._common import CliError, cannot_listen


def run(args: argparse.Namespace) -> int:
    """Serve the simulator until Ctrl-C."""
    import logging

    import anyio

    from realtalk.simulator import (
        EspeakNg,
        Script,
        ScriptError,
        Simulator,
        SynthesisError,
        Synthesizer,
        buzz,
        default_synthesizer,
        run_simulator,
    )

    script = None
    if args.script is not None:
        try:
            script = Script.load(args.script)
        except ScriptError as exc:
            raise CliError(f"--script: {exc}") from None
    synthesizer: Synthesizer = buzz
    if args.speech == "auto":
        synthesizer = default_synthesizer()
    elif args.speech == "espeak-ng":
        try:
            synthesizer = EspeakNg()
        except SynthesisError as exc:
            raise CliError(f"--speech espeak-ng: {exc}") from None
    speech = "espeak-ng speech" if isinstance(synthesizer, EspeakNg) else "a synthetic buzz"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)

    def ready(simulator: Simulator) -> None:
        keys = "any key" if not args.api_key else f"{len(args.api_key)} key(s)"
        answers = f"script {args.script}, " if script is not None else ""
        print(f"realtalk simulator listening on {simulator.url} ({args.pace} pace, {answers}"
              f"replies in {speech}, accepts {keys}); Ctrl-C stops it", flush=True)

    from realtalk.errors import ConnectError

    try:
        anyio.run(lambda: run_simulator(
            args.host, args.port, ready=ready, pace=args.pace, api_keys=args.api_key,
            synthesizer=synthesizer, script=script))
    except (OSError, ConnectError) as exc:
        raise cannot_listen(args, exc) from None
    return 0
