"""The fused frame paths against the slow way of doing the same thing.

Oracles: ``json`` for the JSON (both ways), ``base64`` for base64, ``audioop`` for G.711, numpy
for down-mixing and float -> PCM16, and realtalk's own streaming ``Resampler`` (the fused
paths promise its exact output, not merely something close).
"""

from __future__ import annotations

import audioop
import base64
import json
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtalk.audio import AudioDelta, Downlink, PlaybackBuffer, QueuedDelta, Resampler, Uplink

RATES = [8_000, 16_000, 22_050, 24_000, 44_100, 48_000]
FORMATS = ["pcm16", "g711_ulaw", "g711_alaw"]
DELTA_TYPES = {"ga": "response.output_audio.delta", "beta": "response.audio.delta"}


def wire_rate(audio_format: str) -> int:
    return 24_000 if audio_format == "pcm16" else 8_000


# ---------------------------------------------------------------------------------------------
# The slow paths
# ---------------------------------------------------------------------------------------------


class SlowUplink:
    """What a careful Python client does with each microphone frame."""

    def __init__(self, in_rate: int, audio_format: str, channels: int) -> None:
        self.format = audio_format
        self.channels = channels
        rate = wire_rate(audio_format)
        self.resampler = Resampler(in_rate, rate) if in_rate != rate else None
        self.appended = 0

    def encode(self, frame: npt.NDArray[Any], event_id: str | None) -> dict[str, str]:
        frames = frame.reshape(-1, self.channels)
        if frame.dtype == np.float32:
            mono = frames[:, 0].copy()
            for column in range(1, self.channels):
                mono += frames[:, column]
            mono /= np.float32(self.channels)
        else:
            mono = np.rint(frames.astype(np.float64).sum(axis=1) / self.channels).astype(np.int16)
        wire = self.resampler.process(mono) if self.resampler else mono
        if wire.dtype == np.float32:
            clipped = np.clip(np.nan_to_num(wire), np.float32(-1), np.float32(1))
            wire = np.rint(clipped * np.float32(32767)).astype(np.int16)
        pcm = wire.astype("<i2").tobytes()
        payload = {
            "pcm16": pcm,
            "g711_ulaw": audioop.lin2ulaw(pcm, 2),
            "g711_alaw": audioop.lin2alaw(pcm, 2),
        }[self.format]
        self.appended += len(wire)
        event = {"type": "input_audio_buffer.append", "audio": base64.b64encode(payload).decode()}
        if event_id is not None:
            event["event_id"] = event_id
        return event


class SlowDownlink:
    """json.loads + base64 + G.711 + the resampler, one delta at a time."""

    def __init__(self, out_rate: int, audio_format: str, protocol: str, int16: bool) -> None:
        self.format = audio_format
        self.delta_type = DELTA_TYPES[protocol]
        self.int16 = int16
        rate = wire_rate(audio_format)
        self.resampler = Resampler(rate, out_rate) if out_rate != rate else None

    def decode(self, message: str | bytes) -> tuple[str, str, int, int, npt.NDArray[Any]] | None:
        event = json.loads(message)
        if not isinstance(event, dict) or event.get("type") != self.delta_type:
            return None
        for name in ("response_id", "item_id", "delta"):
            if not isinstance(event.get(name), str):
                raise ValueError(f"{name} is not a string")
        for name in ("output_index", "content_index"):
            if type(event.get(name)) is not int or not -(2**63) <= event[name] < 2**63:
                raise ValueError(f"{name} is not a 64-bit integer")
        raw = base64.b64decode(event["delta"], validate=True)
        if self.format == "pcm16":
            if len(raw) % 2:
                raise ValueError("odd pcm16 byte count")
            pcm = raw
        else:
            pcm = (audioop.ulaw2lin if self.format == "g711_ulaw" else audioop.alaw2lin)(raw, 2)
        samples: npt.NDArray[Any] = np.frombuffer(pcm, "<i2").astype(np.int16)
        if not self.int16:
            samples = samples.astype(np.float32) / np.float32(32768)
        if self.resampler is not None:
            samples = self.resampler.process(samples)
        fields = (event["response_id"], event["item_id"], event["output_index"], event["content_index"])
        return (*fields, samples)


def fast_tuple(delta: AudioDelta | None) -> tuple[str, str, int, int, npt.NDArray[Any]] | None:
    if delta is None:
        return None
    return (delta.response_id, delta.item_id, delta.output_index, delta.content_index, delta.samples)


def assert_same_answer(fast: Any, slow: Any) -> None:
    if slow is None or fast is None:
        assert fast is None and slow is None, (fast, slow)
        return
    assert fast[:4] == slow[:4]
    assert fast[4].dtype == slow[4].dtype
    np.testing.assert_array_equal(fast[4], slow[4])


def both(fast_call: Any, slow_call: Any) -> None:
    """Both succeed with the same answer, or both refuse the message with ValueError."""
    try:
        slow = slow_call()
    except ValueError:
        with pytest.raises(ValueError):
            fast_call()
        return
    assert_same_answer(fast_tuple(fast_call()), slow)


# ---------------------------------------------------------------------------------------------
# A JSON writer with every liberty the grammar allows
# ---------------------------------------------------------------------------------------------

WHITESPACE = ["", "", "", " ", "\n", "\t", "\r\n  "]


def escaped_string(text: str, rng: random.Random, escape_rate: float) -> str:
    parts = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\' or code < 0x20 or rng.random() < escape_rate:
            if code > 0xFFFF:
                code -= 0x10000
                parts.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04X}")
            elif char in "\"\\/\b\f\n\r\t" and rng.random() < 0.5:
                parts.append(json.dumps(char)[1:-1] if char != "/" else "\\/")
            else:
                parts.append(f"\\u{code:04x}")
        else:
            parts.append(char)
    parts.append('"')
    return "".join(parts)


def write_json(value: Any, rng: random.Random, escape_rate: float) -> str:
    ws = lambda: rng.choice(WHITESPACE)  # noqa: E731
    if isinstance(value, Pairs):
        items = [
            f"{ws()}{escaped_string(key, rng, escape_rate)}{ws()}:{ws()}{write_json(item, rng, escape_rate)}{ws()}"
            for key, item in value
        ]
        return "{" + ",".join(items) + ws() + "}"
    if isinstance(value, dict):
        return write_json(Pairs(value.items()), rng, escape_rate)
    if isinstance(value, list):
        return "[" + ",".join(ws() + write_json(item, rng, escape_rate) + ws() for item in value) + "]"
    if isinstance(value, str):
        return escaped_string(value, rng, escape_rate)
    return json.dumps(value)


class Pairs(list[tuple[str, Any]]):
    """An object written as these key/value pairs, in this order, duplicates included."""


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
ids = st.text(max_size=12) | st.sampled_from(["resp_001", "item_CCXGQ4e1ht4cOraEYcuR2", "msg_008"])


@st.composite
def delta_messages(draw: st.DrawFn, audio_format: str, protocol: str) -> tuple[str, bytes]:
    """An audio delta (or, now and then, another event), written any way JSON allows."""
    samples = draw(st.integers(0, 300))
    width = 2 if audio_format == "pcm16" else 1
    audio = draw(st.binary(min_size=samples * width, max_size=samples * width))
    fields: dict[str, Any] = {
        "type": draw(
            st.sampled_from(list(DELTA_TYPES.values()) + ["response.output_audio_transcript.delta"])
            | st.just(DELTA_TYPES[protocol])
        ),
        "event_id": "event_" + draw(st.text(max_size=6)),
        "response_id": draw(ids),
        "item_id": draw(ids),
        "output_index": draw(st.integers(0, 3) | st.integers(-(2**63), 2**63 - 1)),
        "content_index": draw(st.integers(0, 3)),
        "delta": base64.b64encode(audio).decode(),
    }
    if draw(st.booleans()):
        fields["obfuscation"] = draw(st.text("abcdefXYZ0123", max_size=16))
    extras = draw(st.dictionaries(st.text(max_size=6), json_values, max_size=3))
    pairs = Pairs(list(fields.items()) + [(k, v) for k, v in extras.items() if k not in fields])
    # Now and then: a field missing, mistyped or given twice.
    oddity = draw(st.sampled_from(["none"] * 6 + ["missing", "mistyped", "duplicate"]))
    if oddity == "missing":
        pairs.pop(draw(st.integers(0, len(pairs) - 1)))
    elif oddity == "mistyped":
        index = draw(st.integers(0, len(pairs) - 1))
        pairs[index] = (pairs[index][0], draw(json_values))
    elif oddity == "duplicate":
        key = draw(st.sampled_from([key for key, _ in pairs]))
        pairs.append((key, draw(json_values | st.just(fields.get(key)))))
    rng = random.Random(draw(st.integers(0, 2**32)))
    rng.shuffle(pairs)
    text = write_json(pairs, rng, escape_rate=draw(st.sampled_from([0.0, 0.0, 0.05, 0.5])))
    return text, text.encode()


# ---------------------------------------------------------------------------------------------
# Downlink
# ---------------------------------------------------------------------------------------------


@given(data=st.data())
def test_decode_equals_json_base64_and_the_resampler(data: st.DataObject) -> None:
    audio_format = data.draw(st.sampled_from(FORMATS))
    protocol = data.draw(st.sampled_from(["ga", "beta"]))
    out_rate = data.draw(st.sampled_from(RATES))
    int16 = data.draw(st.booleans())
    fast = Downlink(
        out_rate, format=audio_format, protocol=protocol, dtype=np.int16 if int16 else np.float32
    )
    slow = SlowDownlink(out_rate, audio_format, protocol, int16)
    for _ in range(data.draw(st.integers(1, 4))):
        text, raw = data.draw(delta_messages(audio_format, protocol))
        message = text if data.draw(st.booleans()) else raw
        both(lambda: fast.decode(message), lambda: slow.decode(message))


def some_delta(audio: bytes, protocol: str = "ga", **extra: Any) -> dict[str, Any]:
    return {
        "event_id": "event_4950",
        "type": DELTA_TYPES[protocol],
        "response_id": "resp_001",
        "item_id": "msg_008",
        "output_index": 0,
        "content_index": 0,
        "delta": base64.b64encode(audio).decode(),
        **extra,
    }


def pcm16_bytes(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(-32768, 32768, n, dtype=np.int16).astype("<i2").tobytes()


def test_the_documented_shapes_with_live_fields_decode() -> None:
    audio = pcm16_bytes(480)
    expected = np.frombuffer(audio, "<i2").astype(np.int16)
    ga = some_delta(audio, obfuscation="aLxx0jTEciOGe")
    beta = some_delta(audio, "beta")
    for protocol, event in [("ga", ga), ("beta", beta)]:
        delta = Downlink(24_000, protocol=protocol, dtype=np.int16).decode(json.dumps(event))
        assert isinstance(delta, AudioDelta)
        assert (delta.response_id, delta.item_id, delta.output_index, delta.content_index) == (
            "resp_001",
            "msg_008",
            0,
            0,
        )
        np.testing.assert_array_equal(delta.samples, expected)
        # Each protocol knows only its own name.
        other = "beta" if protocol == "ga" else "ga"
        assert Downlink(24_000, protocol=other).decode(json.dumps(event)) is None


def test_other_events_are_none() -> None:
    downlink = Downlink(48_000)
    for path in [
        '{"type":"response.output_audio_transcript.delta","delta":"Hello"}',
        '{"type":"session.updated","session":{"audio":{"output":{"format":{"type":"audio/pcm"}}}}}',
        '{"type":"error","error":{"message":"x","event_id":null}}',
        "{}",
        "[1, 2]",
        '"response.output_audio.delta"',
        "17",
    ]:
        assert downlink.decode(path) is None
        assert downlink.decode(path.encode()) is None


def test_unusual_but_valid_deltas_are_read_by_the_full_parse() -> None:
    audio = pcm16_bytes(96, seed=1)
    expected = np.frombuffer(audio, "<i2").astype(np.int16)
    b64 = base64.b64encode(audio).decode()
    variants = [
        json.dumps(some_delta(audio, item_id="\ud800 lone surrogate"), ensure_ascii=False),
        json.dumps(some_delta(audio)).replace('"item_id"', '"\\u0069tem_id"'),
        json.dumps(some_delta(audio)).replace(b64, b64.replace("/", "\\/")),
        json.dumps(some_delta(audio))[:-1] + ', "item_id": "msg_009"}',
        json.dumps(some_delta(audio, nested=[[[[{"deep": [1.5e300, -0.0, None]}]]]])),
    ]
    for message in variants:
        slow = json.loads(message)
        for form in (message, message.encode("utf-8", "surrogatepass")):
            delta = Downlink(24_000, dtype=np.int16).decode(form)
            assert delta is not None
            assert delta.item_id == slow["item_id"]
            np.testing.assert_array_equal(delta.samples, expected)


def test_malformed_deltas_raise_value_error() -> None:
    good = some_delta(pcm16_bytes(10))
    downlink = Downlink(48_000)
    bad_fields: list[dict[str, Any]] = [
        {"delta": "Base64EncodedAudioDelta"},  # the documentation's placeholder
        {"delta": "AAA"},
        {"delta": "AA=="},  # one byte: half a sample
        {"delta": "AA!A"},
        {"delta": None},
        {"item_id": 7},
        {"output_index": 1.0},
        {"output_index": True},
        {"content_index": 2**64},
        {"content_index": "0"},
    ]
    for change in bad_fields:
        with pytest.raises(ValueError):
            downlink.decode(json.dumps({**good, **change}))
    missing = {k: v for k, v in good.items() if k != "response_id"}
    with pytest.raises(ValueError):
        downlink.decode(json.dumps(missing))
    with pytest.raises(ValueError):
        downlink.decode("[" * 100_000)
    with pytest.raises(TypeError):
        downlink.decode(bytearray(json.dumps(good).encode()))  # type: ignore[arg-type]


@given(data=st.data())
def test_truncated_or_corrupted_messages_never_crash(data: st.DataObject) -> None:
    audio_format = data.draw(st.sampled_from(FORMATS))
    text, raw = data.draw(delta_messages(audio_format, "ga"))
    mutated = bytearray(raw[: data.draw(st.integers(0, len(raw)))])
    for _ in range(data.draw(st.integers(0, 3))):
        if mutated:
            mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    fast = Downlink(48_000, format=audio_format)
    slow = SlowDownlink(48_000, audio_format, "ga", int16=False)
    both(lambda: fast.decode(bytes(mutated)), lambda: slow.decode(bytes(mutated)))


@given(data=st.data())
def test_decode_into_queues_what_decode_returns(data: st.DataObject) -> None:
    audio_format = data.draw(st.sampled_from(FORMATS))
    out_rate = data.draw(st.sampled_from(RATES))
    reference = Downlink(out_rate, format=audio_format, dtype=np.int16)
    pushing = Downlink(out_rate, format=audio_format, dtype=np.float32)
    playback = PlaybackBuffer(out_rate, capacity_ms=60_000)
    expected: list[npt.NDArray[np.int16]] = []
    for _ in range(data.draw(st.integers(1, 3))):
        text, _ = data.draw(delta_messages(audio_format, "ga"))
        try:
            delta = reference.decode(text)
        except ValueError:
            with pytest.raises(ValueError):
                pushing.decode_into(text, playback)
            continue
        queued = pushing.decode_into(text, playback)
        if delta is None:
            assert queued is None
            continue
        assert isinstance(queued, QueuedDelta)
        assert (queued.response_id, queued.item_id, queued.output_index, queued.content_index) == (
            delta.response_id,
            delta.item_id,
            delta.output_index,
            delta.content_index,
        )
        if delta.content_index < 0 or delta.content_index >= 2**32:
            continue
        assert queued.decoded == queued.queued == len(delta.samples)
        expected.append(delta.samples)
    want = np.concatenate(expected) if expected else np.zeros(0, np.int16)
    np.testing.assert_array_equal(playback.pull(len(want)), want)


@pytest.mark.parametrize("int16", [False, True])
@pytest.mark.parametrize("out_rate", [24_000, 48_000])
def test_every_result_keeps_its_own_ids_and_samples(out_rate: int, int16: bool) -> None:
    """Ids are cached while they repeat, result objects are recycled once dropped and each
    delta's samples get a fresh array: none of it may leak from one result into another."""
    ids = [
        ("resp_1", "item_1"),
        ("resp_1", "item_1"),
        ("resp_1", "item_2"),
        ("resp_2", "item_2"),
        ("resp_2", "item_\u00e9"),
        ("resp_2", "item_\u00e9"),
        ("resp_1", "item_1"),
    ]
    fast = Downlink(out_rate, dtype=np.int16 if int16 else np.float32)
    slow = SlowDownlink(out_rate, "pcm16", "ga", int16)
    kept: list[tuple[AudioDelta, Any]] = []
    for seed, (response_id, item_id) in enumerate(ids):
        audio = pcm16_bytes(240, seed)
        message = json.dumps(some_delta(audio, response_id=response_id, item_id=item_id))
        fast.decode(message)  # dropped at once: its object goes back for reuse
        slow.decode(message)
        fast_delta = fast.decode(message)
        assert fast_delta is not None
        kept.append((fast_delta, slow.decode(message)))
    for fast_delta, slow_delta in kept:
        assert_same_answer(fast_tuple(fast_delta), slow_delta)
    arrays = [fast_delta.samples for fast_delta, _ in kept]
    assert all(a.flags.c_contiguous and a.flags.writeable for a in arrays)
    arrays[0][:] = 0  # the caller owns each array
    for fast_delta, slow_delta in kept[1:]:
        assert_same_answer(fast_tuple(fast_delta), slow_delta)


def test_decode_into_checks_the_buffer_and_reports_what_did_not_fit() -> None:
    message = json.dumps(some_delta(pcm16_bytes(480)))
    downlink = Downlink(24_000)
    with pytest.raises(ValueError, match="Hz"):
        downlink.decode_into(message, PlaybackBuffer(48_000))
    small = PlaybackBuffer(24_000, capacity_ms=10)
    queued = downlink.decode_into(message, small)
    assert queued is not None and (queued.decoded, queued.queued) == (480, 240)
    assert small.current == ("msg_008", 0)
    with pytest.raises(ValueError):
        downlink.decode_into(json.dumps(some_delta(b"\0\0", content_index=-1)), small)


def test_flush_completes_the_stream() -> None:
    rng = np.random.default_rng(3)
    audio = rng.integers(-20000, 20000, 2400, dtype=np.int16)
    for int16 in (False, True):
        downlink = Downlink(48_000, dtype=np.int16 if int16 else np.float32)
        resampler = Resampler(24_000, 48_000)
        wire = audio if int16 else audio.astype(np.float32) / np.float32(32768)
        parts = []
        for chunk in np.split(audio, [100, 1000, 1001]):
            delta = downlink.decode(json.dumps(some_delta(chunk.astype("<i2").tobytes())))
            assert delta is not None
            parts.append(delta.samples)
        parts.append(downlink.flush())
        np.testing.assert_array_equal(
            np.concatenate(parts),
            np.concatenate([resampler.process(wire), resampler.flush(dtype=downlink.dtype)]),
        )
        assert len(np.concatenate(parts)) == 4800


def test_downlink_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        Downlink(4_000)
    with pytest.raises(ValueError):
        Downlink(48_000, format="opus")
    with pytest.raises(ValueError):
        Downlink(48_000, protocol="v3")
    with pytest.raises(ValueError):
        Downlink(48_000, dtype=np.float64)
    downlink = Downlink(16_000, format="g711_ulaw", protocol="beta", dtype=np.int16)
    assert (downlink.out_rate, downlink.wire_rate, downlink.format, downlink.protocol) == (
        16_000,
        8_000,
        "g711_ulaw",
        "beta",
    )
    assert downlink.dtype == np.int16 and downlink.delay > 0
    assert Downlink(24_000).delay == 0


# ---------------------------------------------------------------------------------------------
# Uplink
# ---------------------------------------------------------------------------------------------


def frames_of(
    data: st.DataObject, dtype: type, channels: int, count: int
) -> Iterator[npt.NDArray[Any]]:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32)))
    for _ in range(count):
        n = data.draw(st.sampled_from([0, 1, 7, 160, 441, 480, 882, 960]) | st.integers(0, 1200))
        if dtype == np.float32:
            frame = (rng.standard_normal((n, channels)) * 0.4).astype(np.float32)
            if n and data.draw(st.booleans()):
                frame.flat[0] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf, 1.5, -1.0]))
        else:
            frame = rng.integers(-32768, 32768, (n, channels), dtype=np.int16)
        yield frame[:, 0].copy() if channels == 1 and data.draw(st.booleans()) else frame


@given(data=st.data())
def test_encode_equals_the_event_built_the_slow_way(data: st.DataObject) -> None:
    in_rate = data.draw(st.sampled_from(RATES))
    audio_format = data.draw(st.sampled_from(FORMATS))
    channels = data.draw(st.sampled_from([1, 1, 2, 3]))
    dtype = data.draw(st.sampled_from([np.float32, np.int16]))
    fast = Uplink(in_rate, format=audio_format, channels=channels)
    slow = SlowUplink(in_rate, audio_format, channels)
    for frame in frames_of(data, dtype, channels, data.draw(st.integers(1, 4))):
        event_id = data.draw(st.none() | st.text(max_size=10))
        event = fast.encode(frame, event_id=event_id)
        assert isinstance(event, bytes)
        assert json.loads(event) == slow.encode(frame, event_id)
        assert fast.appended_samples == slow.appended
    assert fast.appended_ms == pytest.approx(slow.appended * 1000 / wire_rate(audio_format))


def test_flush_sends_the_tail_and_the_clock_counts_it() -> None:
    signal = (np.sin(np.arange(44_100) * 0.01) * 0.5).astype(np.float32)
    uplink = Uplink(44_100)
    events = [uplink.encode(chunk) for chunk in np.array_split(signal, 50)]
    events.append(uplink.flush(event_id="tail"))
    assert json.loads(events[-1])["event_id"] == "tail"
    wire = b"".join(base64.b64decode(json.loads(e)["audio"]) for e in events)
    assert len(wire) // 2 == uplink.appended_samples == 24_000
    assert uplink.appended_ms == 1000.0
    uplink.reset()
    assert uplink.appended_samples == 0


def test_uplink_refuses_bad_frames_and_arguments() -> None:
    uplink = Uplink(48_000, channels=2)
    for bad in [
        np.zeros(10, np.float64),
        np.zeros((10, 3), np.float32),
        np.zeros(10, np.float32),  # 1-D is mono only
        np.zeros((10, 2, 1), np.int16),
        np.zeros((10, 4), np.float32)[:, ::2],  # not contiguous
        np.asfortranarray(np.zeros((10, 2), np.float32)),  # channels not interleaved
        [0.0, 0.0],
    ]:
        with pytest.raises(ValueError):
            uplink.encode(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Uplink(48_000).encode(np.zeros(4, np.float32), event_id="\ud800")
    for kwargs in [{"format": "opus"}, {"channels": 0}, {"channels": 65}, {"quality": "best"}]:
        with pytest.raises(ValueError):
            Uplink(48_000, **kwargs)
    with pytest.raises(ValueError):
        Uplink(7_999)
    assert (uplink.in_rate, uplink.wire_rate, uplink.format, uplink.channels) == (48_000, 24_000, "pcm16", 2)
    assert uplink.appended_samples == 0, "refused frames do not move the clock"


def test_event_ids_are_escaped_for_any_text() -> None:
    uplink = Uplink(24_000)
    for event_id in ['q"b\\s/', "\n\r\t\b\f\x00\x1f\x7f", "é😀", ""]:
        event = uplink.encode(np.zeros(3, np.int16), event_id=event_id)
        assert json.loads(event) == {
            "type": "input_audio_buffer.append",
            "event_id": event_id,
            "audio": base64.b64encode(bytes(6)).decode(),
        }
