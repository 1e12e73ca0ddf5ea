"""AuSiL's similarity model: PCA whitening, attention, similarity CNN, Chamfer similarity.

Variants (paper Table V) share one trained model and differ only in which parts run:
  mac      cosine similarity matrix of the MAC descriptors, Chamfer similarity
  mac_w    + PCA whitening
  mac_w_a  + attention (context vector from the full model's training)
  full     + similarity CNN with hard tanh (AuSiL)

The released graph this mirrors, layer by layer, is written down in docs/ausil-reference-facts.md
("The released similarity graph").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import full_float32
from ..core.numerics import apply_torch_settings
from .backbone import DESCRIPTOR_DIM, save_state

apply_torch_settings()  # torch's threads and cuDNN settings, before any tensor work (core/numerics.py)

VARIANTS = ("mac", "mac_w", "mac_w_a", "full")
EPS = 1e-15  # L2 normalisation epsilon of the reference
# The released code repeats only the database video (to at least 10 segments). A query shorter than 4
# segments leaves the CNN an empty map (two 2x2 poolings), where the released graph returns NaN; such
# a query is repeated to 4 here, the one place this model departs from it.
QUERY_MIN_SEGMENTS = 4


class SimilarityCNN(nn.Module):
    """Four-layer CNN over a similarity matrix (ViSiL-style); 1-pixel symmetric padding before each 3x3 conv.

    TensorFlow's SYMMETRIC padding of width 1 repeats the edge value, which is torch's `replicate`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.conv3 = nn.Conv2d(64, 128, 3)
        self.fconv = nn.Conv2d(128, 1, 1)

    def forward(self, sim: torch.Tensor) -> torch.Tensor:
        """(batch, X, Y) -> raw output (batch, X // 4, Y // 4), before the hard tanh."""
        x = sim.unsqueeze(1)
        with full_float32():
            x = F.max_pool2d(F.relu(self.conv1(F.pad(x, (1, 1, 1, 1), mode="replicate"))), 2)
            x = F.max_pool2d(F.relu(self.conv2(F.pad(x, (1, 1, 1, 1), mode="replicate"))), 2)
            x = F.relu(self.conv3(F.pad(x, (1, 1, 1, 1), mode="replicate")))
            return self.fconv(x).squeeze(1)


def repeat_to(x: torch.Tensor, min_segments: int) -> torch.Tensor:
    """Concatenate a short video with itself until it has `min_segments` rows (reference behaviour)."""
    while x.shape[0] < min_segments:
        x = torch.cat([x, x], dim=0)
    return x


def chamfer(sim: torch.Tensor) -> torch.Tensor:
    """Max over the candidate axis, mean over the query axis."""
    return sim.max(dim=-1).values.mean(dim=-1)


class AuSiL(nn.Module):
    """The similarity model; `variant` selects the ablation (see module docstring)."""

    def __init__(self, dims: int = DESCRIPTOR_DIM, variant: str = "full", min_segments: int = 10) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.variant = variant
        self.min_segments = min_segments
        self.register_buffer("pca_mean", torch.zeros(dims))
        self.register_buffer("pca_weights", torch.eye(dims))
        # a zero context vector gives every segment weight 0.5, i.e. attention off until trained
        self.context = nn.Parameter(torch.zeros(dims))
        self.cnn = SimilarityCNN()

    def set_pca(self, mean: np.ndarray | torch.Tensor, weights: np.ndarray | torch.Tensor) -> None:
        self.pca_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.pca_weights.copy_(torch.as_tensor(weights, dtype=torch.float32))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(segments, dims) MAC descriptors -> the vectors whose dot products form the similarity matrix."""
        return self.attend(self.whiten(x))

    def whiten(self, x: torch.Tensor) -> torch.Tensor:
        """The part of `embed` that training does not change (L2 normalisation and the PCA whitening learnt
        before it), so training computes it once per video instead of at every step."""
        x = F.normalize(x, p=2, dim=-1, eps=EPS)
        if self.variant == "mac":
            return x
        return F.normalize((x - self.pca_mean) @ self.pca_weights, p=2, dim=-1, eps=EPS)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """The trained part of `embed`: each whitened segment weighted by its attention (mac_w_a, full)."""
        if self.variant in ("mac", "mac_w"):
            return x
        weights = (x @ self.context) / 2.0 + 0.5
        return x * weights.unsqueeze(-1)

    def sim_output(self, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Embedded query and candidate -> the map Chamfer similarity pools (raw CNN output for `full`)."""
        sim = repeat_to(q, QUERY_MIN_SEGMENTS) @ repeat_to(c, self.min_segments).T
        return self.cnn(sim.unsqueeze(0)).squeeze(0) if self.variant == "full" else sim

    def similarity(self, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Video-to-video similarity of two embedded videos (hard tanh, then Chamfer)."""
        return chamfer(torch.clamp(self.sim_output(q, c), -1.0, 1.0))

    def similarity_many(self, q: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
        """One embedded query against (batch, N, dims) embedded candidates of one length N (each already
        repeated to `min_segments`) -> (batch,). Same padding and pooling as `similarity` pair by pair:
        candidates of equal length batch exactly, so batching changes the speed, never the numbers."""
        sim = torch.matmul(repeat_to(q, QUERY_MIN_SEGMENTS), cands.transpose(1, 2))
        if self.variant == "full":
            sim = self.cnn(sim)
        return chamfer(torch.clamp(sim, -1.0, 1.0))

    def forward(self, q_desc: torch.Tensor, c_desc: torch.Tensor) -> torch.Tensor:
        return self.similarity(self.embed(q_desc), self.embed(c_desc))


def triplet_loss(
    model: AuSiL, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, gamma: float, r: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """max(0, CS(v, v-) - CS(v, v+) + gamma) + r * similarity regularisation (paper Eqs. 4-6).

    The regulariser penalises raw CNN outputs outside [-1, 1], summed over both pairs' maps.
    Inputs are single videos' MAC descriptors after `model.whiten`; returns the loss and its parts for logging.
    """
    a, p, n = model.attend(anchor), model.attend(positive), model.attend(negative)
    out_p, out_n = model.sim_output(a, p), model.sim_output(a, n)
    cs_p = chamfer(torch.clamp(out_p, -1, 1))
    cs_n = chamfer(torch.clamp(out_n, -1, 1))
    tr = F.relu(cs_n - cs_p + gamma)
    reg = sum((F.relu(o - 1) + F.relu(-1 - o)).sum() for o in (out_p, out_n))
    loss = tr + r * reg
    parts = {"triplet": tr, "reg": reg, "cs_pos": cs_p, "cs_neg": cs_n}
    return loss, {k: float(v.detach()) for k, v in parts.items()}


def learn_pca(descriptors: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """PCA whitening from a sample of segment descriptors: mean and the dims x dims projection.

    Rows are L2-normalised first, as at inference. Eigenvalues are floored at `eps` times the
    largest one so that directions the sample does not span are not blown up. Weights below float32's
    smallest normal number are set to zero: they are the eigensolver's round-off where the sample has
    dimensions that are always zero (an untrained backbone's dead channels), they change no similarity,
    and subnormal operands make every product with them several times slower on x86 CPUs.
    """
    x = descriptors.astype(np.float64)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), EPS)
    mean = x.mean(axis=0)
    cov = np.cov(x - mean, rowvar=False)
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = eigval[order], eigvec[:, order]
    eigval = np.maximum(eigval, eps * eigval[0])
    weights = (eigvec / np.sqrt(eigval)).astype(np.float32)
    weights[np.abs(weights) < np.finfo(np.float32).tiny] = 0.0
    return mean.astype(np.float32), weights


# ---------------------------------------------------------------- files


def save_model(path: str | os.PathLike[str], model: AuSiL, meta: Mapping[str, Any]) -> None:
    """The model with the params that made it in `meta` (see `backbone.save_state`)."""
    save_state(path, model, meta)


def load_model(path: str | os.PathLike[str], variant: str = "full") -> tuple[AuSiL, dict[str, Any]]:
    """An AuSiL model from this project's model file or from a TensorFlow checkpoint prefix.

    A prefix (`PREFIX.index` exists, e.g. data/weights/ausil_released/model) is read without TensorFlow
    through `tf_checkpoint`; its meta says so, and that it expects AudioSet-backbone descriptors.
    """
    from .tf_checkpoint import TFCheckpoint, is_checkpoint_prefix

    if is_checkpoint_prefix(path):
        ckpt = TFCheckpoint(path)
        missing = [name for name in TF_NAME_MAP if name not in ckpt.entries]
        if missing:
            raise ValueError(f"{path}: not an AuSiL checkpoint, it lacks the variables {', '.join(missing)}")
        model = from_tf_variables(ckpt.read_all(list(TF_NAME_MAP)), variant)
        return model, {"source": "tensorflow-checkpoint", "checkpoint": str(path), "backbone_source": "audioset"}
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no AuSiL model file and no TensorFlow checkpoint ({path}.index)")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, Mapping) or "state_dict" not in blob:
        raise ValueError(f"{path}: not an AuSiL model saved by ausil (expected keys state_dict, meta)")
    state = blob["state_dict"]
    if "pca_mean" not in state:
        raise ValueError(f"{path}: not an AuSiL model saved by ausil (its state_dict has no pca_mean)")
    # as wide as the descriptors it was trained on (its PCA's): another backbone's, or two side by side
    model = AuSiL(dims=int(state["pca_mean"].shape[-1]), variant=variant)
    model.load_state_dict(state)
    return model.eval(), dict(blob.get("meta", {}))


# TensorFlow checkpoint of the authors' release -> this model. Keras named its layers conv2d,
# conv2d_1, ... in creation order inside the `video_comparator` scope (the released model.index lists
# exactly these names); kernels are HWIO, the context vector (2528, 1). PCA is applied as x @ W, as here.
TF_NAME_MAP: dict[str, str] = {
    "PCA/mean_sift": "pca_mean",
    "PCA/weights": "pca_weights",
    "attention_layer/context_vector": "context",
    "video_comparator/conv2d/kernel": "cnn.conv1.weight",
    "video_comparator/conv2d/bias": "cnn.conv1.bias",
    "video_comparator/conv2d_1/kernel": "cnn.conv2.weight",
    "video_comparator/conv2d_1/bias": "cnn.conv2.bias",
    "video_comparator/conv2d_2/kernel": "cnn.conv3.weight",
    "video_comparator/conv2d_2/bias": "cnn.conv3.bias",
    "video_comparator/conv2d_3/kernel": "cnn.fconv.weight",
    "video_comparator/conv2d_3/bias": "cnn.fconv.bias",
}


def from_tf_variables(variables: Mapping[str, np.ndarray], variant: str = "full") -> AuSiL:
    """Build the model from the released checkpoint's variables (name -> array, see `tf_checkpoint`)."""
    missing = [name for name in TF_NAME_MAP if name not in variables]
    if missing:
        raise ValueError(f"checkpoint lacks variables: {', '.join(missing)}")
    model = AuSiL(variant=variant)
    state = model.state_dict()
    for tf_name, key in TF_NAME_MAP.items():
        value = torch.as_tensor(np.asarray(variables[tf_name]), dtype=torch.float32)
        if value.ndim == 4:
            value = value.permute(3, 2, 0, 1)  # HWIO -> OIHW
        elif key == "context":
            value = value.reshape(-1)
        if value.shape != state[key].shape:
            raise ValueError(f"{tf_name}: shape {tuple(value.shape)} does not fit {key} {tuple(state[key].shape)}")
        state[key] = value
    model.load_state_dict(state)
    return model.eval()


def to_tf_variables(model: AuSiL) -> dict[str, np.ndarray]:
    """The inverse map, for writing a checkpoint the authors' code can read (and for tests)."""
    state = model.state_dict()
    out = {}
    for tf_name, key in TF_NAME_MAP.items():
        value = state[key].detach().cpu()
        if value.ndim == 4:
            value = value.permute(2, 3, 1, 0)  # OIHW -> HWIO
        elif key == "context":
            value = value.reshape(-1, 1)
        out[tf_name] = value.numpy().copy()
    return out
