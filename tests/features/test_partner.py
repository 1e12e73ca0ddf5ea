"""A partner network beside the backbone (params backbone.partner): joined descriptors of the same windows,
an identity of their own, bad files reported, and the paths that cannot run it refuse it by name."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ausil_lib.core.config import BackboneConfig, Params
from ausil_lib.features.bulk import extract_to_store
from ausil_lib.features.extraction import (
    Extractor,
    feature_path,
    is_current,
    load_features,
    partner_from_params,
)
from ausil_lib.features.logmel import FeatureConfig
from ausil_lib.features.store import FeatureStore
from ausil_lib.models.backbone import BackboneInfo, KumarCNN, MacExtractor
from ausil_lib.models.musicnn import Partner, describe
from ausil_lib.models.tf_checkpoint import TFCheckpoint

from ..helpers import MUSICNN_TEST_CHANNELS, encode_clips, musicnn_tensors
from ..tf_bundle_writer import write_bundle

BACKBONE_WIDTH = 2528
PARTNER_WIDTH = 5 * MUSICNN_TEST_CHANNELS
CLIPS = {"a": ("a.mp4", 3.5), "b": ("b.ogg", 6.0)}


@pytest.fixture(scope="module")
def partner(tmp_path_factory: pytest.TempPathFactory) -> Partner:
    prefix = tmp_path_factory.mktemp("musicnn") / "model"
    write_bundle(prefix, musicnn_tensors(np.random.default_rng(1)))
    cfg = FeatureConfig()
    return Partner("MSD_vgg", TFCheckpoint(prefix), cfg.window_s, cfg.time_step_ms / 1000)


def _extractor(partner: Partner | None) -> Extractor:
    torch.manual_seed(0)
    info = BackboneInfo("random", "UNTRAINED test backbone", "random-test")
    return Extractor(MacExtractor(KumarCNN(), "cpu"), info, FeatureConfig(), partner=partner)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return encode_clips(tmp_path_factory.mktemp("media"), CLIPS)


def test_joined_rows_are_both_networks_halves_of_the_same_windows(partner: Partner, media: dict[str, str], tmp_path):
    alone = _extractor(None)
    joined = _extractor(partner)
    for vid, path in media.items():
        first = alone.extract_to(vid, path, tmp_path / "alone")
        both = joined.extract_to(vid, path, tmp_path / "joined")
        second = describe(partner.net, partner.segments, partner.decode(path))
        n = min(len(first), len(second))
        assert both.shape == (n, BACKBONE_WIDTH + PARTNER_WIDTH)
        assert abs(len(first) - len(second)) <= 3  # the released padding's trailing windows, at most
        left, right = both[:, :BACKBONE_WIDTH], both[:, BACKBONE_WIDTH:]
        np.testing.assert_allclose(np.linalg.norm(left, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(right, axis=1), 1.0, atol=1e-5)
        # each half is its own network's descriptor of the segment, rescaled
        np.testing.assert_allclose(left, first[:n] / np.linalg.norm(first[:n], axis=1, keepdims=True), atol=1e-5)
        np.testing.assert_allclose(right, second[:n] / np.linalg.norm(second[:n], axis=1, keepdims=True), atol=1e-5)


def test_joined_descriptors_have_an_identity_of_their_own(partner: Partner, media: dict[str, str], tmp_path):
    alone, joined = _extractor(None), _extractor(partner)
    assert joined.backbone.source == alone.backbone.source  # a control stays labelled a control
    assert "musicnn MSD_vgg" in joined.backbone.label and alone.backbone.label in joined.backbone.label
    assert joined.signature["backbone"] != alone.signature["backbone"]
    vid, path = next(iter(media.items()))
    alone.extract_to(vid, path, tmp_path)
    stored = feature_path(tmp_path, vid)
    assert is_current(stored, alone.signature) and not is_current(stored, joined.signature)
    report = joined.run({vid: path}, tmp_path, progress=False)
    assert report.extracted == [vid]  # the backbone's file was not taken for the joined one
    assert load_features(stored).descriptors.shape[1] == BACKBONE_WIDTH + PARTNER_WIDTH
    assert not is_current(stored, alone.signature)


def test_a_bad_file_is_reported_and_the_others_are_joined(partner: Partner, media: dict[str, str], tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a media file at all")
    report = _extractor(partner).run({**media, "broken": str(broken)}, tmp_path / "out", progress=False)
    assert sorted(report.extracted) == sorted(media)
    assert list(report.failed) == ["broken"] and str(broken) in report.failed["broken"][0]


@pytest.mark.parametrize("failure", ["segment count", "network error"])
def test_a_file_the_partner_cannot_describe_is_reported_and_the_others_are_joined(
    partner: Partner, media: dict[str, str], tmp_path, monkeypatch, failure: str
):
    """Failures after decoding (the two networks' windows cannot be joined, or musicnn fails on the
    file) are reported by file like a bad decode, and the run goes on."""
    describe_all = partner.describe
    long_clip = int(CLIPS["b"][1] * 16000) - 1000  # samples: only clip b (6 s at 16 kHz) is this long

    def failing(audio: np.ndarray) -> np.ndarray:
        if audio.size < long_clip:
            return describe_all(audio)
        if failure == "network error":
            raise RuntimeError("musicnn failed on this clip")
        return describe_all(audio)[:1]  # one window where the backbone has several

    monkeypatch.setattr(partner, "describe", failing)
    out = tmp_path / "out"
    report = _extractor(partner).run(media, out, progress=False)
    assert report.extracted == ["a"] and list(report.failed) == ["b"]
    reason = report.failed["b"][1]
    assert ("musicnn failed" in reason) if failure == "network error" else ("b: " in reason and "segments" in reason)
    assert is_current(feature_path(out, "a"), _extractor(partner).signature)
    assert not feature_path(out, "b").exists()
    assert "b\t" in (out / "failures.tsv").read_text()


def test_the_sharded_store_refuses_a_partner_by_name(partner: Partner, media: dict[str, str], tmp_path):
    joined = _extractor(partner)
    with FeatureStore(tmp_path / "store", joined.signature) as store:
        with pytest.raises(ValueError, match="backbone.partner.*MSD_vgg"):
            extract_to_store(joined, media, store, workers=0, progress=False)


def test_params_name_the_partner() -> None:
    assert partner_from_params(Params(), FeatureConfig(), torch.device("cpu")) is None
    with pytest.raises(ValueError, match="backbone.partner.*'VGGish'"):
        BackboneConfig(partner="VGGish")
    assert replace(BackboneConfig(), partner="MTT_vgg").partner == "MTT_vgg"


def test_partner_checkpoint_comes_from_its_cache(tmp_path: Path, monkeypatch) -> None:
    """partner_from_params builds musicnn's network from backbone.partner_cache, cut at the extractor's step."""
    prefix = tmp_path / "model"
    write_bundle(prefix, musicnn_tensors(np.random.default_rng(2)))
    seen = []

    def fake_checkpoint(model: str, cache: Path) -> TFCheckpoint:
        seen.append((model, cache))
        return TFCheckpoint(prefix)

    monkeypatch.setattr("ausil_lib.models.musicnn.checkpoint", fake_checkpoint)
    params = replace(Params(), backbone=replace(BackboneConfig(), partner="MTT_vgg", partner_cache=str(tmp_path / "c")))
    built = partner_from_params(params, FeatureConfig(time_step_ms=500), torch.device("cpu"))
    assert built is not None and built.model == "MTT_vgg"
    assert seen == [("MTT_vgg", tmp_path / "c")]
    assert built.segments.step == round(0.5 * 16000)  # the extractor's time step, not the default's
