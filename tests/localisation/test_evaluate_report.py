"""`ausil locate-evaluate` on a hand-made log and segments file, then the report's table and figure."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

from ausil_lib.cli import main
from ausil_lib.core.formats import write_annotations
from ausil_lib.localisation.segments import Segment, write_segments
from ausil_lib.report import localisation as report

from .test_truth_metrics import EMBEDDED, QUERY, SPEED

matplotlib.use("Agg")


def test_locate_evaluate_and_report(tmp_path: Path) -> None:
    (tmp_path / "log.json").write_text(json.dumps({"clips": [QUERY, EMBEDDED, SPEED]}))
    write_annotations(tmp_path / "ann.json", {"q": {"DA": ["e", "s"]}})
    write_segments(tmp_path / "seg.json", {"q": {"e": [Segment(5.5, 13.0, 4.0, 12.5)], "s": []}})
    example = tmp_path / "results" / "localisation" / "ausil" / "test.example.json"
    example.parent.mkdir(parents=True)
    example.write_text(
        json.dumps(
            {"query": "q", "video": "e", "step_s": 0.25, "window_s": 2.0, "query_s": 20.0, "video_s": 18.0}
            | {"similarity": [[0.0] * 6] * 4, "detected": [Segment(5.5, 13.0, 4.0, 12.5).to_dict()], "true": []}
        )
    )
    metrics = tmp_path / "metrics" / "localisation" / "ausil" / "test.json"
    argv = ["locate-evaluate", "--segments", str(tmp_path / "seg.json"), "--log", str(tmp_path / "log.json")]
    argv += ["--annotations", str(tmp_path / "ann.json"), "--metrics", str(metrics), "--example", str(example)]
    assert main(argv) == 0
    m = json.loads(metrics.read_text())
    assert (m["P"], m["R"], m["n"]) == (1.0, 0.5, 2)
    # the embedded pair: query IoU 7.5/8, video IoU 8/8.5; the missed speed copy counts 0
    assert m["tIoU"] == 0.47  # 0.5 * (0.5 * (7.5 / 8 + 8 / 8.5)) = 0.4697, at the metrics files' 3 decimals
    assert json.loads(example.read_text())["true"] == [Segment(5.0, 13.0, 4.0, 12.0).to_dict()]
    table = report.localisation_table(tmp_path)
    assert table.loc[("ausil", "test"), "R"] == 0.5 and list(table.index) == [("ausil", "test")]
    assert report.localisation_figure(tmp_path) is not None
    assert report.localisation_figure(tmp_path, benchmark="test_speed") is None
    assert report.localisation_table(tmp_path / "nothing").empty
    # no segments file nor corpus under root: the interval columns hold <NA>, the table still works
    assert table.loc[("ausil", "test"), "F1 95 % CI"] is pd.NA and report.localisation_comparison(tmp_path).empty


def test_report_intervals_and_comparison(tmp_path: Path) -> None:
    """The pipeline's paths: one query, so every draw is the same and the intervals have zero width."""
    corpus = tmp_path / "data" / "corpus"
    (corpus / "test").mkdir(parents=True)
    (corpus / "construction_log.json").write_text(json.dumps({"clips": [QUERY, EMBEDDED, SPEED]}))
    write_annotations(corpus / "test" / "annotation.json", {"q": {"DA": ["e", "s"]}})
    results = tmp_path / "results" / "localisation"
    (results / "ausil").mkdir(parents=True)
    (results / "dejavu").mkdir()
    write_segments(results / "ausil" / "test.json", {"q": {"e": [Segment(5.5, 13.0, 4.0, 12.5)]}})
    write_segments(results / "dejavu" / "test.json", {"q": {"e": [Segment(30.0, 40.0, 30.0, 40.0)]}})
    for method in ("ausil", "dejavu"):
        argv = ["locate-evaluate", "--segments", str(results / method / "test.json")]
        argv += ["--log", str(corpus / "construction_log.json")]
        argv += ["--annotations", str(corpus / "test" / "annotation.json")]
        assert main([*argv, "--metrics", str(tmp_path / "metrics" / "localisation" / method / "test.json")]) == 0
    table = report.localisation_table(tmp_path)
    f1, iou = 2 * 0.5 / 1.5, 0.5 * (0.5 * (7.5 / 8 + 8 / 8.5))  # P 1, R 0.5; the speed copy missed
    assert table.loc[("ausil", "test"), "F1"] == 0.667  # f1 = 2/3, as the metrics file holds it
    assert table.loc[("ausil", "test"), "F1 95 % CI"] == f"{f1:.3f}–{f1:.3f}"
    assert table.loc[("ausil", "test"), "mean IoU 95 % CI"] == f"{iou:.3f}–{iou:.3f}"
    assert table.loc[("dejavu", "test"), "F1 95 % CI"] == "0.000–0.000" and table["queries"].tolist() == [1, 1]
    comparison = report.localisation_comparison(tmp_path)
    assert comparison[["set", "a", "b", "queries", "verdict"]].values.tolist() == [
        ["test", "AuSiL", "Dejavu", 1, "AuSiL better"]
    ]
    assert comparison["F1(a) − F1(b)"].tolist() == pytest.approx([f1])
    (finding,) = report.localisation_findings(tmp_path)
    assert finding.startswith("On test (localisation F1), AuSiL beats Dejavu by 0.67")
    # per true speed: the embedded piece (speed 1) hit by AuSiL only, the x1.5 copy missed by both
    breakdown = report.speed_breakdown(tmp_path, "test")
    assert breakdown.index.tolist() == [1.0, 1.5] and breakdown["true segments"].tolist() == [1, 1]
    assert breakdown[("AuSiL", "R")].tolist() == [1.0, 0.0] and breakdown[("Dejavu", "R")].tolist() == [0.0, 0.0]
    assert breakdown[("AuSiL", "speed error")].iloc[0] == 0.0 and pd.isna(breakdown[("AuSiL", "speed error")].iloc[1])
    assert report.speed_breakdown(tmp_path / "nothing").empty
