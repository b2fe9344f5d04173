"""The ``realtalk`` command line: ``talk`` (one voice turn), ``simulate``, ``relay``,
``console`` (the browser voice console) and ``bench``.

This package holds the parser and the dispatch; each subcommand is its own module (``talk``,
``simulate``, ``relay`` for ``relay`` and ``console``, ``bench``), imported only when it runs so
that ``realtalk --help`` stays quick. The subcommands share ``_common`` and never import this
package.

Every failure a user can cause (a missing file, a WAV that is not PCM, an unreachable URL, a
refused key) ends in one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from realtalk.cli._common import EXIT_FAILURE, EXIT_USAGE, CliError

__all__ = ["CliError", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr like every other failure."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"realtalk: {message} (see: {self.prog} --help)\n")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number, not {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 0 and 65535, not {port}")
    return port


SIMULATE_DESCRIPTION = """\
A local server that speaks the OpenAI Realtime protocol (GA and beta) at
ws://HOST:PORT/v1/realtime, for tests and offline development. It is not a model.
What the default responder does:
  - a text message is echoed back ("You said: ...");
  - audio input is answered with its measured length ("I heard 1.52 s of speech.");
  - the input audio transcript is a placeholder ("(1.52 s of speech)"), not the words;
  - reply audio is espeak-ng speech when espeak-ng is installed (--speech), otherwise a
    synthetic voiced buzz with the reply's rhythm that is not intelligible;
  - a tool is called when the user names it ("weather" or "get weather" for get_weather)
    or when tool_choice forces one; its arguments come from the user's words where the
    schema allows ("How warm is it in Paris?" gives {"city": "Paris"}), else from the
    schema's examples; a tool's output is read back.
With --script TURNS.json the script's turns answer instead: user text patterns or audio
turns mapped to replies (text, tool calls with arguments, faults), so a test suite can pin
what the model says (format and example in the README's simulator section)."""


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="realtalk",
        description="Voice agents on the OpenAI Realtime API. Without OPENAI_API_KEY or --url, "
        "`talk` runs against the embedded simulator.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    talk = commands.add_parser("talk", help="run one conversation turn (or a loop with --mic)")
    talk.add_argument("text", nargs="?", metavar="TEXT", help="what the user says, as text")
    talk.add_argument("--audio", metavar="IN.wav", help="what the user says, as a WAV file")
    talk.add_argument("--mic", action="store_true", help="talk through the microphone (loop)")
    talk.add_argument("--prices", metavar="JSON", help="a price table (US dollars per million "
                      "tokens: input_text, input_audio, cached_text, cached_audio, output_text, "
                      "output_audio), inline or as a file: the summary adds the cost")
    talk.add_argument("--transcribe", metavar="IN.wav", help="print the transcript of a WAV "
                      "file (a transcription session: no reply)")
    talk.add_argument("--transcription-model", default="gpt-4o-transcribe", metavar="M",
                      help="the model --transcribe uses (default gpt-4o-transcribe)")
    talk.add_argument("--out", metavar="REPLY.wav", help="write the reply audio to this WAV")
    talk.add_argument("--record", metavar="DIR", help="record the session into DIR: a stereo "
                      "WAV (you left, the agent right) and a JSONL log of every event")
    talk.add_argument("--out-rate", type=int, default=24000, metavar="HZ",
                      help="sample rate of the reply WAV (default 24000)")
    talk.add_argument("--speaker", action="store_true", help="play the reply on the speaker")
    talk.add_argument("--echo-cancel", action="store_true", help="with --mic --speaker: take "
                      "what the speaker plays out of the microphone (a device without headphones)")
    talk.add_argument("--url", help="Realtime endpoint (default: OpenAI with a key, else the "
                      "embedded simulator)")
    talk.add_argument("--api-key", metavar="KEY", help="the API key, or a relay token for a "
                      "realtalk relay (default: OPENAI_API_KEY)")
    talk.add_argument("--model", default="gpt-realtime")
    talk.add_argument("--voice", default="alloy")
    talk.add_argument("--instructions", metavar="S", help="session instructions")
    talk.add_argument("--format", default="pcm16", choices=["pcm16", "g711_ulaw", "g711_alaw"],
                      help="wire audio format both ways")
    talk.add_argument("--protocol", default="ga", choices=["ga", "beta"])
    talk.add_argument("--vad", default="server", choices=["server", "local", "none"],
                      help="who detects the end of speech in --audio/--mic input")
    talk.add_argument("--fast", action="store_true",
                      help="send --audio as fast as possible instead of at real-time pace")
    talk.add_argument("--timeout", type=float, default=60.0, metavar="S",
                      help="give up on the turn after this many seconds")
    talk.add_argument("--turns", type=int, default=0, metavar="N",
                      help="with --mic, stop after N turns (default: until Ctrl-C)")
    talk.add_argument("--json", action="store_true",
                      help="print the event log as JSON lines instead of the transcript")

    simulate = commands.add_parser(
        "simulate", help="run the local Realtime simulator",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=SIMULATE_DESCRIPTION)
    simulate.add_argument("--host", default="127.0.0.1", help="address to listen on "
                          "(default 127.0.0.1)")
    simulate.add_argument("--port", type=_port, default=8765, help="port (default 8765)")
    simulate.add_argument("--pace", default="realtime", choices=["realtime", "fast"],
                          help="stream reply audio at playback speed (default) or as fast as "
                          "the client reads")
    simulate.add_argument("--api-key", metavar="K", action="append",
                          help="accept only this key (repeatable; default: any key)")
    simulate.add_argument("--script", metavar="TURNS.json",
                          help="answer from a script of turns instead of the default responder "
                          "(see the README's simulator section)")
    simulate.add_argument("--speech", default="auto", choices=["auto", "espeak-ng", "buzz"],
                          help="reply audio: espeak-ng speech, the synthetic buzz, or auto "
                          "(espeak-ng when installed; the default)")

    relay = commands.add_parser(
        "relay", help="run a relay: clients holding a relay token talk Realtime through your key",
        description="Relay Realtime sessions for clients that hold a relay token (browsers send "
        "it as the openai-insecure-api-key.<token> subprotocol). The signing secret comes from "
        "REALTALK_RELAY_SECRET (at least 16 bytes), the upstream key from OPENAI_API_KEY.")
    relay.add_argument("--host", default="127.0.0.1")
    relay.add_argument("--port", type=_port, default=8080)
    relay.add_argument("--upstream", metavar="URL",
                       help="Realtime endpoint the relay connects to (default: an embedded "
                       "simulator)")
    relay.add_argument("--issue-token", type=float, metavar="TTL_S",
                       help="print a relay token valid for TTL_S seconds, then exit")
    relay.add_argument("--subject", help="who the --issue-token token is for (shown in logs)")
    relay.add_argument("--redis", metavar="URL",
                       help="share session limits and single-use tokens with every relay using "
                       "this Redis (redis://host:6379/0; needs the redis package)")
    relay.add_argument("--console", action="store_true",
                       help="also serve the browser voice console at / with its demo token "
                       "endpoint: anyone who can load the page talks through your key")

    console = commands.add_parser(
        "console", help="open the browser voice console (a relay serving it; with no "
        "--upstream, in front of the embedded simulator)",
        description="Serve the browser voice console: open the printed URL in a browser. "
        "Without --upstream the relay fronts the embedded simulator and needs no key; "
        "REALTALK_RELAY_SECRET is optional (default: a random one).")
    console.add_argument("--host", default="127.0.0.1")
    console.add_argument("--port", type=_port, default=8080)
    console.add_argument("--upstream", metavar="URL",
                         help="Realtime endpoint (needs OPENAI_API_KEY; default: the embedded "
                         "simulator, pacing its replies in real time)")

    commands.add_parser("bench", help="print realtalk's speed next to the usual Python way")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``realtalk`` command with ``argv`` (default: the process's arguments); return
    the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "talk":
            from realtalk.cli import talk

            return talk.run(args)
        if args.command == "simulate":
            from realtalk.cli import simulate

            return simulate.run(args)
        if args.command == "relay":
            from realtalk.cli import relay

            return relay.run(args)
        if args.command == "console":
            from realtalk.cli import relay

            return relay.run_console(args)
        from realtalk.cli import bench

        return bench.run()
    except KeyboardInterrupt:
        return 130
    except CliError as exc:
        print(f"realtalk: {exc}", file=sys.stderr)
        return EXIT_FAILURE
