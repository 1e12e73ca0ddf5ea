"""scripts/cross_cpu_probe.py: the digests it prints are those of the pipeline's own steps, and the same
on a second run; a stored descriptor file of other numbers is reported as different."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ausil_lib.core.config import Params
from ausil_lib.features.extraction import Extractor, feature_path, load_features, save_features
from ausil_lib.models.backbone import state_digest
from ausil_lib.models.backbone_training import train_backbone

from ..helpers import chords
from . import load_script

_probe = partial(load_script, "cross_cpu_probe")


def test_train_probe_reports_the_stage_functions_steps(backbone_material, tmp_path: Path) -> None:
    params, sources, corpus, _ = backbone_material
    params = replace(params, backbone_training=replace(params.backbone_training, max_steps=2))
    first = _probe().train_probe(params, 2, sources, corpus, None, tmp_path / "a")
    assert first == _probe().train_probe(params, 2, sources, corpus, None, tmp_path / "b")
    meta = train_backbone(params, sources, corpus, tmp_path / "bb.pt", tmp_path / "curve.json", None, False)
    weights = torch.load(tmp_path / "bb.pt", map_location="cpu", weights_only=False)["state_dict"]
    assert first["steps"] == meta["steps"] == 2 and len(first["losses"]) == 2
    assert first["weights"] == state_digest(weights)[:16]


def test_features_probe_compares_with_the_stored_descriptors(make_media, tmp_path: Path) -> None:
    files = [str(make_media("clip_a.wav", chords(3.0, seed=1))), str(make_media("clip_b.ogg", chords(4.0, seed=2)))]
    params = replace(Params(), device="cpu")
    stored = tmp_path / "features"
    before = _probe().features_probe(params, "random", files, stored)
    assert set(before) == {"clip_a", "clip_b"} and all(v["equals_stored"] is None for v in before.values())
    extractor = Extractor.from_params(replace(params, backbone=replace(params.backbone, source="random")))
    for path in files:
        extractor.extract_to(Path(path).stem, path, stored / "random")
    after = _probe().features_probe(params, "random", files, stored)
    assert all(v["equals_stored"] for v in after.values())
    assert {k: v["descriptors"] for k, v in after.items()} == {k: v["descriptors"] for k, v in before.items()}
    other = load_features(feature_path(stored / "random", "clip_a"))
    save_features(feature_path(stored / "random", "clip_a"), other.descriptors + np.float32(1e-3), other.meta)
    assert _probe().features_probe(params, "random", files, stored)["clip_a"]["equals_stored"] is False
