"""The self-supervised backbone's training backbone_material: the train split, plus `backbone_sources` when asked."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ausil_lib.core.config import Params, plain
from ausil_lib.models.backbone import KumarCNN
from ausil_lib.models.backbone_training import train_backbone
from ausil_lib.models.optimizer import KIND, adam

from ..helpers import materialised_sources


def _train(params: Params, sources: Path, corpus: Path, extra: Path | None, out: Path) -> dict:
    return train_backbone(params, sources, corpus, out / "bb.pt", out / "curve.json", extra, progress=False)


@pytest.mark.parametrize("use_extra", [False, True])
def test_training_reads_the_train_split_and_the_extra_sources_only_when_asked(
    backbone_material, tmp_path, use_extra
) -> None:
    params, sources, corpus, extra = backbone_material
    params = replace(params, backbone_training=replace(params.backbone_training, extra_sources=use_extra))
    meta = _train(params, sources, corpus, extra, tmp_path)
    assert meta["recordings"] == ["album/one", "album/two"]  # never the test recording
    assert meta["extra_recordings"] == (["album/five", "album/four"] if use_extra else [])
    assert ("backbone_sources" in meta["objective"]) is use_extra


def test_extra_sources_without_their_folder_is_an_error(backbone_material, tmp_path) -> None:
    params, sources, corpus, _ = backbone_material
    params = replace(params, backbone_training=replace(params.backbone_training, extra_sources=True))
    with pytest.raises(ValueError, match="--extra-sources"):
        _train(params, sources, corpus, None, tmp_path)


def test_an_extra_recording_identical_to_a_corpus_source_is_refused_by_name(backbone_material, tmp_path) -> None:
    params, sources, corpus, _ = backbone_material
    shutil.copyfile(sources / "music" / "album" / "three.flac", tmp_path / "extra_in" / "album" / "copy.flac")
    extra = materialised_sources(tmp_path, "extra", {})  # four, five and the copy of the test recording
    params = replace(params, backbone_training=replace(params.backbone_training, extra_sources=True))
    with pytest.raises(ValueError, match=r"identical to corpus sources: album/copy = album/three"):
        _train(params, sources, corpus, extra, tmp_path)


@pytest.mark.parametrize("kind, resumed", [(KIND, True), ("adam", False), (None, False)])
def test_a_checkpoint_resumes_only_under_the_optimiser_that_wrote_it(
    backbone_material, tmp_path, kind, resumed
) -> None:
    """A run interrupted before the fused step (or under another optimiser) starts again instead of mixing."""
    params, sources, corpus, _ = backbone_material
    model = KumarCNN()
    state = {
        "model": model.state_dict(),
        "optimizer": adam(model.parameters(), 1e-3).state_dict(),
        "step": 1,
        "elapsed": 0.0,
        "curve": [{"step": 1, "loss": -1.0, "seconds": 0.0}],  # no real InfoNCE loss is negative
        "config": plain(params.backbone_training),
    }
    if kind is not None:
        state["optimizer_kind"] = kind
    torch.save(state, tmp_path / "bb.ckpt")
    meta = _train(params, sources, corpus, None, tmp_path)
    assert (meta["final_loss"] == -1.0) is resumed
    assert not (tmp_path / "bb.ckpt").exists()


def test_the_same_training_writes_the_same_file(backbone_material, tmp_path) -> None:
    """No wall time in the weights file: a retraining that changes no weight leaves DVC nothing to re-run."""
    params, sources, corpus, _ = backbone_material
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _train(params, sources, corpus, None, tmp_path / "a")
    _train(params, sources, corpus, None, tmp_path / "b")
    assert first["seconds"] >= 0  # the time is still reported, in the returned summary and the curve
    assert (tmp_path / "a" / "bb.pt").read_bytes() == (tmp_path / "b" / "bb.pt").read_bytes()
