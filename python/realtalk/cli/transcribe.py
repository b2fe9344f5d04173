"""``realtalk talk --transcribe IN.wav``: the WAV's speech as text, through a transcription
session (``RealtimeClient(intent="transcription")``), one line per committed utterance."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

import anyio
import numpy as np
import numpy.typing as npt

from realtalk.cli._common import CliError, environment_api_key, key_for

FRAME_MS = 20


def session_config(args: argparse.Namespace, input_format: dict[str, Any]) -> dict[str, Any]:
    """The transcription session's config: the input side only (it has no output)."""
    turn_detection = None if args.vad == "none" else {"type": "server_vad",
                                                      "silence_duration_ms": 500}
    return {"audio": {"input": {"format": input_format,
                                "transcription": {"model": args.transcription_model},
                                "turn_detection": turn_detection}}}


async def transcribe(args: argparse.Namespace, speech: npt.NDArray[np.float32],
                     input_format: dict[str, Any], rate: int, tail_ms: int) -> int:
    """Stream ``speech`` (at ``rate``) into a transcription session and print each
    utterance's transcript on stdout as it completes; a failed transcription is one line on
    stderr and exit status 1, as is a server error (the first one is told)."""
    from realtalk.client import RealtimeClient
    from realtalk.errors import ConnectionClosed, RealtalkError

    failures: list[str] = []
    speaking: set[str] = set()  # utterances the server heard begin and has not committed
    async with contextlib.AsyncExitStack() as stack:
        url, api_key = await _endpoint(args, stack)
        client = RealtimeClient(url, intent="transcription", api_key=api_key,
                                protocol=args.protocol, session=session_config(args,
                                                                               input_format),
                                input_rate=rate, reconnect=False)
        _watch(client, failures, speaking)
        try:
            await stack.enter_async_context(client)
        except (ConnectionClosed, RealtalkError, OSError) as exc:
            raise CliError(f"cannot open a transcription session at {url}: {exc}") from None
        try:
            with anyio.fail_after(args.timeout):
                await _send(client, speech, args, rate, tail_ms)
                await _settle(client, speaking, failures)
        except TimeoutError:
            raise CliError(f"no complete transcript within {args.timeout:g} s") from None
        except ConnectionClosed as exc:
            raise CliError(f"the connection closed during the transcription: {exc}") from None
    if failures:
        print(f"realtalk: {failures[0]}", file=sys.stderr)
        return 1
    return 0


async def _endpoint(args: argparse.Namespace, stack: contextlib.AsyncExitStack
                    ) -> tuple[str | None, str | None]:
    url: str | None = args.url
    api_key = args.api_key or environment_api_key()
    if url is None and api_key is None:
        from realtalk.simulator import Simulator

        simulator = await stack.enter_async_context(Simulator(pace="fast"))
        print(f"realtalk: no OPENAI_API_KEY and no --url: transcribing with the embedded "
              f"simulator at {simulator.url}", file=sys.stderr)
        return simulator.url, "sk-local"
    if url is not None:
        api_key = key_for(url, api_key)
    return url, api_key


def _watch(client: Any, failures: list[str], speaking: set[str]) -> None:
    def on_completed(event: Any) -> None:
        print(event["transcript"], flush=True)

    def on_failed(event: Any) -> None:
        error = event.get("error") or {}
        failures.append(f"the transcription of {event.get('item_id')} failed: "
                        f"{error.get('message') or error.get('code') or error}")

    def on_error(event: Any) -> None:
        if not event.data.get("benign"):
            error = event.data.get("error") or {}
            failures.append(f"server error {error.get('code') or error.get('type')}: "
                            f"{error.get('message')}")

    client.on("error", on_error)
    client.on("input_audio_buffer.speech_started", lambda e: speaking.add(e["item_id"]))
    client.on("input_audio_buffer.committed", lambda e: speaking.discard(e["item_id"]))
    client.on("conversation.item.input_audio_transcription.completed", on_completed)
    client.on("conversation.item.input_audio_transcription.failed", on_failed)


async def _send(client: Any, speech: npt.NDArray[np.float32], args: argparse.Namespace,
                rate: int, tail_ms: int) -> None:
    frame = rate * FRAME_MS // 1000
    if args.vad != "none":  # trailing silence lets the server's VAD hear the end of speech
        speech = np.concatenate([speech, np.zeros(rate * tail_ms // 1000, dtype=np.float32)])
    start = anyio.current_time()
    for index, begin in enumerate(range(0, speech.shape[0], frame)):
        client.append_input_audio(speech[begin:begin + frame])
        if args.fast:
            await anyio.lowlevel.checkpoint()
        else:
            await anyio.sleep_until(start + (index + 1) * FRAME_MS / 1000)
    if args.vad == "none":
        await client.commit_input_audio()


async def _settle(client: Any, speaking: set[str], failures: list[str]) -> None:
    """Wait until the server has heard all the audio (a ``session.update`` round trip: the
    server answers in order), committed the speech it heard and sent every utterance's final
    transcript; or until something failed."""
    heard = anyio.Event()
    client.on("session.updated", lambda _: heard.set())
    await client.update_session()
    while not failures and (not heard.is_set() or speaking
                            or not all(t.final for t in client.transcripts)):
        await anyio.sleep(0.01)
