"""AuSiL similarity model: shapes, padding, Chamfer, loss on hand-made maps, TF name map."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ausil_lib.models.ausil import (
    TF_NAME_MAP,
    VARIANTS,
    AuSiL,
    SimilarityCNN,
    chamfer,
    from_tf_variables,
    learn_pca,
    load_model,
    repeat_to,
    save_model,
    to_tf_variables,
    triplet_loss,
)
from ausil_lib.retrieval.runner import ausil_scores


def descriptors(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 2528, generator=torch.Generator().manual_seed(seed))


def test_cnn_output_shape_is_a_quarter() -> None:
    out = SimilarityCNN()(torch.zeros(2, 40, 23))
    assert out.shape == (2, 10, 5)


def test_symmetric_padding_of_width_one_repeats_the_edge() -> None:
    # TF 'SYMMETRIC' pad 1 of [a, b, c] is [a, a, b, c, c]; torch 'replicate' gives the same
    x = torch.tensor([[[[1.0, 2.0, 3.0]]]])
    padded = torch.nn.functional.pad(x, (1, 1, 0, 0), mode="replicate")
    assert padded.flatten().tolist() == [1.0, 1.0, 2.0, 3.0, 3.0]


def test_short_videos_are_repeated_to_ten_segments() -> None:
    x = torch.arange(3.0).unsqueeze(1)
    out = repeat_to(x, 10)
    assert out.shape[0] == 12 and out[:, 0].tolist() == [0, 1, 2] * 4


def test_chamfer_max_then_mean() -> None:
    sim = torch.tensor([[0.1, 0.9], [0.5, 0.2], [-1.0, -0.5]])
    # maxima over candidates: 0.9, 0.5, -0.5 -> mean 0.3
    assert float(chamfer(sim)) == pytest.approx(0.3)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_scores_a_pair(variant: str) -> None:
    model = AuSiL(variant=variant).eval()
    with torch.no_grad():
        s = model(descriptors(7, 0), descriptors(13, 1))
    assert s.ndim == 0 and -1.0 <= float(s) <= 1.0


def test_mac_variant_of_identical_videos_is_one() -> None:
    x = descriptors(12, 3)
    assert float(AuSiL(variant="mac")(x, x)) == pytest.approx(1.0, abs=1e-5)


def test_attention_weights_follow_the_context_vector() -> None:
    model = AuSiL(variant="mac_w_a")
    x = torch.nn.functional.normalize(descriptors(4, 2), dim=1)
    with torch.no_grad():
        model.context.copy_(x[0])
        emb = model.embed(descriptors(4, 2))
    # identity PCA: segment 0 has u.h = 1, weight 1; the others less
    norms = emb.norm(dim=1)
    assert float(norms[0]) == pytest.approx(1.0, abs=1e-5) and bool((norms[1:] < 1.0).all())


class _FixedMaps(AuSiL):
    """Returns hand-made CNN outputs so the loss can be checked by hand."""

    def __init__(self, maps: list[torch.Tensor]) -> None:
        super().__init__(variant="full")
        self.maps = maps

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def sim_output(self, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.maps.pop(0)


def test_triplet_loss_on_hand_made_maps() -> None:
    pos = torch.tensor([[1.5, 0.2], [0.4, 0.6]])  # hard tanh -> maxima 1.0, 0.6 -> CS+ = 0.8
    neg = torch.tensor([[0.1, -1.4], [0.3, 0.0]])  # maxima 0.1, 0.3 -> CS- = 0.2
    dummy = torch.zeros(1, 4)
    loss, parts = triplet_loss(_FixedMaps([pos, neg]), dummy, dummy, dummy, gamma=1.0, r=0.1)
    # triplet: max(0, 0.2 - 0.8 + 1) = 0.4; reg: (1.5 - 1) + (-1 - -1.4) = 0.9; loss = 0.4 + 0.09
    assert parts["triplet"] == pytest.approx(0.4) and parts["reg"] == pytest.approx(0.9)
    assert float(loss) == pytest.approx(0.49)
    loss, parts = triplet_loss(_FixedMaps([pos, neg]), dummy, dummy, dummy, gamma=0.5, r=0.0)
    assert float(loss) == 0.0  # margin satisfied: 0.2 - 0.8 + 0.5 < 0


def test_pca_whitens_the_sample() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 16)) @ rng.standard_normal((16, 16)) + 5
    mean, weights = learn_pca(x, eps=1e-9)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    cov = np.cov((xn - mean) @ weights, rowvar=False)
    np.testing.assert_allclose(cov, np.eye(16), atol=1e-6)


@pytest.mark.parametrize("seed", [1, 2])
def test_pca_weights_have_no_subnormals_and_whiten_as_before(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # ReLU-like descriptors with dead dimensions, as an untrained backbone gives: the eigensolver
    # leaves entries far below float32's normal range, which slow every product with them.
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal((2000, 256)), 0).astype(np.float32)
    x[:, rng.choice(256, 100, replace=False)] = 0
    mean, weights = learn_pca(x, eps=1e-4)
    tiny = np.finfo(np.float32).tiny
    assert not np.any((np.abs(weights) < tiny) & (weights != 0))
    with monkeypatch.context() as patch:  # the same learn_pca with its threshold at zero: nothing flushed
        patch.setattr(np, "finfo", lambda dtype: SimpleNamespace(tiny=0.0))
        _, raw = learn_pca(x, eps=1e-4)
    model, unflushed = AuSiL(dims=256, variant="mac_w"), AuSiL(dims=256, variant="mac_w")
    model.set_pca(mean, weights)
    unflushed.set_pca(mean, raw)
    rows = torch.from_numpy(x[:50])
    with torch.no_grad():
        ours, before = model.whiten(rows), unflushed.whiten(rows)
        torch.testing.assert_close(ours @ ours.T, before @ before.T, rtol=0.0, atol=1e-30)


def test_pca_weights_below_the_smallest_normal_float32_are_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    # plant eigenvector entries whose weights fall below float32's normal range, whatever LAPACK returns;
    # whole rows, so that learn_pca's reordering of the columns does not matter
    real_eigh = np.linalg.eigh
    planted = [0, 3]

    def eigh_with_tiny_entries(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        eigval, eigvec = real_eigh(a)
        eigvec = eigvec.copy()
        eigvec[planted] = 1e-43
        return eigval, eigvec

    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 8)) + 3
    _, expected = learn_pca(x, eps=1e-2)
    monkeypatch.setattr(np.linalg, "eigh", eigh_with_tiny_entries)
    _, weights = learn_pca(x, eps=1e-2)
    assert np.all(weights[planted] == 0.0)
    others = np.setdiff1d(np.arange(8), planted)
    np.testing.assert_array_equal(weights[others], expected[others])


def test_save_and_load_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    model = AuSiL()
    with torch.no_grad():
        model.context.normal_()
    save_model(tmp_path / "m.pt", model, {"gamma": 1.0})
    loaded, meta = load_model(tmp_path / "m.pt")
    assert meta == {"gamma": 1.0}
    q, c = descriptors(11, 4), descriptors(15, 5)
    with torch.no_grad():
        assert float(loaded(q, c)) == pytest.approx(float(model.eval()(q, c)), abs=1e-6)


def test_tensorflow_name_map_round_trips() -> None:
    torch.manual_seed(1)
    model = AuSiL()
    with torch.no_grad():
        model.context.normal_()
        model.pca_mean.normal_()
    variables = to_tf_variables(model)
    assert set(variables) == set(TF_NAME_MAP)
    # shapes as in the authors' TensorFlow code
    assert variables["PCA/weights"].shape == (2528, 2528)
    assert variables["attention_layer/context_vector"].shape == (2528, 1)
    assert variables["video_comparator/conv2d/kernel"].shape == (3, 3, 1, 32)
    assert variables["video_comparator/conv2d_3/kernel"].shape == (1, 1, 128, 1)
    rebuilt = from_tf_variables(variables)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(rebuilt.state_dict()[key], value)


def test_tensorflow_converter_refuses_wrong_checkpoints() -> None:
    variables = to_tf_variables(AuSiL())
    del variables["video_comparator/conv2d_2/bias"]
    with pytest.raises(ValueError, match="conv2d_2/bias"):
        from_tf_variables(variables)
    variables = to_tf_variables(AuSiL())
    variables["PCA/mean_sift"] = np.zeros(100, np.float32)
    with pytest.raises(ValueError, match="does not fit"):
        from_tf_variables(variables)


def test_a_file_without_whitening_is_refused_by_name(tmp_path) -> None:
    torch.save({"state_dict": {"context": torch.zeros(4)}, "meta": {}}, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match="odd.pt: not an AuSiL model .* no pca_mean"):
        load_model(tmp_path / "odd.pt")


@pytest.mark.parametrize("variant", ["mac", "mac_w", "mac_w_a", "full"])
def test_whitening_once_then_attention_is_embed_bit_for_bit(variant: str) -> None:
    """Training whitens each video once and attends at every step: the same tensors as `embed`, so
    the same gradients and weights as embedding at every step."""
    torch.manual_seed(0)
    model = AuSiL(variant=variant)
    sample = torch.cat([descriptors(30, s) for s in range(4)]).numpy()
    model.set_pca(*learn_pca(sample, 1e-4))
    with torch.no_grad():
        model.context.normal_(0, 0.05)
    videos = {f"v{s}": descriptors(12 + s, 10 + s) for s in range(4)}
    for x in videos.values():
        assert torch.equal(model.attend(model.whiten(x)), model.embed(x))
    white = {v: model.whiten(x) for v, x in videos.items()}
    queries = {"v0": videos["v0"]}
    assert ausil_scores(model, {"v0": white["v0"]}, white, whitened=True) == ausil_scores(model, queries, videos)
