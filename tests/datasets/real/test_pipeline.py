"""Stage-level behaviour of the real-dataset pipeline that the end-to-end test does not reach: clear
errors for missing settings and out-of-order stages, and the dry-run budget's arithmetic."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ausil_lib.core.config import Params, parse_params
from ausil_lib.datasets.real import budget
from ausil_lib.datasets.real import pipeline as dp


def raw_params(tmp_path: Path) -> dict:
    return {
        "datasets": {
            "root": str(tmp_path / "real"),
            "speed_factors": [0.5, 2.0],
            "store_dtype": "float16",
            "youtube": {"sleep_s": 1.0, "rate_limit": "1M"},
            "svdx": {
                "kind": "svd",
                "annotation_files": [],
                "layout": {"groundtruth": "gt"},
                "time_step_ms": 125,
                "stats": {"videos": 1000, "queries": 10, "mean_duration_s": 20},
            },
        }
    }


def params(tmp_path: Path) -> Params:
    return parse_params(raw_params(tmp_path))


def test_unknown_dataset_and_kind(tmp_path: Path) -> None:
    with pytest.raises(dp.StageError, match=r"'nope' is not defined.*svdx"):
        dp.dataset_config(params(tmp_path), "nope")
    p = raw_params(tmp_path)
    p["datasets"]["odd"] = {"kind": "youtube8m"}
    with pytest.raises(ValueError, match="datasets.odd: kind is 'youtube8m'"):  # refused as params.yaml is read
        parse_params(p)


def test_missing_annotation_source_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(dp.StageError, match=r"datasets.svdx.annotation_files is empty"):
        dp.stage_annotations(params(tmp_path), "svdx", progress=False)
    p = raw_params(tmp_path)
    p["datasets"]["svdx"]["annotation_files"] = [{"url": None, "sha256": None}]
    with pytest.raises(dp.StageError, match=r"annotation_files\[0\].url is not set"):
        dp.stage_annotations(parse_params(p), "svdx", progress=False)


@pytest.mark.parametrize("stage, needs", [(dp.stage_videos, "annotations"), (dp.stage_benchmarks, "annotations")])
def test_stages_out_of_order_name_the_missing_step(tmp_path: Path, stage, needs: str) -> None:
    with pytest.raises(dp.StageError, match=f"ausil dataset {needs} --dataset svdx"):
        stage(params(tmp_path), "svdx", progress=False)


def test_budget_arithmetic(tmp_path: Path) -> None:
    p = params(tmp_path)
    cfg = p.datasets.named["svdx"]
    speed = {"machine": {"device": "cpu"}, "time_steps": {"125": {"end_to_end_s_per_100s": 2.0}}}
    pair = {"ms_per_pair": 1.0, "n_segments": 100, "device": "cpu"}
    b = budget.estimate("svdx", cfg, p, speed, pair)
    n_seg = budget.segments(20, 125)
    assert n_seg == 145  # (20 s - 2 s window) / 125 ms + 1
    assert b["disk_gb"]["features"] == round(1000 * n_seg * 2528 * 2 / 1e9, 1)  # float16 store
    assert b["time_h"]["extraction"] == round(1000 * 20 / 100 * 2.0 / 3600, 2)
    assert b["measured"]["pair_ms_scaled"] == round((n_seg / 100) ** 2, 4)  # cost grows with both sides
    assert b["pairs"] == 10 * 1000 * 2  # original and speed tasks
    assert b["time_h"]["download_at_rate_limit"] is None  # archives, not yt-dlp
    assert "svdx" in budget.render(b)
    cfg = replace(cfg, stats=replace(cfg.stats, mean_duration_s=None))
    with pytest.raises(ValueError, match="mean_duration_s"):
        budget.estimate("svdx", cfg, p, speed, pair)
