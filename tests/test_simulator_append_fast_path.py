"""`ServerSession.feed_text` takes common `input_audio_buffer.append` messages apart without a
JSON parse. Its contract is to answer exactly as the full path does (``feed(data.decode())``,
which the section 8/9 tests hold to the reference): same events (ids included, the sessions are
seeded alike), same counted audio, same turns. Checked on the shapes clients send and on
near misses that must fall back: escapes, whitespace, duplicate keys, extra fields, bad base64,
oversized audio, odd event ids, truncation."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from realtalk.simulator import ServerSession
from realtalk.simulator._audio_io import make_vad
from realtalk.simulator._ids import IdFactory
from realtalk.simulator.session import MAX_APPEND_BYTES

RATE = 24000


def twin_sessions(protocol: str = "ga") -> tuple[ServerSession, ServerSession]:
    sessions = tuple(
        ServerSession(protocol=protocol, ids=IdFactory("twin"), now=lambda: 1.0e9,
                      vad_factory=make_vad)
        for _ in range(2)
    )
    for session in sessions:
        session.start()
        session.drain()
    return sessions[0], sessions[1]


def observed(session: ServerSession) -> dict[str, Any]:
    return {
        "events": session.drain(),
        "input_audio_bytes": session.stats.input_audio_bytes,
        "errors": session.stats.errors,
        "buffer": bytes(session._buffer),
        "clock_ms": session._clock_ms,
    }


def feed_both(message: bytes, protocol: str = "ga") -> tuple[dict[str, Any], dict[str, Any]]:
    full, fast = twin_sessions(protocol)
    full.feed(message.decode())
    fast.feed_text(message)
    return observed(full), observed(fast)


def audio_b64(n_bytes: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    return base64.b64encode(rng.integers(0, 256, n_bytes, dtype=np.uint8).tobytes()).decode()


FRAME = audio_b64(960)
HEAD = '{"type":"input_audio_buffer.append",'

SHAPES = [
    # what clients send: the fast path's own cases
    HEAD + f'"audio":"{FRAME}"}}',
    HEAD + f'"event_id":"evt_123","audio":"{FRAME}"}}',
    HEAD + f'"event_id":"","audio":"{FRAME}"}}',
    HEAD + f'"event_id":"{"x" * 512}","audio":"{FRAME}"}}',
    HEAD + '"audio":""}',
    HEAD + '"audio":"AQ=="}',  # an odd byte
    # near misses: each must get the full path's answer
    HEAD + f'"event_id":"{"x" * 513}","audio":"{FRAME}"}}',
    HEAD + f'"event_id":"a\\"b","audio":"{FRAME}"}}',
    HEAD + f'"event_id":"a\\u0041","audio":"{FRAME}"}}',
    HEAD + f'"event_id":"a\\q","audio":"{FRAME}"}}',  # an invalid escape
    HEAD + f'"event_id":"a\\","audio":"{FRAME}"}}',  # the quote is escaped
    HEAD + f'"event_id":"tab\there","audio":"{FRAME}"}}',
    HEAD + f'"event_id":"caf\u00e9","audio":"{FRAME}"}}',
    HEAD + f'"event_id":7,"audio":"{FRAME}"}}',
    HEAD + f'"event_id":"e1""audio":"{FRAME}"}}',
    HEAD + f'"audio":"{FRAME[:-4]}\\/AAA"}}',
    HEAD + f'"audio":"{FRAME}","audio":"{FRAME}"}}',
    HEAD + f'"audio":"{FRAME}","type":"response.cancel"}}',
    HEAD + f'"audio":"{FRAME}","event_id":"late"}}',
    HEAD + f'"audio":"{FRAME}","extra":1}}',
    HEAD + f'"audio":"{FRAME}" }}',
    HEAD + f'"audio":"{FRAME}"}} ',
    HEAD + f' "audio":"{FRAME}"}}',
    HEAD + f'"audio":"{FRAME[:-1]}"}}',  # not a multiple of 4
    HEAD + f'"audio":"{FRAME[:100]}\n{FRAME[100:]}"}}',  # a raw control character
    HEAD + f'"audio":"{FRAME[:100]} {FRAME[100:]}"}}',
    HEAD + '"audio":"}',  # the closing quote is the opening one
    HEAD + '"audio":"',
    HEAD + f'"audio":"{FRAME}"',
    HEAD + '"audio":"AAAA"}"}',
    HEAD + '"audio":null}',
    HEAD + '"audio":12}',
    HEAD + "}",
    '{"type":"input_audio_buffer.append" ,"audio":"AAAA"}',
    '{"type":"input_audio_buffer.commit"}',
    '{"type":"input_audio_buffer.append","audio":"AAAA"}{}',
    "[]",
    "not json",
]


@pytest.mark.parametrize("protocol", ["ga", "beta"])
@pytest.mark.parametrize("message", SHAPES, ids=range(len(SHAPES)))
def test_fast_path_answers_as_the_full_parse(message: str, protocol: str) -> None:
    full, fast = feed_both(message.encode(), protocol)
    assert fast == full


def test_the_near_misses_really_are_errors_or_different() -> None:
    # Guards the table: the fast path must not be tested only on messages it accepts.
    answers = [feed_both(m.encode())[0] for m in SHAPES]
    assert sum(bool(a["events"]) for a in answers) >= 20
    assert any(a["events"] and a["events"][0]["type"] == "error" for a in answers)


def test_oversized_audio_is_refused_as_by_the_full_path() -> None:
    encoded = "A" * ((MAX_APPEND_BYTES * 4) // 3 + 4)
    full, fast = feed_both((HEAD + f'"audio":"{encoded}"}}').encode())
    assert fast == full
    assert fast["events"][0]["error"]["param"] == "audio"


def test_invalid_utf8_fails_as_the_full_path_does() -> None:
    message = (HEAD + '"event_id":"').encode() + b"\xff\xfe" + f'","audio":"{FRAME}"}}'.encode()
    _, fast = twin_sessions()
    with pytest.raises(UnicodeDecodeError):
        message.decode()
    with pytest.raises(UnicodeDecodeError):
        fast.feed_text(message)


def speech_frames(seconds: float) -> list[bytes]:
    """Voiced bursts between pauses, as 20 ms append messages (so turns are detected)."""
    t = np.arange(int(RATE * 0.9)) / RATE
    burst = 0.3 * sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 6))
    pause = np.zeros(int(RATE * 1.2))
    pcm = np.concatenate([pause, burst, pause, burst, pause])[: int(RATE * seconds)]
    data = np.round(pcm * 32767).astype("<i2").tobytes()
    step = RATE * 2 // 50
    return [
        json.dumps(
            {"type": "input_audio_buffer.append",
             "audio": base64.b64encode(data[i : i + step]).decode()},
            separators=(",", ":"),
        ).encode()
        for i in range(0, len(data), step)
    ]


@pytest.mark.parametrize("protocol", ["ga", "beta"])
def test_a_stream_with_turns_gives_the_same_cascade(protocol: str) -> None:
    full, fast = twin_sessions(protocol)
    full_events, fast_events = [], []
    for message in speech_frames(5.0):
        full.feed(message.decode())
        fast.feed_text(message)
        full_events += full.drain()
        fast_events += fast.drain()
    assert fast_events == full_events
    kinds = [e["type"] for e in fast_events]
    assert kinds.count("input_audio_buffer.speech_stopped") == 2
    assert kinds.count("response.created") >= 1
    assert fast.stats.input_audio_bytes == full.stats.input_audio_bytes == int(RATE * 5.0) * 2


event_ids = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20
) | st.text(alphabet=st.sampled_from('ab"\\/ \t\x7f'), max_size=6)
audio_texts = st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()) | st.text(
    alphabet=st.sampled_from('AQZaz09+/="\\ \n,:{}'), max_size=24
)


@given(event_id=st.none() | event_ids, audio=audio_texts, tail=st.sampled_from(["}", " }", "}}"]))
def test_generated_variants_answer_as_the_full_parse(
    event_id: str | None, audio: str, tail: str
) -> None:
    quoted_id = "" if event_id is None else f'"event_id":{json.dumps(event_id, ensure_ascii=False)},'
    for message in (
        HEAD + quoted_id + f'"audio":"{audio}"' + tail,
        HEAD + quoted_id.replace("\\\\", "\\") + f'"audio":"{audio}"' + tail,
    ):
        data = message.encode()
        full, fast = feed_both(data)
        assert fast == full
