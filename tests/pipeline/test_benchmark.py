"""pipeline/benchmark.py: with a partner network, the speed measurement times it and counts it end to end."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ausil_lib.core.config import BackboneConfig, BenchmarkSpeedConfig, Params
from ausil_lib.models.tf_checkpoint import TFCheckpoint
from ausil_lib.pipeline.benchmark import run_speed_benchmark

from ..helpers import musicnn_tensors
from ..tf_bundle_writer import write_bundle


@pytest.mark.parametrize("partner", ["none", "MSD_vgg"])
def test_end_to_end_counts_every_network_the_extractor_runs(partner: str, tmp_path: Path, monkeypatch) -> None:
    prefix = tmp_path / "model"
    write_bundle(prefix, musicnn_tensors(np.random.default_rng(0)))
    monkeypatch.setattr("ausil_lib.models.musicnn.checkpoint", lambda model, cache: TFCheckpoint(prefix))
    params = replace(
        Params(),
        device="cpu",
        backbone=replace(BackboneConfig(), partner=partner),
        benchmark_speed=BenchmarkSpeedConfig(audio_seconds=5, repeats=1, time_steps_ms=(1000,)),
    )
    report = run_speed_benchmark(params)
    row = report["time_steps"]["1000"]
    parts = report["decode_s_per_100s"] + row["logmel_s_per_100s"] + row["backbone_s_per_100s"]
    if partner == "none":
        assert "partner" not in report and "partner_s_per_100s" not in row
    else:
        assert "musicnn MSD_vgg" in report["partner"]
        assert row["partner_s_per_100s"] > 0 and row["partner_decode_s_per_100s"] > 0
        parts += row["partner_decode_s_per_100s"] + row["partner_s_per_100s"]
    assert row["end_to_end_s_per_100s"] == pytest.approx(parts, rel=1e-9)
