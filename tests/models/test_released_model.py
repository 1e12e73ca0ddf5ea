"""A checkpoint in the authors' released layout, scored by `ausil similarity`, equals the released TF graph.

The reference below is a plain numpy transcription of the released graph, written for this test:
L2 -> PCA (x - mean) @ W -> L2 -> attention (u.h / 2 + 0.5) h; S = Q D^T with the database video
concatenated with itself until it has 10 segments; SYMMETRIC pad 1, VALID 3x3 conv + ReLU, 2x2/2 max
pool (twice), 3x3 conv + ReLU, 1x1 conv, clip to [-1, 1], Chamfer (max over database segments, mean
over query segments).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from ausil_lib.cli import main
from ausil_lib.core.config import parse_params
from ausil_lib.core.formats import read_results, write_video_list
from ausil_lib.features.extraction import Extractor, feature_path, save_features
from ausil_lib.models.tf_checkpoint import read_index

from ..tf_bundle_writer import write_bundle

DIMS = 2528


def released_layout(seed: int) -> dict[str, np.ndarray]:
    """Known random weights under the released variable names (plus optimiser state, as the real file has)."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    tensors = {
        "PCA/mean_sift": (0.01 * rng.standard_normal(DIMS)).astype(f32),
        "PCA/weights": (rng.standard_normal((DIMS, DIMS)) / np.sqrt(DIMS)).astype(f32),
        "attention_layer/context_vector": (0.02 * rng.standard_normal((DIMS, 1))).astype(f32),
        "beta1_power": np.array(0.0, f32),
        "global_step": np.array(270001, np.int64),
    }
    for name, shape in (
        ("conv2d", (3, 3, 1, 32)),
        ("conv2d_1", (3, 3, 32, 64)),
        ("conv2d_2", (3, 3, 64, 128)),
        ("conv2d_3", (1, 1, 128, 1)),
    ):
        fan_in = shape[0] * shape[1] * shape[2]
        kernel = rng.standard_normal(shape) * np.sqrt(2 / fan_in)
        kernel[shape[0] // 2, shape[1] // 2] += 0.3 / shape[2]  # a centre tap: the map is not flat
        tensors[f"video_comparator/{name}/kernel"] = kernel.astype(f32)
        tensors[f"video_comparator/{name}/bias"] = (0.05 * rng.standard_normal(shape[3])).astype(f32)
        tensors[f"video_comparator/{name}/kernel/Adam"] = np.zeros(shape, f32)
    return tensors


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(np.maximum((x * x).sum(-1, keepdims=True), 1e-15))


def _conv_valid(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """x (H, W, C), kernel (kh, kw, C, O) -> (H - kh + 1, W - kw + 1, O)."""
    kh, kw = kernel.shape[:2]
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(0, 1))  # (H', W', C, kh, kw)
    return np.einsum("ijcab,abco->ijo", windows, kernel, optimize=True) + bias


def _pool(x: np.ndarray) -> np.ndarray:
    h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    x = x[:h, :w]
    return x.reshape(h // 2, 2, w // 2, 2, -1).max(axis=(1, 3))


def released_graph(t: dict[str, np.ndarray], query: np.ndarray, video: np.ndarray) -> float:
    t = {k: v.astype(np.float64) for k, v in t.items()}

    def embed(x: np.ndarray) -> np.ndarray:
        h = _l2(x.astype(np.float64))
        h = _l2((h - t["PCA/mean_sift"]) @ t["PCA/weights"])
        return h * (h @ t["attention_layer/context_vector"] / 2.0 + 0.5)

    while video.shape[0] < 10:
        video = np.concatenate([video, video])
    sim = (embed(query) @ embed(video).T)[:, :, None]

    def layer(x: np.ndarray, name: str) -> np.ndarray:
        x = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode="symmetric")
        return np.maximum(_conv_valid(x, t[f"video_comparator/{name}/kernel"], t[f"video_comparator/{name}/bias"]), 0)

    x = _pool(layer(sim, "conv2d"))
    x = _pool(layer(x, "conv2d_1"))
    x = layer(x, "conv2d_2")
    x = _conv_valid(x, t["video_comparator/conv2d_3/kernel"], t["video_comparator/conv2d_3/bias"])[:, :, 0]
    return float(np.clip(x, -1, 1).max(axis=1).mean())


@pytest.fixture
def setup(tmp_path: Path) -> dict:
    """Stored descriptors (the CLI reuses them) with a known copy relation, and a released-layout checkpoint."""
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["device"] = "cpu"
    params["backbone"].update(source="random", trained_weights=str(tmp_path / "none.pt"))
    params["release"]["backbone"]["dest"] = str(tmp_path / "no-audioset.pkl")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    extractor = Extractor.from_params(parse_params(params))
    rng = np.random.default_rng(5)
    query = np.abs(rng.standard_normal((16, DIMS))).astype(np.float32)  # MAC descriptors are non-negative
    descriptors = {
        "q": query,
        "copy": query[3:15] + 0.2 * np.abs(rng.standard_normal((12, DIMS))).astype(np.float32),
        "short": np.abs(rng.standard_normal((4, DIMS))).astype(np.float32),  # under 10: repeated
        "other": np.abs(rng.standard_normal((20, DIMS))).astype(np.float32),
    }
    for vid, desc in descriptors.items():
        save_features(
            feature_path(tmp_path / "feat", vid), desc, extractor.meta(vid, f"{vid}.mp4", desc.shape[0], desc.shape[0])
        )
    write_video_list(tmp_path / "db.txt", {v: f"{v}.mp4" for v in ("copy", "short", "other")})
    write_video_list(tmp_path / "q.txt", {"q": "q.mp4"})
    tensors = released_layout(seed=11)
    (tmp_path / "ckpt").mkdir()
    write_bundle(tmp_path / "ckpt" / "model", tensors)
    return {"root": tmp_path, "tensors": tensors, "descriptors": descriptors}


def _similarity(root: Path, *extra: str) -> int:
    return main(
        [
            "--params",
            str(root / "params.yaml"),
            "similarity",
            "--model",
            str(root / "ckpt" / "model"),
            "--features-dir",
            str(root / "feat"),
            "--queries",
            str(root / "q.txt"),
            "--database",
            str(root / "db.txt"),
            "--output",
            str(root / "out" / "r.json"),
            "--no-progress",
            *extra,
        ]
    )


def test_released_layout_scores_equal_the_released_graph(setup: dict) -> None:
    root = setup["root"]
    assert _similarity(root) == 0
    scores = read_results(root / "out" / "r.json")["q"]
    desc = setup["descriptors"]
    for vid, got in scores.items():
        want = released_graph(setup["tensors"], desc["q"], desc[vid])
        assert abs(got - want) < 1e-4, (vid, got, want)
        assert -0.99 < want < 0.99  # not saturated by the final clip: the comparison means something
    # the copy's map differs from the unrelated ones' (random weights rank nothing, but they must not be flat)
    assert min(abs(scores["copy"] - scores["short"]), abs(scores["copy"] - scores["other"])) > 0.01


def test_a_flipped_byte_in_pca_weights_is_refused_by_tensor_name(setup: dict, capsys) -> None:
    root = setup["root"]
    prefix = root / "ckpt" / "model"
    _, entries = read_index(str(prefix) + ".index")
    entry = entries["PCA/weights"]
    data = Path(str(prefix) + ".data-00000-of-00001")
    raw = bytearray(data.read_bytes())
    raw[entry.offset + entry.size // 2] ^= 0x01
    data.write_bytes(bytes(raw))
    assert _similarity(root) == 2
    err = capsys.readouterr().err
    assert "PCA/weights" in err and "CRC32C" in err
    assert not (root / "out" / "r.json").exists()
