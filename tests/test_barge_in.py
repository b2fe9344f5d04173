"""The barge-in module's pure parts, without I/O: the remote player's reports, where a cut
goes, and the policy's state machine (issue 22)."""

from __future__ import annotations

import math
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtalk._barge_in import BargeInPolicy, Decision, PlaybackReports, resolve_cut


# ---- remote playback reports ----


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.floats(0, 5000)), max_size=40))
def test_reports_keep_the_furthest_position_per_item_and_count_refusals(
    reports_in: list[tuple[str, float]]
) -> None:
    reports = PlaybackReports()
    furthest: dict[str, float] = {}
    refused = 0
    for item_id, played_ms in reports_in:
        backwards = played_ms < furthest.get(item_id, -1.0)
        assert reports.report(item_id, played_ms) is not backwards
        if backwards:
            refused += 1
        else:
            furthest[item_id] = played_ms
            assert reports.last_item_id == item_id
    assert reports.refused == refused
    for item_id in ("a", "b", "unknown"):
        assert reports.played_ms(item_id) == furthest.get(item_id, 0)


@pytest.mark.parametrize(("item_id", "played_ms", "content_index", "message"), [
    ("", 10, 0, "item_id"),
    (None, 10, 0, "item_id"),
    (7, 10, 0, "item_id"),
    ("a", -1, 0, "played_ms"),
    ("a", math.nan, 0, "played_ms"),
    ("a", math.inf, 0, "played_ms"),
    ("a", "10", 0, "played_ms"),
    ("a", True, 0, "played_ms"),
    ("a", 10, -1, "content_index"),
    ("a", 10, 1.5, "content_index"),
])
def test_bad_reports_are_clear_errors_and_change_nothing(
    item_id: object, played_ms: object, content_index: object, message: str
) -> None:
    reports = PlaybackReports()
    reports.report("a", 5)
    with pytest.raises(ValueError, match=message):
        reports.report(item_id, played_ms, content_index)  # type: ignore[arg-type]
    assert (reports.last_item_id, reports.played_ms("a"), reports.refused) == ("a", 5, 0)


def test_reports_remember_a_bounded_number_of_items() -> None:
    reports = PlaybackReports()
    for n in range(100):
        reports.report(f"item_{n}", n + 1)
    assert reports.played_ms("item_99") == 100 and reports.played_ms("item_0") == 0
    assert len(reports._played_ms) == 64


def test_reports_from_many_threads_end_at_the_furthest_position() -> None:
    reports = PlaybackReports()

    def player(item_id: str) -> None:
        for ms in range(0, 2000, 20):
            reports.report(item_id, ms, 1)

    threads = [threading.Thread(target=player, args=(f"item_{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [reports.played_ms(f"item_{n}") for n in range(4)] == [1980] * 4
    assert reports.refused == 0 and reports.last_content_index == 1


# ---- where the cut goes ----


def test_resolve_cut_local_remote_and_explicit() -> None:
    heard = ("local", 0, 437)
    # Local playback: what the buffer heard, unless a position is given.
    assert resolve_cut(heard, None, None, None) == heard
    assert resolve_cut(None, None, None, None) is None
    assert resolve_cut(heard, None, None, 120.5) == ("local", 0, 120.5)
    assert resolve_cut(heard, None, "other", 80) == ("other", 0, 80)
    assert resolve_cut(heard, None, "other", None) == ("other", 0, 0)
    assert resolve_cut(None, None, None, 50) is None  # no item to cut
    # Remote playback: the last report, capped later by the client.
    reports = PlaybackReports()
    assert resolve_cut(None, reports, None, None) is None
    reports.report("item_a", 300, 1)
    reports.report("item_b", 200)
    reports.report("item_a", 310, 1)
    assert resolve_cut(None, reports, None, None) == ("item_a", 1, 310)
    assert resolve_cut(None, reports, "item_b", None) == ("item_b", 0, 200)
    assert resolve_cut(None, reports, None, 250) == ("item_a", 1, 250)


# ---- the policy and its state machine ----


def test_policy_checks_its_fields() -> None:
    assert BargeInPolicy().immediate
    assert not BargeInPolicy(min_speech_ms=1).immediate
    assert not BargeInPolicy(pause_then_decide=True).immediate
    for bad, field in (({"min_speech_ms": -1}, "min_speech_ms"),
                       ({"min_speech_ms": 1.5}, "min_speech_ms"),
                       ({"min_speech_ms": True}, "min_speech_ms"),
                       ({"false_interruption_timeout_s": math.nan}, "timeout"),
                       ({"false_interruption_timeout_s": "2"}, "timeout"),
                       ({"min_speech_ms": 3000, "false_interruption_timeout_s": 2.0},
                        "at least min_speech_ms")):
        with pytest.raises(ValueError, match=field):
            BargeInPolicy(**bad)  # type: ignore[arg-type]


def test_the_default_policy_cuts_at_once() -> None:
    decision = Decision(BargeInPolicy())
    assert decision.speech_started(0.0) == "cut"
    assert not decision.deciding and decision.deadline is None
    assert decision.speech_stopped(0.05, 10) is None
    assert decision.false_interruptions == 0


def test_min_speech_without_pause_lets_a_cough_by_and_cuts_long_speech() -> None:
    decision = Decision(BargeInPolicy(min_speech_ms=300, false_interruption_timeout_s=1.0))
    assert decision.speech_started(10.0) is None  # playback goes on while deciding
    assert decision.deadline == pytest.approx(10.3)
    assert decision.speech_stopped(10.2, speech_ms=120) is None  # a cough: nothing to resume
    assert decision.false_interruptions == 1 and not decision.deciding
    # Speech that goes on past the minimum is cut when the timer sees it...
    assert decision.speech_started(20.0) is None
    assert decision.tick(20.29) is None
    assert decision.tick(20.3) == "cut"
    # ... and speech that stops past the minimum is cut when it stops.
    assert decision.speech_started(30.0) is None
    assert decision.speech_stopped(30.1, speech_ms=450) == "cut"
    assert decision.false_interruptions == 1


def test_pause_then_decide_resumes_after_a_cough_and_cuts_real_speech() -> None:
    decision = Decision(BargeInPolicy(min_speech_ms=300, pause_then_decide=True))
    assert decision.speech_started(0.0) == "pause" and decision.paused
    assert decision.speech_started(0.1) is None  # one decision at a time
    assert decision.speech_stopped(0.2, speech_ms=210) == "resume"
    assert not decision.paused and decision.false_interruptions == 1
    assert decision.speech_started(1.0) == "pause"
    assert decision.speech_stopped(1.5, speech_ms=480) == "cut"
    assert not decision.paused and not decision.deciding
    # Without a measured length, the time since the start counts.
    assert decision.speech_started(2.0) == "pause"
    assert decision.speech_stopped(2.1) == "resume"


def test_a_paused_decision_waits_for_the_transcript() -> None:
    policy = BargeInPolicy(min_speech_ms=200, pause_then_decide=True,
                           false_interruption_timeout_s=1.5)
    decision = Decision(policy)
    assert decision.speech_started(0.0, "item_u1", await_transcript=True) == "pause"
    assert decision.tick(0.25) is None  # long enough, but the words decide
    assert decision.deadline == pytest.approx(1.5)
    assert decision.speech_stopped(0.6, speech_ms=400) is None
    assert decision.transcript("item_other", "") is None  # another turn's
    assert decision.transcript("item_u1", "  ") == "resume"  # nobody said anything
    assert decision.speech_started(5.0, "item_u2", await_transcript=True) == "pause"
    assert decision.speech_stopped(5.5, speech_ms=400) is None
    assert decision.transcript("item_u2", "wait, stop") == "cut"
    # No transcript within the timeout: long enough speech is a real interruption.
    assert decision.speech_started(9.0, "item_u3", await_transcript=True) == "pause"
    assert decision.speech_stopped(9.5, speech_ms=400) is None
    assert decision.tick(10.49) is None
    assert decision.tick(10.5) == "cut"
    # The transcript wait needs a pause: without one, the length alone decides.
    decision = Decision(BargeInPolicy(min_speech_ms=200))
    assert decision.speech_started(0.0, "item_u1", await_transcript=True) is None
    assert decision.tick(0.2) == "cut"


def test_reset_ends_a_pending_decision() -> None:
    decision = Decision(BargeInPolicy(pause_then_decide=True, min_speech_ms=100))
    assert decision.speech_started(0.0) == "pause"
    decision.reset()
    assert not decision.deciding and not decision.paused and decision.deadline is None
    assert decision.tick(5.0) is None and decision.speech_stopped(5.0, 10) is None


events = st.lists(st.one_of(
    st.tuples(st.just("start"), st.floats(0, 1)),
    st.tuples(st.just("stop"), st.floats(0, 1)),
    st.tuples(st.just("transcript"), st.sampled_from(["", "hello"])),
    st.tuples(st.just("tick"), st.floats(0, 3)),
    st.tuples(st.just("reset"), st.just(0)),
), max_size=40)


@given(st.integers(0, 500), st.booleans(), st.booleans(), events)
def test_every_pause_ends_in_one_resume_or_one_cut(
    min_speech_ms: int, pause: bool, transcribing: bool, inputs: list[tuple[str, object]]
) -> None:
    """The oracle: a player told ``pause`` is told exactly one of ``resume``/``cut`` before
    the next ``pause`` (or the owner resets), and is never told to resume unpaused."""
    decision = Decision(BargeInPolicy(min_speech_ms=min_speech_ms, pause_then_decide=pause,
                                      false_interruption_timeout_s=1.0))
    now, paused = 0.0, False
    for kind, value in inputs:
        if kind == "start":
            now += float(value)  # type: ignore[arg-type]
            action = decision.speech_started(now, "item", await_transcript=transcribing)
        elif kind == "stop":
            now += float(value)  # type: ignore[arg-type]
            action = decision.speech_stopped(now)
        elif kind == "transcript":
            action = decision.transcript("item", str(value))
        elif kind == "tick":
            now += float(value)  # type: ignore[arg-type]
            action = decision.tick(now)
        else:
            decision.reset()
            action, paused = None, False
        if action == "pause":
            assert pause and not paused
            paused = True
        elif action in ("resume", "cut"):
            if action == "resume":
                assert paused
            paused = False
        assert decision.paused == paused
        assert (decision.deadline is None) == (not decision.deciding)
        if not decision.deciding:
            assert not paused


def test_the_stop_lag_keeps_the_timer_from_cutting_a_cough_whose_stop_is_late() -> None:
    """A detector reports a stop only after its silence duration: a 120 ms cough's stop comes
    ~620 ms after its start with 500 ms of silence duration, past a 300 ms minimum."""
    policy = BargeInPolicy(min_speech_ms=300, pause_then_decide=True)
    decision = Decision(policy)
    assert decision.speech_started(0.0, stop_lag_s=0.5) == "pause"
    assert decision.deadline == pytest.approx(0.8)
    assert decision.tick(0.4) is None and decision.tick(0.79) is None
    assert decision.speech_stopped(0.62, speech_ms=120) == "resume"
    # Speech still going when no stop can be pending any more is long enough.
    assert decision.speech_started(5.0, stop_lag_s=0.5) == "pause"
    assert decision.tick(5.8) == "cut"
    # The timeout never comes before the length is known.
    decision = Decision(BargeInPolicy(min_speech_ms=300, pause_then_decide=True,
                                      false_interruption_timeout_s=0.5))
    assert decision.speech_started(0.0, "u", await_transcript=True, stop_lag_s=0.5) == "pause"
    assert decision.tick(0.5) is None
    assert decision.tick(0.8) == "cut"
