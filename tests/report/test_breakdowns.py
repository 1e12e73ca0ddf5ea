"""Breakdowns from the construction log, on a tiny hand-made corpus whose numbers are worked out below."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ausil_lib.core.formats import atomic_write_json, write_annotations, write_ids, write_results, write_unavailable
from ausil_lib.report.breakdowns import (
    CASE,
    CONSTRUCTION_LOG,
    FACTOR,
    LENGTH,
    NOT_HARD,
    OTHERS_FIRST,
    breakdown,
    breakdown_table,
    hard_case_summary,
    plot_breakdown,
    read_construction_log,
)

BOUNDS = {"short": (8.0, 20.0), "long": (30.0, 60.0)}
RUN = "ausil-full-main"
OTHER = "dejavu"


def _clip(clip_id: str, role: str, case: str, query: str | None, length: float = 5.0) -> dict:
    return {
        "clip_id": clip_id,
        "role": role,
        "case": case,
        "query": query,
        "pieces": [{"rec": "r", "src_start": 100.0, "src_end": 100.0 + length}],
    }


def _corpus(root: Path) -> None:
    """q1 (10 s): p0 full, p1 transformed:telephone, p2 hard:loud_mix; q2 (40 s): p0 full, p1 transformed:room.
    test_speed: q1's copies at x0.5 and x2."""
    clips = [
        _clip("q1", "query", "query", None, 10.0),
        _clip("q2", "query", "query", None, 40.0),
        _clip("q1_p0", "positive", "full", "q1"),
        _clip("q1_p1", "positive", "transformed:telephone", "q1"),
        _clip("q1_p2", "positive", "hard:loud_mix", "q1"),
        _clip("q2_p0", "positive", "full", "q2"),
        _clip("q2_p1", "positive", "transformed:room", "q2"),
        _clip("d", "distractor", "distractor", None),
        _clip("q1_x0.5", "speed", "x0.5", "q1"),
        _clip("q1_x2", "speed", "x2", "q1"),
    ]
    atomic_write_json(root / CONSTRUCTION_LOG, {"recordings": {}, "clips": clips, "labels": {}})
    test = root / "data" / "corpus" / "test"
    write_annotations(
        test / "annotation.json",
        {"q1": {"DA": ["q1_p0", "q1_p1", "q1_p2"], "JUNK": []}, "q2": {"DA": ["q2_p0", "q2_p1"], "JUNK": []}},
    )
    write_ids(test / "dataset_ids.txt", ["q1", "q2", "q1_p0", "q1_p1", "q1_p2", "q2_p0", "q2_p1", "d"])
    write_results(
        root / "results" / RUN / "test.json",
        {
            "q1": {"q1_p0": 0.9, "d": 0.8, "q1_p1": 0.7, "q1_p2": 0.6, "q2_p0": 0.1},
            "q2": {"d": 0.9, "q2_p1": 0.8, "q2_p0": 0.7},
        },
    )
    speed = root / "data" / "corpus" / "test_speed"
    write_annotations(speed / "annotation.json", {"q1": {"DA": ["q1_x0.5", "q1_x2"], "JUNK": []}})
    write_ids(speed / "dataset_ids.txt", ["q1", "q1_x0.5", "q1_x2", "d"])
    write_results(root / "results" / RUN / "test_speed.json", {"q1": {"q1_x2": 0.9, "d": 0.8, "q1_x0.5": 0.7}})
    write_unavailable(root / "results" / OTHER / "test.json", "dejavu", "Dejavu", "not run here")


def _value(frame: pd.DataFrame, breakdown_name: str, group: str, column: str = "mAP") -> float:
    row = frame[(frame["breakdown"] == breakdown_name) & (frame["group"] == group)]
    assert len(row) == 1, (breakdown_name, group, frame)
    return row[column].iloc[0]


def test_log_gives_cases_and_query_lengths(tmp_path: Path) -> None:
    _corpus(tmp_path)
    log = read_construction_log(tmp_path / CONSTRUCTION_LOG)
    assert log.case_of["q1_p1"] == "transformed:telephone" and log.case_of["q1_x2"] == "x2"
    assert "d" not in log.case_of and "q1" not in log.case_of
    assert log.query_length_s == {"q1": pytest.approx(10.0), "q2": pytest.approx(40.0)}


def test_per_case_ap_keeps_only_that_case_relevant(tmp_path: Path) -> None:
    _corpus(tmp_path)
    frame = breakdown(tmp_path, "test", [RUN, OTHER], BOUNDS)
    assert set(frame["run"]) == {RUN}  # the unavailable run has no row
    # full: q1 -> p0 first (p1, p2 out) = 1; q2 -> d, p0 (p1 out) = 1/2
    assert _value(frame, CASE, "full") == pytest.approx(0.75)
    assert _value(frame, CASE, "full", "n queries") == 2
    # transformed (both presets): q1 -> d, p1 = 1/2 ; q2 -> d, p1 = 1/2
    assert _value(frame, CASE, "transformed") == pytest.approx(0.5)
    assert _value(frame, CASE, "transformed: telephone", "n queries") == 1  # q2 has no telephone copy
    # loud mix: q1 -> d .8, p2 .6 (p0, p1 out) = 1/2
    assert _value(frame, CASE, "loud mix (hard)") == pytest.approx(0.5)
    # short = q1 with all three relevant: ranks 1, 3, 4 -> (1 + 2/3 + 3/4) / 3
    assert _value(frame, LENGTH, "short (8-20 s)") == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    # long = q2: d, p1 (rank 2), p0 (rank 3) -> (1/2 + 2/3) / 2
    assert _value(frame, LENGTH, "long (30-60 s)") == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert not (frame["breakdown"] == FACTOR).any()
    # all but the hard cases: q1 -> p0, d, p1 (p2 out) = (1 + 2/3) / 2 ; q2 -> d, p1, p0 = (1/2 + 2/3) / 2
    assert _value(frame, CASE, NOT_HARD) == pytest.approx(((1 + 2 / 3) / 2 + (1 / 2 + 2 / 3) / 2) / 2)
    groups = list(frame["group"])
    assert groups.index("loud mix (hard)") < groups.index(NOT_HARD) < groups.index("short (8-20 s)")
    assert groups.index("full") < groups.index("transformed") < groups.index("loud mix (hard)")
    assert groups.index("loud mix (hard)") < groups.index("short (8-20 s)") < groups.index("long (30-60 s)")


def test_hard_case_summary_sets_the_gap_beside_the_full_map(tmp_path: Path) -> None:
    _corpus(tmp_path)
    table = hard_case_summary(tmp_path, "test", [RUN, OTHER])
    assert list(table["method"]) == ["AuSiL"]  # the unavailable run has no row
    row = table.iloc[0]
    # all: q1 ranks 1, 3, 4 of three ; q2 as above
    assert row["all duplicates"] == pytest.approx(((1 + 2 / 3 + 3 / 4) / 3 + (1 / 2 + 2 / 3) / 2) / 2)
    assert row[NOT_HARD] == pytest.approx(((1 + 2 / 3) / 2 + (1 / 2 + 2 / 3) / 2) / 2)
    assert row["hard cases only"] == pytest.approx(0.5)  # q1: d, p2 ; q2 has no hard case
    # others first: q1 -> p0, p1, d, p2 (ranks 1, 2, 4) ; q2 -> p1, p0
    assert row[OTHERS_FIRST] == pytest.approx(((1 + 1 + 3 / 4) / 3 + 1) / 2)
    assert row["n queries"] == 2
    assert hard_case_summary(tmp_path, "val", [RUN]).empty  # no such set


def test_speed_set_breaks_down_by_factor(tmp_path: Path) -> None:
    _corpus(tmp_path)
    frame = breakdown(tmp_path, "test_speed", [RUN], BOUNDS)
    # x2 first: 1 ; x0.5: x2 out of the ranking, d, x0.5 -> 1/2
    assert _value(frame, FACTOR, "x2") == pytest.approx(1.0)
    assert _value(frame, FACTOR, "x0.5") == pytest.approx(0.5)
    factors = list(frame.loc[frame["breakdown"] == FACTOR, "group"])
    assert factors == ["x0.5", "x2"]
    assert NOT_HARD not in set(frame["group"])  # speed copies are no positive case


def test_table_and_figure(tmp_path: Path) -> None:
    _corpus(tmp_path)
    frame = breakdown(tmp_path, "test", [RUN], BOUNDS)
    table = breakdown_table(frame)
    assert list(table.columns)[0] == "n queries"
    assert table.loc[(CASE, "full"), "n queries"] == 2
    assert len(table.columns) == 2  # n, one method
    fig = plot_breakdown(frame, "test")
    assert len(fig.axes[0].patches) == len(table.index)  # one bar per group and method


def test_absent_corpus_gives_empty_frames(tmp_path: Path) -> None:
    frame = breakdown(tmp_path, "test", [RUN], BOUNDS)
    assert frame.empty
    assert breakdown_table(frame).empty
    assert plot_breakdown(frame, "test").axes
