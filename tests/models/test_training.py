"""Triplet mining, training on a tiny set, and retrieval of a transformed copy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ausil_lib.audio.transforms import apply_chain
from ausil_lib.core.config import Params, parse_params
from ausil_lib.features.extraction import Extractor, Prepared
from ausil_lib.features.logmel import FeatureConfig
from ausil_lib.models.ausil import AuSiL, SimilarityCNN, learn_pca, triplet_loss
from ausil_lib.models.backbone import BackboneInfo, KumarCNN, MacExtractor
from ausil_lib.models.training import global_vectors, mine_triplets
from ausil_lib.retrieval.runner import AusilMethod, ausil_scores, run_similarity

from ..helpers import SR, chords


def noisy_copy(x: np.ndarray, scale: float, seed: int) -> np.ndarray:
    return x + scale * np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32)


def test_global_vectors_are_unit_norm() -> None:
    g = global_vectors({"a": np.random.default_rng(0).random((5, 8))})
    assert np.linalg.norm(g["a"]) == pytest.approx(1.0)


def test_mining_follows_the_thresholds() -> None:
    rng = np.random.default_rng(1)
    base = rng.random((6, 32))
    feats = {
        "q": base,
        "p_near": noisy_copy(base, 0.01, 2),
        "p_far": rng.random((6, 32)),
        "n_hard": noisy_copy(base, 0.05, 3),
        "n_easy": rng.random((6, 32)) * 5,
        "j": base.copy(),
    }
    ann = {"q": {"DA": ["p_near", "p_far"], "JUNK": ["j"]}}
    g = global_vectors(feats)
    d = {k: float(np.linalg.norm(g[k] - g["q"])) for k in g}
    pos_max = (d["p_near"] + d["p_far"]) / 2  # keeps p_near only
    margin = d["n_hard"] - d["p_near"] + 1e-3  # n_hard qualifies, n_easy should not
    assert d["n_easy"] > d["p_near"] + margin
    trip = mine_triplets(feats, ann, pos_max, margin)
    assert trip.items == [("q", "p_near", "n_hard")]  # JUNK never a negative, far positive dropped
    assert trip.stats["positive_pairs"] == 2 and trip.stats["positive_pairs_kept"] == 1


@pytest.mark.parametrize("quantile", [0.5, 0.75, 0.9, 1.0])
def test_calibrated_mining_keeps_the_quantile_and_the_paper_ratio(quantile: float) -> None:
    from dataclasses import replace

    from ausil_lib.core.config import TrainingConfig
    from ausil_lib.models.training import mining_thresholds

    distances = np.random.default_rng(3).gamma(2.0, 0.12, size=303)
    paper = TrainingConfig()
    assert mining_thresholds(paper, distances) == (paper.positive_max_distance, paper.negative_margin)
    cfg = replace(paper, mining="calibrated", positive_quantile=quantile)
    pos_max, margin = mining_thresholds(cfg, distances)
    kept = float(np.mean(distances < pos_max))
    assert quantile <= kept <= quantile + 2 / distances.size  # the quantile's pair itself is kept
    assert margin / pos_max == pytest.approx(paper.negative_margin / paper.positive_max_distance, rel=1e-9)


def test_positive_distances_follow_the_annotations() -> None:
    from ausil_lib.models.training import positive_distances

    rng = np.random.default_rng(4)
    feats = {k: rng.random((4, 16)) for k in ("q", "p", "n", "r")}
    g = global_vectors(feats)
    d = positive_distances(feats, {"q": {"DA": ["p", "missing"], "JUNK": ["n"]}, "absent": {"DA": ["r"]}})
    assert d.tolist() == pytest.approx([float(np.linalg.norm(g["q"] - g["p"]))])


def test_training_lowers_the_loss_on_a_tiny_set() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    videos = {f"v{i}": torch.from_numpy(rng.random((12, 2528)).astype(np.float32)) for i in range(4)}
    copies = {k: torch.from_numpy(noisy_copy(v.numpy(), 0.3, 7)) for k, v in videos.items()}
    model = AuSiL()
    model.set_pca(*learn_pca(np.concatenate([v.numpy() for v in videos.values()]), 1e-4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    triplets = [(k, k, f"v{(i + 1) % 4}") for i, k in enumerate(videos)]
    white = {k: model.whiten(v) for k, v in videos.items()}
    white_copies = {k: model.whiten(v) for k, v in copies.items()}

    def epoch_loss() -> torch.Tensor:
        return torch.stack(
            [triplet_loss(model, white[a], white_copies[p], white[n], 1.0, 0.1)[0] for a, p, n in triplets]
        ).mean()

    with torch.no_grad():
        before = float(epoch_loss())
    for _ in range(40):
        loss = epoch_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(epoch_loss())
    assert after < 0.5 * before


@pytest.fixture(scope="module")
def extractor() -> Extractor:
    """An UNTRAINED backbone whose descriptors still tell clips apart.

    PyTorch's default conv init (variance 1 / (3 fan_in)) shrinks the signal ~6x per layer, so after
    18 layers the random biases dominate and every clip gets nearly the same MAC descriptor: scores
    then differ by ~4e-4 and a comparison between them is decided by float noise. He initialisation
    (zero biases) keeps the activation scale through the depth: a random-feature network whose
    descriptors follow the audio.
    """
    torch.manual_seed(0)
    cnn = KumarCNN()
    for module in cnn.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)
    info = BackboneInfo("random", "UNTRAINED test backbone (He init)", "random-test-he")
    return Extractor(MacExtractor(cnn, "cpu"), info, FeatureConfig())


def monotone_cnn(cnn: SimilarityCNN, gain: float) -> SimilarityCNN:
    """Set the similarity CNN so that its output is max_pool_4x4(gain * sim): monotone in every entry.

    One channel carries the signal: conv1 = gain * centre tap + 1 (non-negative for |gain * sim| <= 1,
    so the ReLUs pass it; the replicate padding never reaches a centre-only kernel), conv2 and conv3
    copy it through the two max-pools, fconv removes the +1. The property the test asserts then holds
    by construction whenever it holds for the similarity matrix, instead of hanging on what a few
    training steps on four clips happen to produce (on the failing machine every score ended near -0.94).
    """
    with torch.no_grad():
        for conv in (cnn.conv1, cnn.conv2, cnn.conv3, cnn.fconv):
            conv.weight.zero_()
            conv.bias.zero_()
        cnn.conv1.weight[0, 0, 1, 1] = gain
        cnn.conv1.bias[0] = 1.0
        cnn.conv2.weight[0, 0, 1, 1] = 1.0
        cnn.conv3.weight[0, 0, 1, 1] = 1.0
        cnn.fconv.weight[0, 0, 0, 0] = 1.0
        cnn.fconv.bias[0] = -1.0
    return cnn


# Required lead of the copy over the best unrelated clip. Scores move by <= 6e-7 between CPU code paths
# (AVX-512 / AVX2 / SSE4.1 kernels, 1 or 2 threads, measured on these fixtures); the observed leads are
# mac 2.5e-3, mac_w 0.29, full 0.34. Raw cosines of non-negative MAC descriptors all sit near 1, hence
# the smaller (still >1000x float noise) bar for `mac`.
MIN_LEAD = {"mac": 1e-3, "mac_w": 0.1, "full": 0.1}


@pytest.mark.parametrize("variant", ["mac", "mac_w", "full"])
def test_transformed_copy_scores_above_unrelated_audio(extractor: Extractor, variant: str) -> None:
    clip = chords(20.0, seed=11)
    chain = [{"name": "mp3", "bitrate_kbps": 32}, {"name": "noise", "snr_db": 15}]
    copy = apply_chain(clip, SR, chain, seed=1)
    desc = {
        name: extractor.descriptors(name, Prepared(extractor.front_end(x), x.size / SR))
        for name, x in {
            "q": clip,
            "copy": copy,
            "other1": chords(20.0, seed=12),
            "other2": chords(20.0, seed=13),
        }.items()
    }
    model = AuSiL(variant=variant)
    if variant != "mac":  # ~80 segments in 2528 dimensions: a high floor keeps noise directions down
        model.set_pca(*learn_pca(np.concatenate(list(desc.values())), 1e-2))
    if variant == "full":  # zero context: attention weighs every segment 0.5, so sim = cos / 4; gain 4 undoes it
        monotone_cnn(model.cnn, gain=4.0)
    scores = ausil_scores(model, {"q": desc["q"]}, {k: v for k, v in desc.items() if k != "q"})["q"]
    lead = scores["copy"] - max(scores["other1"], scores["other2"])
    assert lead >= MIN_LEAD[variant], f"{variant}: copy leads the best unrelated clip by {lead:.3g} ({scores})"


def test_similarity_runner_writes_results_and_resumes(extractor: Extractor, tmp_path: Path, make_media) -> None:
    paths = {f"v{i}": str(make_media(f"v{i}.wav", chords(6.0, seed=20 + i))) for i in range(3)}
    paths["bad"] = str(tmp_path / "missing.mp4")
    method = AusilMethod(AuSiL(variant="mac"), extractor, tmp_path / "feat")
    out = tmp_path / "res" / "sims.json"
    timing = run_similarity(method, {"v0": paths["v0"]}, paths, out, progress=False)
    import json

    results = json.loads(out.read_text())
    assert set(results["v0"]) == {"v0", "v1", "v2"} and results["v0"]["v0"] == pytest.approx(1.0, abs=1e-5)
    assert "missing file" in out.with_name("sims.failures.tsv").read_text()
    assert not (tmp_path / "feat" / "failures.tsv").exists()  # the features stage's report is never rewritten
    assert timing["failed"] == 1 and timing["queries"] == 1
    assert not out.with_name("sims.json.partial").exists()


def _tiny_training_setup(tmp_path: Path, width: int = 2528) -> tuple[Params, Path, Path]:
    """Six random 'videos' with noisy copies, `width`-dim descriptors, as feature files plus train/val
    annotations."""
    from ausil_lib.core.formats import write_annotations, write_ids
    from ausil_lib.features.extraction import feature_path, save_features

    rng = np.random.default_rng(5)
    feats, corpus = tmp_path / "feat", tmp_path / "corpus"
    for split in ("train", "val"):
        ids = []
        for k in range(3):
            base = rng.random((12, width)).astype(np.float32)
            for vid, desc in ((f"{split}{k}", base), (f"{split}{k}c", noisy_copy(base, 0.05, k))):
                save_features(feature_path(feats, vid), desc, {"video_id": vid})
                ids.append(vid)
        write_ids(corpus / split / "dataset_ids.txt", ids)
        write_annotations(
            corpus / split / "annotation.json", {f"{split}{k}": {"DA": [f"{split}{k}c"], "JUNK": []} for k in range(3)}
        )
    params = {
        "device": "cpu",
        "training": {
            "pca_sample_size": 100,
            "pca_eps": 1e-2,
            "positive_max_distance": 2.0,
            "negative_margin": 2.0,
            "gamma": 1.0,
            "r": 0.1,
            "learning_rate": 1e-3,
            "batch_triplets": 4,
            "max_steps": 6,
            "budget_s": 600,
            "eval_every": 2,
        },
    }
    return parse_params(params), feats, corpus


def test_interrupted_training_resumes_to_the_same_model(tmp_path: Path, monkeypatch) -> None:
    from ausil_lib.models import training

    params, feats, corpus = _tiny_training_setup(tmp_path)
    training.train_ausil(params, feats, corpus, tmp_path / "a.pt", tmp_path / "a.json", "test", progress=False)

    calls = {"n": 0}
    real_loss = training.triplet_loss

    def dies_in_step_four(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3 * params.training.batch_triplets:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(training, "triplet_loss", dies_in_step_four)
    with pytest.raises(KeyboardInterrupt):
        training.train_ausil(params, feats, corpus, tmp_path / "b.pt", tmp_path / "b.json", "test", progress=False)
    assert (tmp_path / "b.pt.ckpt").is_file()  # the checkpoint of step 2 survived
    monkeypatch.setattr(training, "triplet_loss", real_loss)
    training.train_ausil(params, feats, corpus, tmp_path / "b.pt", tmp_path / "b.json", "test", progress=False)
    assert not (tmp_path / "b.pt.ckpt").exists()
    a = torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b.pt", weights_only=True)["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def test_the_same_training_writes_the_same_model_file(tmp_path: Path) -> None:
    """The wall time goes to the report's meta file only: the model file is the same bytes on a retraining."""
    from ausil_lib.models import training

    params, feats, corpus = _tiny_training_setup(tmp_path)
    for name in ("a", "b"):
        training.train_ausil(params, feats, corpus, tmp_path / f"{name}.pt", tmp_path / f"{name}.json", "test", False)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert "seconds" in json.loads((tmp_path / "a.meta.json").read_text())


def test_the_model_is_as_wide_as_its_descriptors_and_is_read_back_so(tmp_path: Path) -> None:
    """Another backbone's descriptors (or two side by side) are not 2528 wide: the model follows them."""
    from ausil_lib.features.extraction import feature_path, save_features
    from ausil_lib.models import training
    from ausil_lib.models.ausil import load_model

    params, feats, corpus = _tiny_training_setup(tmp_path, width=96)
    training.train_ausil(params, feats, corpus, tmp_path / "m.pt", tmp_path / "m.json", "test", progress=False)
    model, _ = load_model(tmp_path / "m.pt", variant="full")
    assert model.pca_weights.shape == (96, 96) and model.context.shape == (96,)
    rng = np.random.default_rng(1)
    q, c = (torch.from_numpy(rng.random((n, 96)).astype(np.float32)) for n in (11, 14))
    with torch.no_grad():
        assert -1.0 <= float(model(q, c)) <= 1.0
    save_features(feature_path(feats, "train0"), np.ones((12, 95), np.float32), {"video_id": "train0"})
    with pytest.raises(ValueError, match=rf"{feats}: expected descriptors of one width, found \[95, 96\]"):
        training.train_ausil(params, feats, corpus, tmp_path / "n.pt", tmp_path / "n.json", "test", progress=False)


@pytest.mark.parametrize("weight", [0.5, 1.0])
def test_selection_weighs_the_cross_corpus_val_set(tmp_path: Path, weight: float) -> None:
    """The kept checkpoint maximises (1 - w) val mAP + w cross-corpus val mAP, as the curve records them."""
    import json
    from dataclasses import replace

    from ausil_lib.core.formats import write_annotations, write_ids
    from ausil_lib.features.extraction import feature_path, save_features
    from ausil_lib.models import training

    params, feats, corpus = _tiny_training_setup(tmp_path)
    params = replace(params, cross_corpus=replace(params.cross_corpus, selection_weight=weight))
    rng, cross = np.random.default_rng(9), tmp_path / "cross"
    ids = []
    for k in range(3):
        base = rng.random((12, 2528)).astype(np.float32)
        for vid, desc in ((f"x{k}", base), (f"x{k}c", noisy_copy(base, 0.3, 10 + k))):
            save_features(feature_path(tmp_path / "xfeat", vid), desc, {"video_id": vid})
            ids.append(vid)
    write_ids(cross / "val" / "dataset_ids.txt", ids)
    write_annotations(cross / "val" / "annotation.json", {f"x{k}": {"DA": [f"x{k}c"], "JUNK": []} for k in range(3)})
    meta = training.train_ausil(
        params, feats, corpus, tmp_path / "m.pt", tmp_path / "m.json", "test", False, (tmp_path / "xfeat", cross)
    )
    evaluated = [p for p in json.loads((tmp_path / "m.json").read_text()) if "val_map" in p]
    assert len(evaluated) == 1 + params.training.max_steps // params.training.eval_every
    for point in evaluated:
        expected = (1 - weight) * point["val_map"] + weight * point["cross_val_map"]
        assert point["selection"] == pytest.approx(expected, abs=2e-5)
    best = max(evaluated, key=lambda p: p["selection"])  # the first of equal scores, as training keeps it
    assert meta["best_step"] == best["step"] and meta["cross_val_map"] == best["cross_val_map"]


def test_the_model_names_the_backbone_its_descriptors_record(tmp_path: Path) -> None:
    """A partner network beside the backbone changes the descriptors, not params' backbone: the model takes
    the label the feature files record, so `ausil similarity` matches it against the joined extractor."""
    from ausil_lib.features.extraction import feature_path, load_features, save_features
    from ausil_lib.models import training

    params, feats, corpus = _tiny_training_setup(tmp_path)
    joined = "test backbone, side by side with musicnn MSD_vgg"
    for path in sorted(feats.glob("*.npz")):
        stored = load_features(path)
        save_features(path, stored.descriptors, {**stored.meta, "backbone": {"label": joined}})
    meta = training.train_ausil(params, feats, corpus, tmp_path / "m.pt", tmp_path / "m.json", "test", False)
    assert meta["backbone"] == joined
    cross = tmp_path / "cross"
    alone = {"video_id": "x0", "backbone": {"label": "test"}}
    save_features(feature_path(tmp_path / "xfeat", "x0"), np.ones((12, 2528), np.float32), alone)
    with pytest.raises(ValueError, match="xfeat: descriptors of 'test'.*side by side"):
        training.train_ausil(
            params, feats, corpus, tmp_path / "n.pt", tmp_path / "n.json", "test", False, (tmp_path / "xfeat", cross)
        )


def test_an_extra_training_corpus_adds_its_triplets_and_whitening(tmp_path: Path) -> None:
    """An extra corpus whose ids equal the main corpus's (each corpus numbers its own clips) is trained on
    beside it, not in its place: its positives are mined too, its segments enter the PCA, and validation
    stays the main corpus's."""
    from ausil_lib.core.formats import write_annotations, write_ids
    from ausil_lib.features.extraction import feature_path, save_features
    from ausil_lib.models import training
    from ausil_lib.models.ausil import load_model

    params, feats, corpus = _tiny_training_setup(tmp_path)
    rng, extra, xfeat = np.random.default_rng(21), tmp_path / "extra", tmp_path / "xfeat"
    ids = []
    for k in range(4):
        base = rng.random((12, 2528)).astype(np.float32) * 3.0
        for vid, desc in ((f"train{k}", base), (f"train{k}c", noisy_copy(base, 0.05, 30 + k))):
            save_features(feature_path(xfeat, vid), desc, {"video_id": vid})
            ids.append(vid)
    write_ids(extra / "train" / "dataset_ids.txt", ids)
    write_annotations(
        extra / "train" / "annotation.json", {f"train{k}": {"DA": [f"train{k}c"], "JUNK": []} for k in range(4)}
    )
    alone = training.train_ausil(params, feats, corpus, tmp_path / "a.pt", tmp_path / "a.json", "test", False)
    both = training.train_ausil(
        params, feats, corpus, tmp_path / "b.pt", tmp_path / "b.json", "test", False, extra=(xfeat, extra)
    )
    assert alone["triplets"]["positive_pairs"] == 3 and alone["extra_training_corpus"] is None
    assert both["triplets"]["positive_pairs"] == 3 + 4
    assert both["extra_training_corpus"] == {"corpus": str(extra), "videos": 8, "queries": 4}
    assert (alone["pca_sample"], both["pca_sample"]) == (6 * 12, min(14 * 12, params.training.pca_sample_size))
    a, _ = load_model(tmp_path / "a.pt")
    b, _ = load_model(tmp_path / "b.pt")
    assert not torch.allclose(a.pca_mean, b.pca_mean, atol=1e-3)  # the extra segments (scaled by 3) moved it

    material, ann = training.training_material(feats, corpus, (xfeat, extra))
    assert set(material) == {f"train{k}{c}" for k in range(3) for c in ("", "c")} | {
        f"{training.EXTRA_PREFIX}train{k}{c}" for k in range(4) for c in ("", "c")
    }
    assert ann[f"{training.EXTRA_PREFIX}train3"] == {"DA": [f"{training.EXTRA_PREFIX}train3c"], "JUNK": []}

    labelled = {"video_id": "train0", "backbone": {"label": "another backbone"}}
    save_features(feature_path(xfeat, "train0"), np.ones((12, 2528), np.float32), labelled)
    with pytest.raises(ValueError, match="xfeat: descriptors of 'another backbone'"):
        training.train_ausil(
            params, feats, corpus, tmp_path / "c.pt", tmp_path / "c.json", "test", False, extra=(xfeat, extra)
        )
