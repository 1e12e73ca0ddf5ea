"""The localisation report's per-query counts and bootstrap intervals, on hand-built segments."""

from __future__ import annotations

import numpy as np
import pytest

from ausil_lib.localisation.metrics import localisation_metrics
from ausil_lib.localisation.segments import Segment
from ausil_lib.report import localisation as loc
from ausil_lib.report import stats

T = Segment(0.0, 10.0, 0.0, 10.0)
# q0: one hit (IoU 0.5 * (5/10 + 5/10)) and a false detection; q1: one of two true pairs hit exactly;
# q2: true pair, no detection; q3: a detection of a query without truth (all false)
TRUTH = {"q0": {"a": [T]}, "q1": {"b": [T], "c": [T]}, "q2": {"d": [T]}}
DETECTED = {
    "q0": {"a": [Segment(0.0, 5.0, 0.0, 5.0), Segment(20.0, 30.0, 20.0, 30.0)]},
    "q1": {"b": [T]},
    "q3": {"x": [T]},
}


def test_query_counts_by_hand() -> None:
    counts = loc.query_counts(DETECTED, TRUTH)
    assert dict(zip(loc.COUNTS, counts.sum(axis=0))) == {
        "detections": 4,
        "correct": 2,
        "true": 4,
        "hits": 2,
        "iou": pytest.approx(1.5),
        "speed_error": 0.0,
    }
    assert counts.tolist()[2] == [0, 0, 1, 0, 0, 0]  # q2: true segments, no detection, still a query


def test_pooled_counts_equal_the_whole_set_metrics() -> None:
    whole = localisation_metrics(DETECTED, TRUTH)
    got = loc.pooled(loc.query_counts(DETECTED, TRUTH))
    assert got == pytest.approx({k: whole[k] for k in ("P", "R", "F1", "tIoU", "dspd")})
    assert (got["P"], got["R"], got["tIoU"]) == pytest.approx((0.5, 0.5, 1.5 / 4))
    intervals = loc.localisation_intervals(DETECTED, TRUTH)
    assert {k: i.estimate for k, i in intervals.items()} == pytest.approx(got)
    assert all(i.n == 4 and i.low <= i.estimate <= i.high for i in intervals.values())
    assert loc.localisation_intervals(DETECTED, TRUTH) == intervals  # seeded


def test_identical_queries_give_a_zero_width_interval() -> None:
    truth = {f"q{i}": {"v": [T]} for i in range(6)}
    detected = {q: {"v": [Segment(0.0, 5.0, 0.0, 5.0), Segment(20.0, 30.0, 20.0, 30.0)]} for q in truth}
    for key, value in {"P": 0.5, "R": 1.0, "F1": 2 / 3, "tIoU": 0.5, "dspd": 0.0}.items():
        got = loc.localisation_intervals(detected, truth)[key]
        assert (got.estimate, got.low, got.high) == pytest.approx((value, value, value))
    same = loc.f1_difference(detected, detected, truth)
    assert (same.estimate, same.low, same.high, same.n) == (0.0, 0.0, 0.0, 6) and not same.excludes_zero
    none = loc.f1_difference(detected, {}, truth)  # the other method detects nothing: F1 0 in every draw
    assert (none.estimate, none.low, none.high) == pytest.approx((2 / 3, 2 / 3, 2 / 3)) and none.excludes_zero


def test_paired_difference_resamples_the_same_queries() -> None:
    diff = loc.f1_difference(DETECTED, {"q1": {"b": [T]}}, TRUTH)  # b: only q1's hit, no false detection
    a, b = loc.pooled(loc.query_counts(DETECTED, TRUTH)), 2 * 1.0 * 0.25 / 1.25
    assert diff.n == 4 and diff.estimate == pytest.approx(a["F1"] - b)
    assert diff.low <= diff.estimate <= diff.high


def test_pooled_bootstrap_follows_the_map_convention() -> None:
    """A mean is a pooled ratio (sum / count): the same draws give the mAP interval."""
    ap = {f"q{i}": (i * 0.37) % 1 for i in range(12)}
    values = np.array([ap[q] for q in sorted(ap)])
    got = stats.bootstrap_pooled(np.c_[values, np.ones_like(values)], lambda s: s[:, 0] / s[:, 1])
    want = stats.bootstrap_map(ap)
    assert (got.estimate, got.low, got.high, got.n) == pytest.approx((want.estimate, want.low, want.high, want.n))
    assert stats.bootstrap_pooled(np.zeros((0, 2)), lambda s: s[:, 0]).n == 0


def test_speed_error_interval_by_hand() -> None:
    """Speed error = summed |detected / true - 1| over hits: q0 hits at 1.5 for 1 (0.5), q1 at 1 (0);
    q2 has no hit, so it adds nothing; a draw of q2 alone has no speed error and is left out."""
    truth = {"q0": {"a": [T]}, "q1": {"b": [T]}, "q2": {"c": [T]}}
    fast = Segment(0.0, 10.0, 0.0, 10.0 / 1.5, speed=1.5)
    got = loc.localisation_intervals({"q0": {"a": [fast]}, "q1": {"b": [T]}}, truth)["dspd"]
    assert got.estimate == pytest.approx(0.25) and got.n == 3
    assert (got.low, got.high) == pytest.approx((0.0, 0.5))  # 2.5 % / 97.5 % of draws: all q1 / all q0
    none = loc.localisation_intervals({}, truth)["dspd"]
    assert np.isnan(none.estimate) and np.isnan(none.low) and none.n == 3
