"""Bootstrap intervals on hand-made AP vectors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ausil_lib.report import stats


def test_interval_contains_the_mean_and_is_seeded() -> None:
    ap = {"q0": 1.0, "q1": 0.5, "q2": 0.0, "q3": 0.5}
    got = stats.bootstrap_map(ap)
    assert got.estimate == pytest.approx(0.5) and got.n == 4
    assert 0.0 <= got.low < 0.5 < got.high <= 1.0
    assert stats.bootstrap_map(ap) == got  # same seed, same interval
    many = {f"q{i}": (i * 0.37) % 1 for i in range(10)}
    assert stats.bootstrap_map(many, 1, 200) != stats.bootstrap_map(many, 2, 200)


def test_interval_degenerate_when_all_equal() -> None:
    got = stats.bootstrap_map({f"q{i}": 0.25 for i in range(5)})
    assert (got.estimate, got.low, got.high) == (0.25, 0.25, 0.25)
    assert got.excludes_zero


def test_paired_difference_uses_common_queries() -> None:
    a = {"q0": 1.0, "q1": 0.5, "q2": 0.2}
    same = stats.paired_difference(a, dict(a))
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0) and not same.excludes_zero
    # b is a minus 0.1 on every common query, plus a query a lacks: the difference is exactly 0.1
    b = {"q0": 0.9, "q1": 0.4, "q2": 0.1, "q9": 0.0}
    shift = stats.paired_difference(a, b)
    assert shift.n == 3
    assert shift.estimate == pytest.approx(0.1) and shift.low == pytest.approx(0.1) and shift.high == pytest.approx(0.1)
    assert shift.excludes_zero
    assert stats.paired_difference(b, a).high == pytest.approx(-0.1)


def test_missing_input_gives_nan() -> None:
    for got in (stats.bootstrap_map(None), stats.paired_difference({"q0": 1.0}, None)):
        assert math.isnan(got.estimate) and got.n == 0 and not got.excludes_zero
        assert str(got) == "n/a"


def test_load_ap(tmp_path: Path) -> None:
    path = tmp_path / "results" / "run" / "test.ap.json"
    path.parent.mkdir(parents=True)
    queries = {"q0": {"ap": 1.0, "hit@1": True, "hit@10": True}, "q1": {"ap": 0.5, "hit@1": False, "hit@10": True}}
    path.write_text(json.dumps({"queries": queries}), encoding="utf-8")
    assert stats.load_ap(tmp_path, "run", "test") == {"q0": 1.0, "q1": 0.5}
    assert stats.map_interval(tmp_path, "run", "test").estimate == pytest.approx(0.75)
    assert stats.load_ap(tmp_path, "run", "test_speed") is None
    path.write_text(json.dumps({"queries": {}, "note": "not fetched"}), encoding="utf-8")
    assert stats.load_ap(tmp_path, "run", "test") is None
