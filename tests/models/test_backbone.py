"""The weak_mxh64_1024 layout, weight loading and refusal, and the 2528-d MAC descriptor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ausil_lib.core.config import Params, parse_params
from ausil_lib.core.download import sha256_file
from ausil_lib.models.backbone import (
    DESCRIPTOR_DIM,
    MAC_TAPS,
    BackboneWeightsError,
    KumarCNN,
    MacExtractor,
    load_audioset_state_dict,
    load_backbone,
    save_state,
)
from ausil_lib.models.weights import WeightsError, digests

TAP_WIDTHS = [16, 16, 32, 32, 64, 64, 128, 128, 256, 256, 512, 1024]


def randomised_model(seed: int = 0) -> KumarCNN:
    """A network whose BatchNorm statistics are not the identity, so folding and loading matter."""
    torch.manual_seed(seed)
    model = KumarCNN()
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def segments(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 174, 128, generator=torch.Generator().manual_seed(seed)) * 20 - 30


def test_layout_matches_original_weights_file() -> None:
    keys = set(KumarCNN().state_dict())
    assert {"layer1.0.weight", "layer1.1.running_var", "layer18.0.weight", "layer19.0.bias"} <= keys
    assert KumarCNN().state_dict()["layer18.0.weight"].shape == (1024, 512, 2, 2)
    params = dict(KumarCNN().named_parameters())
    # 4.46 M parameters up to layer18 (the descriptor's trunk); the 527-class head adds 1024 * 527 + 527
    trunk = sum(p.numel() for n, p in params.items() if not n.startswith("layer19"))
    assert trunk == pytest.approx(4.46e6, rel=0.005)
    assert sum(p.numel() for p in params.values()) - trunk == 1024 * 527 + 527
    assert len(MAC_TAPS) == 12 and sum(TAP_WIDTHS) == DESCRIPTOR_DIM


@pytest.mark.parametrize("prefix", ["", "module."])
@pytest.mark.parametrize("drop_batch_counter", [False, True])
def test_state_dict_round_trip(tmp_path: Path, prefix: str, drop_batch_counter: bool) -> None:
    model = randomised_model(1)
    state = {
        prefix + k: v
        for k, v in model.state_dict().items()
        if not (drop_batch_counter and k.endswith("num_batches_tracked"))
    }
    path = tmp_path / "mx-h64-1024_0d3-1.17.pkl"
    torch.save(state, path)
    loaded = KumarCNN()
    loaded.load_state_dict(load_audioset_state_dict(path))
    x = segments(3)
    torch.testing.assert_close(loaded.eval().mac(x), model.mac(x))


def _refused(path: Path, match: str) -> None:
    with pytest.raises(BackboneWeightsError, match=match) as info:
        load_audioset_state_dict(path)
    assert str(path) in str(info.value)


def test_refuses_other_layouts(tmp_path: Path) -> None:
    state = KumarCNN().state_dict()
    missing = dict(state)
    del missing["layer5.0.weight"]
    torch.save(missing, tmp_path / "missing.pkl")
    _refused(tmp_path / "missing.pkl", "missing: layer5.0.weight")

    torch.save({**state, "fc.weight": torch.zeros(3)}, tmp_path / "extra.pkl")
    _refused(tmp_path / "extra.pkl", "unexpected: fc.weight")

    wrong = dict(state)
    wrong["layer1.0.weight"] = torch.zeros(8, 1, 3, 3)
    torch.save(wrong, tmp_path / "shape.pkl")
    _refused(tmp_path / "shape.pkl", "wrong shape: layer1.0.weight")

    torch.save({"epoch": 3, "state_dict": state}, tmp_path / "checkpoint.pkl")
    _refused(tmp_path / "checkpoint.pkl", "expected a state dict")

    torch.save(torch.nn.Linear(2, 2), tmp_path / "pickled_model.pkl")
    _refused(tmp_path / "pickled_model.pkl", "not a readable PyTorch state dict")

    (tmp_path / "text.pkl").write_text("not a pickle")
    _refused(tmp_path / "text.pkl", "not a readable PyTorch state dict")


def test_descriptor_is_2528_d_with_per_layer_normalisation() -> None:
    desc = MacExtractor(randomised_model(), fuse_bn=False, channels_last=False).extract(segments(4))
    assert desc.shape == (4, DESCRIPTOR_DIM) and desc.dtype == np.float32
    bounds = np.cumsum([0] + TAP_WIDTHS)
    for a, b in zip(bounds[:-1], bounds[1:]):
        np.testing.assert_allclose(np.linalg.norm(desc[:, a:b], axis=1), 1.0, rtol=1e-5)
    assert np.all(desc >= 0)  # taps follow ReLUs


def test_batch_invariance() -> None:
    extractor = MacExtractor(randomised_model())
    batch = segments(128, seed=5)
    together = extractor.extract(batch, batch_size=128)
    alone = extractor.extract(batch[37:38], batch_size=128)
    np.testing.assert_allclose(alone[0], together[37], atol=1e-5)


def test_bn_folding_and_channels_last_change_nothing() -> None:
    model = randomised_model(2)
    x = segments(8, seed=9)
    plain = MacExtractor(model, fuse_bn=False, channels_last=False).extract(x)
    fast = MacExtractor(model, fuse_bn=True, channels_last=True).extract(x)
    np.testing.assert_allclose(fast, plain, atol=1e-5)


@pytest.mark.gpu
def test_gpu_matches_cpu() -> None:
    model = randomised_model(3)
    x = segments(16)
    cpu = MacExtractor(model, "cpu").extract(x)
    gpu = MacExtractor(model, "cuda").extract(x)
    np.testing.assert_allclose(gpu, cpu, atol=1e-4)


def _params(tmp_path: Path, git_blob: str | None = None, **backbone) -> Params:
    """params.yaml with the AudioSet pin pointing at tmp_path/as.pkl (pinned to its own digest unless given)."""
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["backbone"] = {
        "source": "auto",
        "trained_weights": str(tmp_path / "trained.pt"),
        "random_seed": 0,
        **backbone,
    }
    weights = tmp_path / "as.pkl"
    blob = git_blob or (digests(weights).git_blob if weights.is_file() else "0" * 40)
    params["release"]["backbone"] = {"path": "as.pkl", "dest": str(weights), "git_blob": blob}
    return parse_params(params)


def test_no_weights_is_an_error_not_a_random_network(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no backbone weights") as info:
        load_backbone(_params(tmp_path))
    assert "as.pkl" in str(info.value) and "trained.pt" in str(info.value)


def test_random_backbone_only_when_named_and_labelled(tmp_path: Path) -> None:
    model_a, info = load_backbone(_params(tmp_path, source="random", random_seed=4))
    model_b, _ = load_backbone(_params(tmp_path, source="random", random_seed=4))
    assert info.source == "random" and "UNTRAINED" in info.label
    torch.testing.assert_close(model_a.state_dict(), model_b.state_dict())  # seeded


def test_auto_prefers_audioset_then_trained(tmp_path: Path) -> None:
    save_state(tmp_path / "trained.pt", randomised_model(7), {"note": "test"})
    _, info = load_backbone(_params(tmp_path))
    assert info.source == "trained"
    torch.save(randomised_model(8).state_dict(), tmp_path / "as.pkl")
    model, info = load_backbone(_params(tmp_path))
    assert info.source == "audioset" and sha256_file(tmp_path / "as.pkl")[:12] in info.fingerprint
    torch.testing.assert_close(
        model.state_dict()["layer2.1.running_mean"], randomised_model(8).state_dict()["layer2.1.running_mean"]
    )


def test_trained_fingerprint_names_the_weights_not_the_file(tmp_path: Path) -> None:
    """Two runs that train identical weights write different meta (wall time); their label must agree."""
    save_state(tmp_path / "trained.pt", randomised_model(7), {"seconds": 851.2})
    _, first = load_backbone(_params(tmp_path))
    save_state(tmp_path / "trained.pt", randomised_model(7), {"seconds": 903.7})
    _, again = load_backbone(_params(tmp_path))
    save_state(tmp_path / "trained.pt", randomised_model(8), {"seconds": 851.2})
    _, other = load_backbone(_params(tmp_path))
    assert first.source == again.source == other.source == "trained"
    assert first.fingerprint == again.fingerprint and first.label == again.label
    assert other.fingerprint != first.fingerprint


def test_audioset_checksum_is_enforced(tmp_path: Path) -> None:
    torch.save(KumarCNN().state_dict(), tmp_path / "as.pkl")
    with pytest.raises(WeightsError, match="as.pkl: git blob id [0-9a-f]{40} does not match the pinned 0{40}"):
        load_backbone(_params(tmp_path, git_blob="0" * 40, source="audioset"))
    _, info = load_backbone(_params(tmp_path, source="audioset"))
    assert info.source == "audioset"
