"""Streaming a response: the responder's parts become the session's event cascade, paced by
a clock and handed to the writer as they are produced. This is the async half beside the
server (`realtalk.simulator.server` runs one per response); `ServerSession` itself does no
I/O and only takes the steps (`text_delta`, `audio_delta`, `function_call` ...)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from realtalk.simulator import _config as cfg
from realtalk.simulator._audio_io import encode_output
from realtalk.simulator._state import ResponseState
from realtalk.simulator.responder import (
    Audio,
    Close,
    Delay,
    Drop,
    FunctionCall,
    Responder,
    ServerError,
    Text,
    default_responder,
    iterate_parts,
)
from realtalk.simulator.session import ServerSession
from realtalk.simulator.speech import Synthesizer, buzz


class ConnectionFault(Exception):
    """A responder asked the server to end the connection (`Close` or `Drop`)."""

    def __init__(self, part: Close | Drop) -> None:
        super().__init__(repr(part))
        self.part = part


Flush = Callable[[], Awaitable[None]]


async def stream_response(
    session: ServerSession,
    response: ResponseState,
    responder: Responder | None,
    *,
    flush: Flush,
    sleep: Callable[[float], Awaitable[None]],
    realtime: bool,
    synthesizer: Synthesizer = buzz,
) -> None:
    """Turn a responder's parts into the response's event cascade. ``flush`` hands the queued
    events to the writer (and waits when it is behind); ``sleep`` is the pacing clock;
    ``synthesizer`` speaks `Text` parts. A response cancelled meanwhile (client cancel,
    barge-in) just stops producing."""
    responder = responder or default_responder
    chunk_ms = session.audio_chunk_ms
    parts = iterate_parts(responder(response.context))
    try:
        async for part in parts:
            if response.done:
                break
            if isinstance(part, Delay):
                await flush()
                await sleep(part.seconds)
            elif isinstance(part, Text):
                if response.effective.audio_output:
                    voice = response.effective.voice
                    voice = voice if isinstance(voice, str) else "alloy"
                    if synthesizer is buzz:
                        speech = buzz(part.text, voice)
                    else:  # a program or a model: off the event loop
                        speech = await anyio.to_thread.run_sync(synthesizer, part.text, voice)
                    if response.done:
                        break
                    await _speak(
                        session,
                        response,
                        speech.pcm,
                        speech.words,
                        speech.word_starts_ms,
                        chunk_ms,
                        flush,
                        sleep,
                        realtime,
                    )
                else:
                    written = part.text.split(" ")
                    for index, word in enumerate(written):
                        last = index == len(written) - 1
                        session.text_delta(response, word + ("" if last else " "))
                        if session.enforce_token_limit(response):
                            break
                        # Deltas stream one by one, as from the real server, not as one burst.
                        await flush()
            elif isinstance(part, Audio):
                if response.effective.audio_output:
                    words = tuple(part.transcript.split())
                    total_ms = len(part.pcm) / 48
                    starts = tuple(total_ms * i / max(1, len(words)) for i in range(len(words)))
                    await _speak(
                        session, response, part.pcm, words, starts, chunk_ms, flush, sleep, realtime
                    )
                elif part.transcript:
                    session.text_delta(response, part.transcript)
            elif isinstance(part, FunctionCall):
                session.function_call(response, part)
            elif isinstance(part, ServerError):
                session.fail_response(response, part.message)
            elif isinstance(part, (Close, Drop)):
                await flush()
                raise ConnectionFault(part)
            await flush()
        session.finish_response(response)
    finally:
        with anyio.CancelScope(shield=True):
            await parts.aclose()
        await flush()


async def _speak(
    session: ServerSession,
    response: ResponseState,
    pcm: bytes,
    words: tuple[str, ...],
    word_starts_ms: tuple[float, ...],
    chunk_ms: int,
    flush: Flush,
    sleep: Callable[[float], Awaitable[None]],
    realtime: bool,
) -> None:
    fmt = response.effective.output_format
    audio = encode_output(fmt, pcm)
    bytes_per_ms = cfg.BYTES_PER_MS[fmt]
    chunk_bytes = bytes_per_ms * chunk_ms
    next_word = 0
    for start in range(0, len(audio), chunk_bytes):
        if response.done:
            return
        chunk = audio[start : start + chunk_bytes]
        end_ms = (start + len(chunk)) / bytes_per_ms
        pieces = []
        while next_word < len(words) and word_starts_ms[next_word] < end_ms:
            pieces.append(words[next_word] + (" " if next_word < len(words) - 1 else ""))
            next_word += 1
        if pieces:
            session.text_delta(response, "".join(pieces))
        session.audio_delta(response, chunk)
        session.enforce_token_limit(response)
        await flush()
        if realtime:
            await sleep(len(chunk) / bytes_per_ms / 1000)
    if next_word < len(words) and not response.done:
        session.text_delta(response, " ".join(words[next_word:]))
