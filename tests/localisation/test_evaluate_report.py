"""`ausil locate-evaluate` on a hand-made log and segments file, then the report's table and figure."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest

from ausil_lib.cli import main
from ausil_lib.core.formats import write_annotations
from ausil_lib.localisation.segments import Segment, write_segments
from ausil_lib.report import tables as report

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
    assert m["tIoU"] == pytest.approx(0.5 * (0.5 * (7.5 / 8 + 8 / 8.5)))
    assert json.loads(example.read_text())["true"] == [Segment(5.0, 13.0, 4.0, 12.0).to_dict()]
    table = report.localisation_table(tmp_path)
    assert table.loc[("ausil", "test"), "R"] == 0.5 and list(table.index) == [("ausil", "test")]
    assert report.localisation_figure(tmp_path) is not None
    assert report.localisation_figure(tmp_path, benchmark="test_speed") is None
    assert report.localisation_table(tmp_path / "nothing").empty
