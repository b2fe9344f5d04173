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
