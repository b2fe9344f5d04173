"""realtalk.audio.Vad: server_vad event semantics, streaming invariants, input checks, and
frame accuracy on the committed espeak-ng subset (tests/data/vad, see benches/vad_dataset.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soxr
from numpy.typing import NDArray

from realtalk.audio import Vad, VadEvent

sys.path.insert(0, str(Path(__file__).parents[1] / "benches"))
import vad_dataset  # noqa: E402  (the recordings' hand-checked word labels live there)

RATES = [8000, 16000, 24000, 48000]
SUBSET = Path(__file__).parent / "data" / "vad" / "subset.npz"


def vowel(rate: int, seconds: float, f0: float = 140.0, level: float = 0.1) -> NDArray[np.float64]:
    """A harmonic tone with two formants: speech-like energy in the speech band."""
    t = np.arange(int(seconds * rate)) / rate
    x = np.zeros_like(t)
    for h in range(1, 25):
        f = f0 * h
        if f >= rate / 2:
            break
        gain = np.exp(-(((f - 700) / 400) ** 2)) + 0.5 * np.exp(-(((f - 1800) / 500) ** 2))
        x += gain * np.sin(2 * np.pi * f * t)
    return level * x / np.sqrt(np.mean(x**2))


def scene(rate: int, bursts: list[tuple[float, float]], seconds: float, noise_db: float = -60.0, seed: int = 0) -> NDArray[np.float32]:
    """White noise at `noise_db` dBFS with speech-like bursts at the given (start, end) seconds."""
    rng = np.random.RandomState(seed)
    x = rng.standard_normal(int(seconds * rate)) * 10 ** (noise_db / 20)
    for start, end in bursts:
        a, b = int(start * rate), int(end * rate)
        x[a:b] += vowel(rate, (b - a) / rate)
    return x.astype(np.float32)


def as_tuples(events: list[VadEvent]) -> list[tuple[str, int | None, int | None]]:
    return [(e.type, e.audio_start_ms, e.audio_end_ms) for e in events]


# ---- event semantics -------------------------------------------------------------------------


@pytest.mark.parametrize("rate", RATES)
def test_events_carry_padding_and_silence_counted_from_the_first_sample(rate: int) -> None:
    vad = Vad(rate, prefix_padding_ms=300, silence_duration_ms=500)
    events = vad.process(scene(rate, [(1.5, 2.5)], 4.0))
    assert [e.type for e in events] == ["speech_started", "speech_stopped"]
    started, stopped = events
    assert started.audio_end_ms is None and stopped.audio_start_ms is None
    # True onset 1500 ms, minus 300 ms of padding, within two 10 ms frames.
    assert started.audio_start_ms is not None and 1200 <= started.audio_start_ms <= 1220
    # True offset 2500 ms plus 500 ms of silence, plus at most the detector's own hangover.
    assert stopped.audio_end_ms is not None and 3000 <= stopped.audio_end_ms <= 3300
    assert not vad.speaking


@pytest.mark.parametrize("rate", RATES)
def test_speech_stopped_counts_the_silence_from_the_last_frame_heard(rate: int) -> None:
    """The detector's hangover bridges pauses inside a word; silence_duration_ms does that for
    turns, so speech_stopped comes silence_duration_ms after the last frame that holds speech
    (the burst ends at 2500 ms), not after the hangover too."""
    events = Vad(rate, silence_duration_ms=500).process(scene(rate, [(1.5, 2.5)], 4.0))
    assert [e.type for e in events] == ["speech_started", "speech_stopped"]
    assert events[1].audio_end_ms is not None and 3000 <= events[1].audio_end_ms <= 3020, events


def test_padding_and_silence_shift_the_events_by_exactly_their_values() -> None:
    audio = scene(24000, [(1.5, 2.5)], 5.0)
    base = Vad(24000, prefix_padding_ms=0, silence_duration_ms=200).process(audio)
    other = Vad(24000, prefix_padding_ms=450, silence_duration_ms=1000).process(audio)
    assert base[0].audio_start_ms is not None and other[0].audio_start_ms is not None
    assert base[0].audio_start_ms - other[0].audio_start_ms == 450
    assert base[1].audio_end_ms is not None and other[1].audio_end_ms is not None
    assert other[1].audio_end_ms - base[1].audio_end_ms == 800


def test_padding_never_goes_before_the_first_sample() -> None:
    events = Vad(16000, prefix_padding_ms=5000).process(scene(16000, [(0.5, 1.5)], 3.0))
    assert events[0].audio_start_ms == 0


def test_silence_shorter_than_silence_duration_keeps_one_turn() -> None:
    audio = scene(16000, [(1.0, 2.0), (2.3, 3.0)], 5.0)
    one_turn = Vad(16000, silence_duration_ms=600).process(audio)
    two_turns = Vad(16000, silence_duration_ms=100).process(audio)
    assert [e.type for e in one_turn] == ["speech_started", "speech_stopped"]
    assert [e.type for e in two_turns] == ["speech_started", "speech_stopped"] * 2


def test_speaking_follows_the_events_across_calls() -> None:
    vad = Vad(16000, silence_duration_ms=300)
    audio = scene(16000, [(1.0, 2.0)], 3.0)
    assert vad.process(audio[:16000]) == [] and not vad.speaking
    assert [e.type for e in vad.process(audio[16000:24000])] == ["speech_started"]
    assert vad.speaking
    assert [e.type for e in vad.process(audio[24000:])] == ["speech_stopped"]
    assert not vad.speaking


@pytest.mark.parametrize("rate", RATES)
def test_any_chunking_gives_the_same_events_and_decisions(rate: int) -> None:
    audio = scene(rate, [(0.8, 1.6), (2.5, 2.9)], 4.0, noise_db=-40)
    whole_events = as_tuples(Vad(rate).process(audio))
    whole_decisions = Vad(rate).classify(audio)
    rng = np.random.RandomState(rate)
    cuts = np.sort(rng.randint(0, len(audio), size=60))
    vad_events, vad_decisions = Vad(rate), Vad(rate)
    events: list[VadEvent] = []
    decisions = []
    for piece in np.split(audio, cuts):
        events += vad_events.process(piece)
        decisions.append(vad_decisions.classify(piece))
    assert as_tuples(events) == whole_events
    assert np.array_equal(np.concatenate(decisions), whole_decisions)
    assert len(whole_decisions) == 400


@pytest.mark.parametrize("rate", RATES)
def test_int16_and_float32_inputs_decide_alike(rate: int) -> None:
    audio = scene(rate, [(1.0, 2.0)], 3.0, noise_db=-45)
    pcm = np.clip(np.round(audio * 32768), -32768, 32767).astype(np.int16)
    image = (pcm.astype(np.float32) / 32768).astype(np.float32)
    assert np.array_equal(Vad(rate).classify(pcm), Vad(rate).classify(image))
    assert as_tuples(Vad(rate).process(pcm)) == as_tuples(Vad(rate).process(image))


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_classify_returns_one_decision_per_completed_frame(frame_ms: int) -> None:
    vad = Vad(48000, frame_ms=frame_ms)
    per_frame = 48 * frame_ms
    assert vad.classify(np.zeros(per_frame - 1, np.float32)).shape == (0,)
    out = vad.classify(np.zeros(per_frame * 3 + 1, np.float32))
    # The leftover sample completes the pending frame: 4 frames in all.
    assert out.dtype == np.bool_ and out.shape == (4,)
    assert vad.processed_ms == 4 * frame_ms


def test_reset_starts_a_new_stream() -> None:
    audio = scene(24000, [(1.0, 2.0)], 3.0)
    vad = Vad(24000)
    first = as_tuples(vad.process(audio))
    vad.process(audio[: 24000 * 3 // 2])
    assert vad.speaking
    vad.reset()
    assert not vad.speaking and vad.processed_ms == 0
    assert as_tuples(vad.process(audio)) == first


def test_defaults_and_repr() -> None:
    vad = Vad()
    assert (vad.sample_rate, vad.threshold, vad.prefix_padding_ms, vad.silence_duration_ms, vad.frame_ms) == (
        24000, 0.5, 300, 500, 10)
    assert "sample_rate=24000" in repr(vad)
    event = Vad(16000).process(scene(16000, [(1.0, 2.0)], 3.0))[0]
    assert repr(event) == f"VadEvent(type='speech_started', audio_start_ms={event.audio_start_ms})"


def test_higher_threshold_needs_louder_speech() -> None:
    audio = scene(16000, [(1.0, 2.0)], 3.0, noise_db=-25)  # speech-like burst 5 dB above the noise
    assert Vad(16000, threshold=0.1).process(audio) != []
    assert Vad(16000, threshold=0.95).process(audio) == []


def test_a_talker_under_the_noise_is_found_once_the_stream_is_noisy() -> None:
    """After a turn near 0 dB SNR, a quieter talker 6 dB under white noise is still found for
    most of its length by the slow path (the mean band excess over 150 ms), and the noise
    alone after it stays silence."""
    rate = 16000
    noise_rms = 10 ** (-35 / 20)
    found, false_alarms = [], []
    for seed in range(3):
        x = np.random.RandomState(seed).standard_normal(12 * rate) * noise_rms
        for (start, end), snr_db in (((1.0, 4.0), 0), ((6.0, 8.0), -6)):
            x[int(start * rate) : int(end * rate)] += vowel(rate, end - start, level=noise_rms * 10 ** (snr_db / 20))
        decisions = Vad(rate).classify(x.astype(np.float32))
        found.append(decisions[600:800].mean())
        false_alarms.append(decisions[900:].mean())
    assert np.mean(found) >= 0.6, found
    assert max(false_alarms) == 0.0, false_alarms


# ---- no false starts -------------------------------------------------------------------------


def pink(n: int, seed: int) -> NDArray[np.float64]:
    spectrum = np.fft.rfft(np.random.RandomState(seed).standard_normal(n))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spectrum / np.sqrt(f), n)


@pytest.mark.parametrize("rate", [16000, 24000])
@pytest.mark.parametrize("kind", ["white", "pink"])
@pytest.mark.parametrize("level_db", [-60, -50, -40, -30, -20])
def test_no_speech_started_on_a_minute_of_stationary_noise(rate: int, kind: str, level_db: int) -> None:
    n = 60 * rate
    seed = 1000 + level_db + rate
    noise = np.random.RandomState(seed).standard_normal(n) if kind == "white" else pink(n, seed)
    noise *= 10 ** (level_db / 20) / np.sqrt(np.mean(noise**2))
    pcm = np.clip(np.round(noise * 32768), -32768, 32767).astype(np.int16)
    vad = Vad(rate)
    assert vad.process(pcm) == []
    assert not vad.speaking


@pytest.mark.parametrize("frequency", [100.0, 440.0, 1000.0, 3000.0])
def test_no_speech_started_on_a_steady_tone(frequency: float) -> None:
    t = np.arange(30 * 24000) / 24000
    tone = (0.1 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
    assert Vad(24000).process(tone) == []


def test_digital_silence_is_never_speech() -> None:
    vad = Vad(16000)
    assert not vad.classify(np.zeros(16000 * 10, np.int16)).any()


# ---- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sample_rate": 44100}, "sample_rate"),
        ({"sample_rate": -1}, "sample_rate"),
        ({"frame_ms": 15}, "frame_ms"),
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": -0.1}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"prefix_padding_ms": -1}, "prefix_padding_ms"),
        ({"silence_duration_ms": -5}, "silence_duration_ms"),
    ],
)
def test_bad_configuration_is_a_value_error(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Vad(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "samples",
    [
        np.zeros(480, np.float64),
        np.zeros(480, np.int32),
        np.zeros(480, ">i2"),
        np.zeros((2, 480), np.float32),
        [0.0] * 480,
        b"\x00" * 960,
    ],
    ids=["float64", "int32", "big-endian int16", "2-D", "list", "bytes"],
)
def test_wrong_sample_types_are_value_errors(samples: object) -> None:
    vad = Vad()
    with pytest.raises(ValueError, match="float32 or int16"):
        vad.process(samples)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="float32 or int16"):
        vad.classify(samples)  # type: ignore[arg-type]


def test_non_contiguous_and_non_finite_input_is_refused_without_consuming_it() -> None:
    vad = Vad()
    with pytest.raises(ValueError, match="contiguous"):
        vad.process(np.zeros(960, np.float32)[::2])
    bad = np.zeros(480, np.float32)
    bad[100] = np.nan
    with pytest.raises(ValueError, match="finite"):
        vad.classify(bad)
    bad[100] = np.inf
    with pytest.raises(ValueError, match="finite"):
        vad.process(bad)
    assert vad.processed_ms == 0


# ---- accuracy on the committed espeak-ng subset --------------------------------------------


def load_subset(rate: int) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The clean subset (16 kHz int16 + utterance [onset, offset) samples) at `rate`."""
    data = np.load(SUBSET)
    speech = data["speech"].astype(np.float64) / 32768.0
    segments = data["segments"].astype(np.int64)
    stored = int(data["rate"])
    if rate != stored:
        speech = soxr.resample(speech, stored, rate).astype(np.float64)
        segments = segments * rate // stored
    return speech, segments


def frame_labels(n: int, segments: NDArray[np.int64], rate: int) -> NDArray[np.bool_]:
    """A 10 ms frame is speech when at least half of it lies inside an utterance."""
    size = rate // 100
    inside = np.zeros(n, dtype=np.int32)
    for onset, offset in segments:
        inside[onset:offset] = 1
    frames = n // size
    return inside[: frames * size].reshape(frames, size).sum(axis=1) * 2 >= size


def mixed(speech: NDArray[np.float64], segments: NDArray[np.int64], condition: str, seed: int) -> NDArray[np.int16]:
    """`speech` under `condition`: "clean" or "<white|pink> <snr> dB" (active-speech SNR)."""
    x = speech
    if condition != "clean":
        kind, snr, _ = condition.split()
        n = len(speech)
        noise = np.random.RandomState(seed).standard_normal(n) if kind == "white" else pink(n, seed)
        active = np.concatenate([speech[a:b] for a, b in segments])
        noise *= np.sqrt(np.mean(active**2) / np.mean(noise**2) / 10 ** (int(snr) / 10))
        x = speech + noise
    return np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)


def f1_score(decisions: NDArray[np.bool_], labels: NDArray[np.bool_]) -> float:
    n = min(len(decisions), len(labels))
    d, l = decisions[:n], labels[:n]
    tp = np.sum(d & l)
    return float(2 * tp / (np.sum(d) + np.sum(l)))


BAR_CONDITIONS = ["clean"] + [f"{kind} {snr} dB" for kind in ("white", "pink") for snr in (20, 10, 5, 0)]


@pytest.mark.parametrize("rate", [16000, 24000])
def test_frame_f1_on_the_espeak_subset_meets_the_bars(rate: int) -> None:
    speech, segments = load_subset(rate)
    labels = frame_labels(len(speech), segments, rate)
    assert 0.3 < labels.mean() < 0.7  # the subset has both speech and silence to get wrong
    scores = {}
    for seed, condition in enumerate(BAR_CONDITIONS):
        decisions = Vad(rate).classify(mixed(speech, segments, condition, seed))
        scores[condition] = f1_score(decisions, labels)
    low_snr = [scores[f"{kind} {snr} dB"] for kind in ("white", "pink") for snr in (5, 0)]
    # Issue 22's bar is 0.95 on the full set; this 62 s subset gives 0.950 at both rates.
    assert np.mean(list(scores.values())) >= 0.945, scores
    assert np.mean(low_snr) >= 0.92, scores
    assert min(scores.values()) >= 0.9, scores


def test_onsets_on_the_clean_subset_land_within_100_ms() -> None:
    speech, segments = load_subset(24000)
    events = Vad(24000, prefix_padding_ms=0).process(mixed(speech, segments, "clean", 0))
    starts = np.array([e.audio_start_ms for e in events if e.type == "speech_started"])
    onsets_ms = segments[:, 0] * 1000 // 24000
    assert len(starts) == len(segments)
    assert np.all(np.abs(starts - onsets_ms) <= 100), starts - onsets_ms


# ---- accuracy on real recorded speech (Debian's alsa-utils recordings) -----------------------


def recorded_scene(rate: int) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The eight recordings back to back (1 s before the first, 1.5 s between), each at -26 dBFS
    over its words, resampled with soxr; the hand-checked word segments in samples."""
    pieces = [np.zeros(rate)]
    segments = []
    position = rate
    for name, words in vad_dataset.RECORDED_WORDS_MS.items():
        clip = soxr.resample(vad_dataset.read_recording(name), vad_dataset.RECORDED_RATE, rate).astype(np.float64)
        spans = [(a * rate // 1000, b * rate // 1000) for a, b in words]
        clip *= 10 ** (-26 / 20) / np.sqrt(np.mean(np.concatenate([clip[a:b] for a, b in spans]) ** 2))
        pieces += [clip, np.zeros(rate * 3 // 2)]
        segments += [(position + a, position + b) for a, b in spans]
        position += len(clip) + rate * 3 // 2
    return np.concatenate(pieces), np.array(segments, dtype=np.int64)


def test_recorded_word_labels_agree_with_the_40_db_rule() -> None:
    """Each hand-checked word boundary lies within 5 ms of the synthetic set's rule (first and
    last sample within 40 dB of the file's peak), applied to each word's side of the pause."""
    for name, ((onset1, offset1), (onset2, offset2)) in vad_dataset.RECORDED_WORDS_MS.items():
        x = vad_dataset.read_recording(name)
        loud = np.flatnonzero(np.abs(x) > 0.01 * np.abs(x).max()) * 1000 / vad_dataset.RECORDED_RATE
        middle = (offset1 + onset2) / 2
        first, second = loud[loud < middle], loud[loud >= middle]
        rule = (first[0], first[-1], second[0], second[-1])
        assert np.allclose(rule, (onset1, offset1, onset2, offset2), atol=5), (name, rule)
        # and the pause between the words is silence next to them (at least 30 dB down)
        pause = x[int(offset1 * 48) + 240 : int(onset2 * 48) - 240]
        words = np.concatenate([x[onset1 * 48 : offset1 * 48], x[onset2 * 48 : offset2 * 48]])
        assert np.mean(pause**2) < 1e-3 * np.mean(words**2), name


@pytest.mark.parametrize("rate", [16000, 24000])
def test_frame_f1_on_recorded_speech(rate: int) -> None:
    speech, segments = recorded_scene(rate)
    labels = frame_labels(len(speech), segments, rate)
    scores = {}
    for seed, condition in enumerate(["clean", "white 10 dB", "pink 10 dB", "white 0 dB"]):
        scores[condition] = f1_score(Vad(rate).classify(mixed(speech, segments, condition, seed)), labels)
    # Words 125-340 ms apart: every frame of hangover in those pauses counts against precision.
    assert min(scores.values()) >= 0.78, scores
    assert np.mean(list(scores.values())) >= 0.82, scores
