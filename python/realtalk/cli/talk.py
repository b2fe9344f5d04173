"""``realtalk talk``: one conversation turn, end to end, through :class:`RealtimeClient`."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import anyio
import numpy as np
import numpy.typing as npt

from realtalk.cli._common import CliError, environment_api_key, key_for
from realtalk.errors import (
    AuthenticationError,
    ConnectionClosed,
    HandshakeError,
    InvalidRequestError,
    RealtalkError,
)
from realtalk.usage import Prices, RateLimit, Tokens
from realtalk.wav import WavAudio, WavError, read_wav, write_wav

FRAME_MS = 20
INPUT_RATE = 24000
SILENCE_MS = 500
# Trailing silence after the user's audio, so a server VAD sees the end of speech.
END_SILENCE_MS = SILENCE_MS + 300


@dataclass
class ResponseLog:
    created: float
    first_audio: float | None = None
    last_audio: float | None = None


@dataclass
class TurnLog:
    """What the summary table reports, filled from the client's event stream.

    With server VAD a pause inside the user's audio can end a turn early and start a response
    that the rest of the speech then interrupts; the turn this command reports is the first
    response created after all of the user's speech was sent, and it ends when that response
    is done."""

    started: float = field(default_factory=time.perf_counter)
    speech_end: float | None = None
    events_in: int = 0
    events_out: int = 0
    tokens_before: Tokens = field(default_factory=Tokens)  # client.usage at the turn's start
    responses: dict[str, ResponseLog] = field(default_factory=dict)
    reply_id: str | None = None
    done: anyio.Event = field(default_factory=anyio.Event)
    failure: str | None = None
    connected: bool = False
    last_server_error: str | None = None

    def next_turn(self) -> None:
        self.speech_end = None
        self.reply_id = None
        self.done = anyio.Event()

    @property
    def reply(self) -> ResponseLog | None:
        return self.responses.get(self.reply_id) if self.reply_id else None


def run(args: argparse.Namespace) -> int:
    """Check the arguments, then run the turn (or the --mic loop); the exit status."""
    # Everything a user can get wrong is refused here, before a session opens (and, on OpenAI,
    # before a reply is paid for).
    if args.mic or args.speaker:
        _check_sound_devices()
    given = sum(map(bool, (args.text, args.audio, args.mic, args.transcribe)))
    if given == 0:
        raise CliError("say something: give one of TEXT, --audio IN.wav or --mic (or "
                       "--transcribe IN.wav for a transcript)")
    if given > 1:
        raise CliError("give only one of TEXT, --audio IN.wav or --mic (or --transcribe "
                       "IN.wav)")
    if args.mic and args.vad == "none":
        raise CliError("--mic needs a turn detector: --vad server or --vad local")
    if args.echo_cancel and not (args.mic and args.speaker):
        raise CliError("--echo-cancel cleans the microphone of the speaker's echo: it needs "
                       "--mic and --speaker")
    if not 8000 <= args.out_rate <= 192000:
        raise CliError(f"--out-rate must be between 8000 and 192000 Hz, not {args.out_rate}")
    if args.url is not None:
        _check_url(args.url)
    if args.out:
        _check_writable(args.out)
    if args.transcribe and args.record:
        raise CliError("--record records a conversation: it does not go with --transcribe")
    if args.record:
        _check_record_dir(args.record)
    args.price_table = _price_table(args.prices) if args.prices else None
    if args.transcribe:
        if args.vad == "local":
            raise CliError("--transcribe takes --vad server (utterances) or --vad none (the "
                           "whole file at once), not --vad local")
        if args.url is not None:  # refused before the WAV is read, as _talk refuses it
            key_for(args.url, args.api_key or environment_api_key())
        from realtalk.cli import transcribe

        utterances = _speech_at_input_rate(_read_wav(args.transcribe), args.transcribe, args)
        return anyio.run(transcribe.transcribe, args, utterances, _format_object(args.format),
                         INPUT_RATE, END_SILENCE_MS)
    speech: npt.NDArray[np.float32] | None = None
    if args.audio:
        speech = _speech_at_input_rate(_read_wav(args.audio), args.audio, args)
    return anyio.run(_talk, args, speech)


def _read_wav(name: str) -> WavAudio:
    try:
        return read_wav(name)
    except FileNotFoundError:
        raise CliError(f"no such file: {name}") from None
    except IsADirectoryError:
        raise CliError(f"{name} is a directory, not a WAV file") from None
    except (WavError, OSError) as exc:
        raise CliError(str(exc)) from None


def _check_record_dir(directory: str) -> None:
    from pathlib import Path

    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise CliError(f"--record {directory}: not a directory") from None
    except OSError as exc:
        raise CliError(f"--record {directory}: cannot create it ({exc.strerror})") from None


def _check_sound_devices() -> None:
    try:
        import sounddevice  # noqa: F401
    except ImportError:
        raise CliError(
            "--mic and --speaker need the optional extra: pip install 'realtalk[devices]'"
        ) from None
    except OSError as exc:  # the extra is installed, the PortAudio library is not
        raise CliError(f"--mic and --speaker need the PortAudio library, which is missing "
                       f"({exc}): install it with your system's packages (Debian and Ubuntu: "
                       f"apt install libportaudio2; macOS: brew install portaudio)") from None


def _check_url(url: str) -> None:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise CliError(f"--url {url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise CliError(f"--url must be a ws:// or wss:// URL with a host "
                       f"(e.g. ws://127.0.0.1:8765/v1/realtime), not {url!r}")
    if port == 0:
        raise CliError(f"--url {url!r} has port 0")


def _check_writable(out: str) -> None:
    import os
    from pathlib import Path

    path = Path(out)
    if path.is_dir():
        raise CliError(f"--out {out} is a directory: give a file name such as {path / 'reply.wav'}")
    folder = path.parent
    if not folder.is_dir():
        raise CliError(f"--out {out}: no such folder: {folder}")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise CliError(f"--out {out}: not writable")


def _speech_at_input_rate(wav: WavAudio, name: str,
                          args: argparse.Namespace) -> npt.NDArray[np.float32]:
    """The WAV's audio as the session takes it (mono at ``INPUT_RATE``), after refusing audio
    the turn detector will never hear speech in, rather than waiting for a reply that cannot
    come; with --vad none, say what is sent."""
    from realtalk.audio import Vad, resample

    if wav.samples.shape[0] == 0:
        raise CliError(f"{name} holds no audio")
    if wav.sample_rate < 8000:
        raise CliError(f"{name} is sampled at {wav.sample_rate} Hz: realtalk needs at least "
                       f"8000 Hz (telephone quality)")
    peak = float(np.max(np.abs(wav.samples)))
    loudest = f"{20 * np.log10(peak):.0f} dBFS" if peak > 0 else "digital silence"
    mono = wav.mono()
    samples = mono if wav.sample_rate == INPUT_RATE else resample(mono, wav.sample_rate,
                                                                  INPUT_RATE)
    if args.vad == "none":
        print(f"realtalk: sending {wav.duration_s:.2f} s of {name} (loudest: {loudest}) and "
              f"committing it: --vad none detects no turns", file=sys.stderr)
        return samples
    detector = Vad(INPUT_RATE, silence_duration_ms=SILENCE_MS)
    tail = np.zeros(INPUT_RATE * END_SILENCE_MS // 1000, dtype=np.float32)
    if not any(event.type == "speech_started"
               for event in detector.process(np.concatenate([samples, tail]))):
        raise CliError(f"no speech detected in {name}: {wav.duration_s:.2f} s, loudest "
                       f"{loudest}; give --vad none to send it anyway")
    return samples


def _session_config(args: argparse.Namespace) -> dict[str, Any]:
    turn_detection: dict[str, Any] | None = None
    if args.vad == "server":
        # Long enough that the pauses of ordinary speech do not end the turn.
        turn_detection = {"type": "server_vad", "silence_duration_ms": SILENCE_MS}
    session: dict[str, Any] = {
        "output_modalities": ["audio"],
        "audio": {
            "input": {"format": _format_object(args.format), "turn_detection": turn_detection},
            "output": {"format": _format_object(args.format), "voice": args.voice},
        },
    }
    if args.instructions:
        session["instructions"] = args.instructions
    return session


def _format_object(name: str) -> dict[str, Any]:
    if name == "pcm16":
        return {"type": "audio/pcm", "rate": 24000}
    return {"type": "audio/pcmu" if name == "g711_ulaw" else "audio/pcma"}


async def _talk(args: argparse.Namespace, speech: npt.NDArray[np.float32] | None) -> int:
    from realtalk.audio import Vad
    from realtalk.client import RealtimeClient

    out = sys.stdout
    log = TurnLog()
    async with contextlib.AsyncExitStack() as stack:
        url: str | None = args.url
        api_key = args.api_key or environment_api_key()
        if url is None and api_key is None:
            from realtalk.simulator import Simulator

            simulator = await stack.enter_async_context(Simulator(pace="fast"))
            url, api_key = simulator.url, "sk-local"
            _say(out, args, f"realtalk: no OPENAI_API_KEY and no --url: talking to the "
                 f"embedded simulator at {url}")
        elif url is None:
            _say(out, args, f"realtalk: talking to OpenAI ({args.model})")
        else:
            _say(out, args, f"realtalk: talking to {url}")
            api_key = key_for(url, api_key)
        local_vad = Vad(INPUT_RATE) if args.vad == "local" else None
        client = RealtimeClient(
            url,
            model=args.model,
            api_key=api_key,
            protocol=args.protocol,
            session=_session_config(args),
            playback_rate=args.out_rate,
            input_rate=INPUT_RATE,
            local_vad=local_vad,
            reconnect=False,
            record=args.record,
            prices=args.price_table,
            echo_cancel=args.echo_cancel,
        )
        _watch(client, log, args, out)
        try:
            await stack.enter_async_context(client)
        except AuthenticationError as exc:
            detail = log.last_server_error or exc.reason or str(exc)
            raise CliError(f"the server refused the API key: {detail}") from None
        except InvalidRequestError as exc:
            raise CliError(f"the server refused the request: {exc.reason or exc}") from None
        except HandshakeError as exc:
            raise CliError(f"cannot open a session at {url}: {exc}") from None
        except (ConnectionClosed, RealtalkError, OSError) as exc:
            raise CliError(f"cannot reach {url}: {exc}") from None
        log.connected = True
        if client.recording is not None:
            _say(out, args, "realtalk: recording to "
                 f"{client.recording.wav_path} and {client.recording.log_path.name}")

        if args.speaker:
            await stack.enter_async_context(_Speaker(client, args.out_rate))
        if args.mic:
            await stack.enter_async_context(_Microphone(client))
            _say(out, args, "realtalk: listening (Ctrl-C stops)")
        turns = 0
        while True:
            try:
                await _one_turn(client, speech, args, log)
            except ConnectionClosed as exc:
                raise CliError(f"the connection closed during the turn: {exc}") from None
            reply = _reply_audio(client, log)
            if args.out:
                write_wav(args.out, reply, args.out_rate)
            if not args.json:
                _summary(out, log, reply, args, client)
            turns += 1
            if not args.mic or turns == args.turns:
                break
            log.next_turn()
            log.tokens_before = client.usage.total
        if args.speaker:
            with anyio.move_on_after(reply.shape[0] / args.out_rate + 1):
                while client.playback.queued:  # let the speaker finish the reply
                    await anyio.sleep(0.05)
        if args.echo_cancel:
            metrics = client.metrics
            _say(out, args, f"realtalk: echo canceller cleaned {metrics.echo_frames_cleaned} "
                 f"frames ({metrics.echo_reference_underruns} without the speaker's reference)")
    return 0


async def _one_turn(
    client: Any, speech: npt.NDArray[np.float32] | None, args: argparse.Namespace, log: TurnLog
) -> None:
    try:
        with anyio.fail_after(None if args.mic else args.timeout):
            if args.text:
                await client.send_user_message_content(args.text)
                log.speech_end = time.perf_counter()
                await client.create_response()
            elif speech is not None:
                await _stream_audio(client, speech, args, log)
            await log.done.wait()
    except TimeoutError:
        raise CliError(f"no complete reply within {args.timeout:g} s") from None
    if log.failure:
        raise CliError(log.failure)


class _Microphone:
    """The default input device, 20 ms blocks at the session's rate, straight into the
    client's uplink from the audio thread (append_input_audio is thread-safe)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.refused = 0

    def _callback(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        try:
            self.client.append_input_audio(np.ascontiguousarray(indata[:, 0]))
        except RealtalkError:  # backpressure: this block is lost, and counted
            self.refused += 1

    async def __aenter__(self) -> _Microphone:
        import sounddevice

        self.stream = sounddevice.InputStream(
            samplerate=INPUT_RATE, channels=1, dtype="float32",
            blocksize=INPUT_RATE * FRAME_MS // 1000, callback=self._callback)
        self.stream.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stream.stop()
        self.stream.close()


class _Speaker:
    """The default output device, pulling from the client's PlaybackBuffer in its callback
    (what it pulls is what barge-in truncation counts as heard)."""

    def __init__(self, client: Any, rate: int) -> None:
        self.client = client
        self.rate = rate

    def _callback(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        self.client.playback.pull_into(outdata[:, 0])

    async def __aenter__(self) -> _Speaker:
        import sounddevice

        self.stream = sounddevice.OutputStream(
            samplerate=self.rate, channels=1, dtype="int16", callback=self._callback)
        self.stream.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stream.stop()
        self.stream.close()


async def _stream_audio(
    client: Any, samples: npt.NDArray[np.float32], args: argparse.Namespace, log: TurnLog
) -> None:
    # The WAV was brought to the session's rate once, by _speech_at_input_rate.
    rate = INPUT_RATE
    silence = np.zeros(rate * END_SILENCE_MS // 1000, dtype=np.float32)
    frame = rate * FRAME_MS // 1000
    total_s = samples.shape[0] / rate
    progress = sys.stderr.isatty() and not args.json
    start = time.perf_counter()
    for index, begin in enumerate(range(0, samples.shape[0], frame)):
        client.append_input_audio(samples[begin : begin + frame])
        if progress and index % 10 == 0:
            sent = min(total_s, (begin + frame) / rate)
            print(f"\rsending audio {sent:5.1f}/{total_s:.1f} s", end="", file=sys.stderr)
        if not args.fast:
            await anyio.sleep_until(start + (index + 1) * FRAME_MS / 1000)
        else:
            await anyio.lowlevel.checkpoint()
    if progress:
        print(f"\rsent {total_s:.1f} s of audio          ", file=sys.stderr)
    log.speech_end = time.perf_counter()
    if args.vad == "none":
        await client.commit_input_audio()
        await client.create_response()
    else:
        # Trailing silence lets the detector (server or local) see the end of speech.
        for begin in range(0, silence.shape[0], frame):
            client.append_input_audio(silence[begin : begin + frame])
            if not args.fast:
                await anyio.sleep(FRAME_MS / 1000)


def _watch(client: Any, log: TurnLog, args: argparse.Namespace, out: TextIO) -> None:
    def on_wire(event: Any) -> None:
        data = event.data
        message = data.get("event") or {}
        source = data.get("source")
        if source == "server":
            log.events_in += 1
        else:
            log.events_out += 1
        kind = message.get("type", "")
        now = time.perf_counter()
        if kind in ("response.output_audio.delta", "response.audio.delta"):  # GA, beta
            response = log.responses.get(message.get("response_id", ""))
            if response is not None:
                response.first_audio = response.first_audio or now
                response.last_audio = now
        elif kind == "input_audio_buffer.speech_stopped" and args.mic:
            log.speech_end = now  # a live speaker: the server's word for when speech ended
        elif kind == "response.created":
            response_id = (message.get("response") or {}).get("id", "")
            log.responses[response_id] = ResponseLog(created=now)
            if log.speech_end is not None and log.reply_id is None:
                log.reply_id = response_id
        elif kind == "response.done":
            finished = message.get("response") or {}
            if finished.get("id") == log.reply_id:
                if finished.get("status") == "failed":
                    details = finished.get("status_details") or {}
                    log.failure = f"the response failed: {json.dumps(details)}"
                log.done.set()
        if args.json:
            record = {"t": round(now - log.started, 6), "source": source, "event": message}
            print(json.dumps(record, separators=(",", ":")), file=out, flush=True)

    def on_update(event: Any) -> None:
        item = event.data.get("item")
        if item is None or getattr(item, "response_id", None) != log.reply_id:
            return  # user items, and responses the user's own speech interrupted
        delta = event.data.get("delta") or {}
        text = delta.get("transcript") or delta.get("text")
        if text and not args.json:
            print(text, end="", file=out, flush=True)

    def on_error(event: Any) -> None:
        error = event.data.get("error") or {}
        if event.data.get("benign"):
            return
        log.last_server_error = str(error.get("message") or error.get("code") or error)
        # Before the session is up, the failure is reported once, as the command's own error.
        if log.connected and not args.json:
            code = error.get("code") or error.get("type")
            print(f"\nserver error {code}: {error.get('message')}", file=sys.stderr)

    client.on("realtime.event", on_wire)
    client.on("conversation.updated", on_update)
    client.on("error", on_error)


def _reply_audio(client: Any, log: TurnLog) -> npt.NDArray[np.int16]:
    chunks = [
        item.audio
        for item in client.conversation.items
        if item.role == "assistant" and item.response_id == log.reply_id
    ]
    if not chunks:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate(chunks).astype(np.int16, copy=False)


def _say(out: TextIO, args: argparse.Namespace, line: str) -> None:
    # In --json mode stdout carries only JSON lines.
    print(line, file=sys.stderr if args.json else out, flush=True)


def _summary(out: TextIO, log: TurnLog, audio: npt.NDArray[np.int16],
             args: argparse.Namespace, client: Any) -> None:
    def ms(start: float | None, end: float | None) -> str:
        if start is None or end is None:
            return "-"
        return f"{(end - start) * 1000:.0f} ms"

    reply = log.reply
    first_audio = reply.first_audio if reply else None
    last_audio = reply.last_audio if reply else None
    audio_s = audio.shape[0] / args.out_rate
    rows = [
        ("speech end -> first audio", ms(log.speech_end, first_audio)),
        ("first audio -> last audio", ms(first_audio, last_audio)),
        ("reply audio", f"{audio_s:.2f} s" + (f" -> {args.out}" if args.out else "")),
        *_usage_rows(client.usage.total - log.tokens_before, client.rate_limits,
                     client.usage.prices),
        ("events sent / received", f"{log.events_out} / {log.events_in}"),
    ]
    width = max(len(name) for name, _ in rows)
    print("\n", file=out)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}", file=out)


def _price_table(given: str) -> Prices:
    """``--prices``: a JSON object, inline or in a file."""
    from pathlib import Path

    text = given
    if not given.lstrip().startswith("{"):
        try:
            text = Path(given).read_text()
        except OSError as exc:
            raise CliError(f"--prices {given}: {exc.strerror or exc}") from None
    try:
        return Prices.from_mapping(json.loads(text))
    except ValueError as exc:  # json.JSONDecodeError is one
        raise CliError(f"--prices: {exc}") from None


def _usage_rows(turn: Tokens, rate_limits: list[RateLimit],
                prices: Prices | None) -> list[tuple[str, str]]:
    """The turn's tokens (every response it took, from ``client.usage``), their cost with a
    price table, and the server's latest rate limits."""
    rows = [("tokens in / out", f"{turn.input} / {turn.output}"),
            ("tokens cached / audio out", f"{turn.cached} / {turn.output_audio}")]
    if prices is not None:
        rows.append(("cost", f"${prices.cost(turn):.6f}"))
    for limit in rate_limits:
        rows.append((f"rate limit ({limit.name})", f"{limit.remaining} of {limit.limit} left"))
    return rows
