"""scripts/selected_on_test.py: rows scored on test and test_speed as the pipeline scores them, after the choice."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ausil_lib.core.formats import write_annotations
from ausil_lib.core.labels import DA
from ausil_lib.features.extraction import feature_path, save_features
from ausil_lib.models.ausil import AuSiL
from ausil_lib.models.backbone import save_state
from ausil_lib.report import tables as report

from ..dvc_deps import ROOT
from . import load_script

SETS = ("test", "test_speed")
VIDEOS = ("q0", "q1", "d0", "d1", "d2")


def _unit(*hot: int, dims: int = 4) -> np.ndarray:
    v = np.zeros(dims, np.float32)
    v[list(hot)] = 1.0
    return v / np.linalg.norm(v)


def _features(folder: Path, worse: bool) -> None:
    """q0's duplicate d0 is its exact copy; q1's duplicate d1 is its copy, or (worse) only half-aligned with
    it while the distractor d2 is q1's copy: q1's AP drops from 1 to 1/2."""
    rows = {"q0": _unit(0), "q1": _unit(1), "d0": _unit(0), "d1": _unit(1), "d2": _unit(2)}
    if worse:
        rows |= {"d1": _unit(1, 3), "d2": _unit(1)}
    for v in VIDEOS:
        save_features(feature_path(folder, v), np.tile(rows[v], (3, 1)), {"video_id": v})


def _model(path: Path, dims: int) -> None:
    torch.manual_seed(0)
    save_state(path, AuSiL(dims=dims), {})  # identity whitening: mac_w ranks as mac does


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")  # scripts run from the repository root
    for set_name in SETS:
        bench = tmp_path / "data" / "corpus" / set_name
        bench.mkdir(parents=True)
        write_annotations(bench / "annotation.json", {"q0": {DA: ["d0"]}, "q1": {DA: ["d1"]}})
        (bench / "dataset_ids.txt").write_text("\n".join(VIDEOS) + "\n")
        for variant in ("mac", "mac_w", "full"):
            metrics = tmp_path / "metrics" / f"ausil-{variant}-main" / f"{set_name}.json"
            metrics.parent.mkdir(parents=True, exist_ok=True)
            metrics.write_text(json.dumps({"mAP": 0.5}))
    _features(tmp_path / "features" / "main", worse=False)
    _features(tmp_path / "worse", worse=True)
    (tmp_path / "models").mkdir()
    _model(tmp_path / "models" / "ausil_main.pt", 4)
    _model(tmp_path / "wide.pt", 6)
    for v in VIDEOS:
        save_features(feature_path(tmp_path / "second", v), np.tile(_unit(0, dims=2), (3, 1)), {"video_id": v})
    return tmp_path


def _run(monkeypatch: pytest.MonkeyPatch, *args: str) -> dict:
    monkeypatch.setattr(sys, "argv", ["selected_on_test.py", *args])
    load_script("selected_on_test").main()
    return json.loads(Path("reports/ablations/selected_on_test.json").read_text())


def test_rows_get_hand_computed_ap_intervals_and_the_paired_difference(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _run(
        monkeypatch,
        *("--row", "default", "features/main", "models/ausil_main.pt"),
        *("--row", "worse", "worse", "models/ausil_main.pt"),
    )
    for set_name in SETS:
        for variant in ("mac", "mac_w"):
            good, worse = out["default"]["sets"][set_name][variant], out["worse"]["sets"][set_name][variant]
            assert good["ap"] == {"q0": 1.0, "q1": 1.0} and good["mAP"] == 1.0
            assert worse["ap"] == {"q0": 1.0, "q1": 0.5} and worse["mAP"] == 0.75
    # the pipeline's own features and model are checked against the committed metrics, the others not
    assert out["default"]["pipeline_check"]["test/mac"] == {"here": 1.0, "committed": 0.5}
    assert "pipeline_check" not in out["worse"]
    assert out["default"]["hard_cases"] == {}  # no construction log in this corpus
    # the notebook's table: two queries, so every resample's mAP is 0.5, 0.75 or 1
    table = report.selected_on_test_table(project).set_index(["descriptors", "similarity"])
    worse = table.loc[("worse", "MAC + W")]
    assert (worse["test mAP"], worse["test 95 % CI"]) == (0.75, "0.500–1.000")
    assert worse["test_speed, − pipeline's row"] == "-0.250 (-0.500 to +0.000)"
    assert table.loc[("default", "AuSiL"), "test, − pipeline's row"] == ""


def test_a_second_backbone_is_joined_beside_and_rows_are_merged_by_name(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(monkeypatch, "--row", "default", "features/main", "models/ausil_main.pt")
    out = _run(
        monkeypatch,
        *("--row", "both", "features/main", "wide.pt"),
        *("--beside", "both", "second"),
    )
    assert set(out) == {"default", "both"}  # the earlier row is kept
    # a constant second half lifts every cosine alike: the ranking, and so the AP, is the first half's
    assert out["both"]["sets"]["test"]["mac"]["ap"] == {"q0": 1.0, "q1": 1.0}
    assert out["both"]["beside"] == "second" and "pipeline_check" not in out["both"]


def test_a_video_without_descriptors_is_named(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    feature_path(project / "second", "d2").unlink()
    with pytest.raises(SystemExit, match=r"second: no descriptors for 1 videos .* e\.g\. d2"):
        _run(monkeypatch, "--row", "both", "features/main", "wide.pt", "--beside", "both", "second")
    feature_path(project / "worse", "d1").unlink()
    with pytest.raises(SystemExit, match=r"worse: no descriptors for 1 test videos, e\.g\. d1"):
        _run(monkeypatch, "--row", "worse", "worse", "models/ausil_main.pt")
