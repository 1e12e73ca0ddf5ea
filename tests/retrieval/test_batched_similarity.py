"""The collection-wide scorer batches candidates of equal length; its numbers must equal pair-by-pair AuSiL."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ausil_lib.datasets.real.budget import ArraySource
from ausil_lib.models.ausil import VARIANTS, AuSiL
from ausil_lib.retrieval.runner import ausil_scores, score_stored


def trained_looking_model(variant: str, seed: int = 0) -> AuSiL:
    """Random but non-trivial PCA, context and CNN weights, so every component changes the output."""
    torch.manual_seed(seed)
    model = AuSiL(dims=32, variant=variant)
    rng = np.random.default_rng(seed)
    model.set_pca(rng.standard_normal(32) * 0.1, rng.standard_normal((32, 32)))
    with torch.no_grad():
        model.context.copy_(torch.from_numpy(rng.standard_normal(32).astype(np.float32)))
    return model.eval()


def collection(seed: int = 1) -> dict[str, np.ndarray]:
    """Videos of many lengths, several of them equal (batched together), some under 10 segments."""
    rng = np.random.default_rng(seed)
    lengths = [3, 5, 5, 9, 10, 12, 12, 12, 17, 24, 24, 40]
    return {f"v{i:02d}": np.abs(rng.standard_normal((n, 32))).astype(np.float32) for i, n in enumerate(lengths)}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("batch_bytes", [1, 1 << 30])  # one candidate per batch / a whole bucket per batch
def test_batched_scores_equal_pairwise(variant: str, batch_bytes: int) -> None:
    model = trained_looking_model(variant)
    videos = collection()
    queries = ["v00", "v05", "v11"]
    results, failures, timing = score_stored(
        model, ArraySource(videos), queries, list(videos), "cpu", batch_bytes, progress=False
    )
    expected = ausil_scores(model, {q: videos[q] for q in queries}, videos)
    assert not failures and timing["pairs"] == len(queries) * len(videos)
    for q in queries:
        assert results[q].keys() == expected[q].keys()
        np.testing.assert_allclose([results[q][v] for v in videos], [expected[q][v] for v in videos], rtol=0, atol=1e-5)


def test_missing_descriptors_are_failures_not_errors() -> None:
    model = trained_looking_model("full")
    videos = collection()
    results, failures, _ = score_stored(
        model, ArraySource(videos), ["v00", "gone_q"], [*videos, "gone_v"], "cpu", progress=False
    )
    assert set(failures) == {"gone_q", "gone_v"} and "extraction" in failures["gone_v"]
    assert set(results) == {"v00"} and "gone_v" not in results["v00"]


@pytest.mark.gpu
def test_gpu_batched_scores_match_cpu() -> None:
    model = trained_looking_model("full")
    videos = collection()
    cpu, _, _ = score_stored(model, ArraySource(videos), ["v00", "v11"], list(videos), "cpu", progress=False)
    gpu, _, timing = score_stored(model, ArraySource(videos), ["v00", "v11"], list(videos), "cuda", progress=False)
    assert timing["device"].startswith("cuda")
    for q in cpu:
        np.testing.assert_allclose([gpu[q][v] for v in videos], [cpu[q][v] for v in videos], rtol=0, atol=1e-4)
