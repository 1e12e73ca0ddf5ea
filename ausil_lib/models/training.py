"""AuSiL training: PCA whitening from train-split segments, triplet mining, triplet loss, selection on val.

Triplets follow the paper: anchor-positive pairs are annotated duplicates whose global vectors
(average of the video's segment descriptors, L2-normalised) are closer than
`positive_max_distance`; negatives are clean negatives of the anchor (neither DA nor JUNK) with
D(v, v-) < D(v, v+) + `negative_margin`. Only the train benchmark is read for training; the val
benchmark (and, where built, the cross-corpus val set) chooses the checkpoint by mAP.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..core.config import Params, TrainingConfig, plain, resolve_device
from ..core.formats import atomic_path, atomic_write_json, read_annotations, read_ids
from ..core.labels import DA, JUNK
from ..core.numerics import apply_torch_settings, numerics_settings
from ..features.extraction import load_features, open_features
from ..retrieval.evaluation import evaluate
from ..retrieval.runner import ausil_scores
from .ausil import AuSiL, learn_pca, save_model, triplet_loss
from .optimizer import KIND as OPTIMIZER_KIND
from .optimizer import adam

apply_torch_settings()  # torch's threads and cuDNN settings, before any tensor work (core/numerics.py)


def load_benchmark_features(features_dir: Path, bench_dir: Path) -> dict[str, np.ndarray]:
    """Descriptors of every video of a benchmark that has stored features (failed videos are absent);
    per-video files and sharded stores alike."""
    source = open_features(features_dir)
    return {vid: source.get(vid) for vid in read_ids(bench_dir / "dataset_ids.txt") if vid in source}


def recorded_backbone(features_dir: str | os.PathLike[str], default: str) -> str:
    """The backbone label the stored descriptors record (a partner network beside the backbone included),
    so that a model names what it was trained on; `default` where the files record none (a sharded store,
    or files written outside the extractor)."""
    first = next(iter(sorted(Path(features_dir).glob("*.npz"))), None)
    label = load_features(first).meta.get("backbone", {}).get("label") if first else None
    return label or default


def descriptor_width(features: Mapping[str, np.ndarray], source: Path) -> int:
    """How wide the descriptors are (this project's backbone: 2528; another's, or two side by side, differ),
    so that the model is built for them; mixed widths are refused by directory."""
    widths = sorted({int(d.shape[1]) for d in features.values()})
    if len(widths) != 1:
        raise ValueError(f"{source}: expected descriptors of one width, found {widths or 'no descriptors'}")
    return widths[0]


EXTRA_PREFIX = "extra:"  # an extra training corpus's ids in memory, so that they cannot meet the main corpus's


def training_material(
    features_dir: Path,
    corpus_dir: Path,
    extra: tuple[Path, Path] | None,
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, list[str]]]]:
    """The train split's descriptors and annotation, joined with an extra training corpus's train split
    (`extra`: its features and corpus directories; its ids prefixed with EXTRA_PREFIX) when given."""
    train = load_benchmark_features(features_dir, corpus_dir / "train")
    ann = read_annotations(corpus_dir / "train" / "annotation.json")
    if extra:
        more = load_benchmark_features(extra[0], extra[1] / "train")
        if not more:
            raise ValueError(f"{extra[0]}: no descriptors of {extra[1] / 'train'}'s videos")
        train |= {EXTRA_PREFIX + v: d for v, d in more.items()}
        ann |= {
            EXTRA_PREFIX + q: {label: [EXTRA_PREFIX + v for v in vids] for label, vids in labels.items()}
            for q, labels in read_annotations(extra[1] / "train" / "annotation.json").items()
        }
    return train, ann


def global_vectors(features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Average of the L2-normalised segment descriptors, L2-normalised: the paper's global audio vector."""
    out = {}
    for vid, desc in features.items():
        d = desc / np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
        g = d.mean(axis=0)
        out[vid] = g / max(float(np.linalg.norm(g)), 1e-12)
    return out


@dataclass(frozen=True)
class Triplets:
    items: list[tuple[str, str, str]]
    stats: dict[str, Any]


def mine_triplets(
    features: Mapping[str, np.ndarray],
    annotations: Mapping[str, Mapping[str, Sequence[str]]],
    pos_max: float,
    margin: float,
) -> Triplets:
    glob = global_vectors(features)
    ids = sorted(glob)
    matrix = np.stack([glob[v] for v in ids])
    items, pos_total, pos_kept = [], 0, 0
    pos_dist = []
    for anchor, labels in sorted(annotations.items()):
        if anchor not in glob:
            continue
        dist = np.linalg.norm(matrix - glob[anchor], axis=1)
        d = dict(zip(ids, dist))
        excluded = set(labels.get(DA, [])) | set(labels.get(JUNK, [])) | {anchor}
        negatives = [v for v in ids if v not in excluded]
        for pos in sorted(labels.get(DA, [])):
            if pos not in d:
                continue
            pos_total += 1
            pos_dist.append(float(d[pos]))
            if d[pos] >= pos_max:
                continue
            pos_kept += 1
            items += [(anchor, pos, n) for n in negatives if d[n] < d[pos] + margin]
    stats = {
        "positive_pairs": pos_total,
        "positive_pairs_kept": pos_kept,
        "triplets": len(items),
        "positive_distance_median": round(float(np.median(pos_dist)), 4) if pos_dist else None,
    }
    return Triplets(items, stats)


def positive_distances(
    features: Mapping[str, np.ndarray], annotations: Mapping[str, Mapping[str, Sequence[str]]]
) -> np.ndarray:
    """Global-vector distance of every annotated (query, DA) pair that has features."""
    glob = global_vectors(features)
    return np.array(
        [
            float(np.linalg.norm(glob[q] - glob[p]))
            for q, labels in sorted(annotations.items())
            if q in glob
            for p in sorted(labels.get(DA, []))
            if p in glob
        ]
    )


def mining_thresholds(cfg: TrainingConfig, distances: np.ndarray) -> tuple[float, float]:
    """(positive_max_distance, negative_margin) for mining.

    The paper's values were tuned on AudioSet features; another backbone spreads its descriptors
    differently (this suite's trained backbone: median positive distance 0.23, so 0.175 drops most
    positives). `calibrated` keeps the paper's ratio of the two and rescales both so that the
    `positive_quantile` of this backbone's positive distances is kept.
    """
    pos_max, margin = float(cfg.positive_max_distance), float(cfg.negative_margin)
    if cfg.mining == "paper" or distances.size == 0:
        return pos_max, margin
    # an observed distance at or above the quantile, nudged up: mining keeps d < pos_max, so at least that share
    observed = np.quantile(distances, cfg.positive_quantile, method="higher")
    calibrated = float(np.nextafter(observed, np.inf))
    return calibrated, margin * calibrated / pos_max


def pca_sample(features: Mapping[str, np.ndarray], size: int, seed: int) -> np.ndarray:
    rows = np.concatenate([features[v] for v in sorted(features)])
    if rows.shape[0] > size:
        rows = rows[np.sort(np.random.default_rng(seed).choice(rows.shape[0], size, replace=False))]
    return rows


def validation_map(
    model: AuSiL,
    val: Mapping[str, np.ndarray | torch.Tensor],
    bench_dir: Path,
    device: torch.device,
    whitened: bool = False,
) -> float:
    ann = read_annotations(bench_dir / "annotation.json")
    queries = {q: val[q] for q in ann if q in val}
    results = ausil_scores(model, queries, val, device, whitened=whitened)
    return evaluate(ann, results, [DA], read_ids(bench_dir / "dataset_ids.txt"), ignore_labels=[JUNK]).map


def whitener(model: AuSiL, device: torch.device) -> Callable[[Mapping[str, np.ndarray]], dict[str, torch.Tensor]]:
    """Descriptors -> `model.whiten`ed tensors on `device`, computed as `embed` computes them."""

    @torch.no_grad()
    def white(features: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {v: model.whiten(torch.from_numpy(d).to(device)) for v, d in features.items()}

    return white


def train_ausil(
    params: Params,
    features_dir: str | os.PathLike[str],
    corpus_dir: str | os.PathLike[str],
    output: str | os.PathLike[str],
    curve_path: str | os.PathLike[str],
    backbone_label: str,
    progress: bool = True,
    cross: tuple[str | os.PathLike[str], str | os.PathLike[str]] | None = None,
    extra: tuple[str | os.PathLike[str], str | os.PathLike[str]] | None = None,
) -> dict[str, Any]:
    """Learn PCA, mine triplets, train `max_steps` steps (`budget_s` is a safety cap), keep the best checkpoint.

    With `extra` (features dir, corpus dir) the PCA and the triplets come from that corpus's train split as
    well as this one's (params.yaml `train_corpus`); validation is unchanged.

    The best checkpoint maximises val mAP, or, with `cross` (features dir, cross-corpus dir), the
    weighted mean of val and cross-corpus val mAP (`cross_corpus.selection_weight`). A checkpoint
    written at every validation lets a killed run resume where it stopped, with the same triplet
    draws as an uninterrupted run.
    """
    cfg = params.training
    seed = cfg.seed
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = resolve_device(params.device)
    features_dir, corpus_dir = Path(features_dir), Path(corpus_dir)
    backbone_label = recorded_backbone(features_dir, backbone_label)
    for other in (cross, extra):
        if other and (other_label := recorded_backbone(other[0], backbone_label)) != backbone_label:
            raise ValueError(f"{other[0]}: descriptors of '{other_label}', but {features_dir} holds '{backbone_label}'")
    extra_dirs = (Path(extra[0]), Path(extra[1])) if extra else None
    train, train_ann = training_material(features_dir, corpus_dir, extra_dirs)
    val = load_benchmark_features(features_dir, corpus_dir / "val")
    model = AuSiL(dims=descriptor_width(train, features_dir), variant="full")
    model.set_pca(*learn_pca(pca_sample(train, cfg.pca_sample_size, seed), float(cfg.pca_eps)))
    model.to(device)
    pos_max, margin = mining_thresholds(cfg, positive_distances(train, train_ann))
    triplets = mine_triplets(train, train_ann, pos_max, margin)
    if not triplets.items:
        raise ValueError(f"no training triplet: {triplets.stats}; raise training.positive_max_distance")
    # whitening is fixed from here on: each video is whitened once, not at every step and validation
    white = whitener(model, device)
    train_t = white(train)
    opt = adam(model.parameters(), float(cfg.learning_rate))
    gamma, r = float(cfg.gamma), float(cfg.r)
    batch, budget = cfg.batch_triplets, float(cfg.budget_s)
    eval_every, max_steps = cfg.eval_every, cfg.max_steps
    weight = params.cross_corpus.selection_weight if cross else 0.0
    val_t = white(val)
    cross_val = white(load_benchmark_features(Path(cross[0]), Path(cross[1]) / "val")) if cross else {}

    def validate() -> dict[str, float]:
        """val mAP, cross-corpus val mAP and the selection score they make (rounded as stored)."""
        out = {"val_map": round(validation_map(model, val_t, corpus_dir / "val", device, whitened=True), 5)}
        if cross:
            cross_dir = Path(cross[1]) / "val"
            out["cross_val_map"] = round(validation_map(model, cross_val, cross_dir, device, whitened=True), 5)
        out["selection"] = round((1 - weight) * out["val_map"] + weight * out.get("cross_val_map", 0.0), 5)
        return out

    best = {**validate(), "step": 0}
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    curve = [{"step": 0, "loss": None, **{k: v for k, v in best.items() if k != "step"}, "seconds": 0.0}]
    step, elapsed = 0, 0.0
    ckpt = Path(output).with_name(Path(output).name + ".ckpt")
    extra_note = (
        {
            "corpus": str(extra[1]),
            "videos": sum(v.startswith(EXTRA_PREFIX) for v in train),
            "queries": sum(q.startswith(EXTRA_PREFIX) for q in train_ann),
        }
        if extra
        else None
    )
    if ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        same = state["config"] == plain(cfg) and state["backbone"] == backbone_label
        same = same and state.get("optimizer_kind") == OPTIMIZER_KIND
        if same and state.get("selection") == weight and state.get("extra") == extra_note:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            rng.bit_generator.state = state["rng"]
            step, elapsed, best, best_state, curve = (
                state[k] for k in ("step", "elapsed", "best", "best_state", "curve")
            )
    start = time.perf_counter() - elapsed
    bar = tqdm(total=max_steps, initial=step, desc="ausil", unit="step", disable=not progress)
    while step < max_steps and time.perf_counter() - start < budget:
        model.train()
        picks = rng.choice(len(triplets.items), size=min(batch, len(triplets.items)), replace=False)
        losses = []
        for i in picks:
            a, p, n = triplets.items[int(i)]
            loss, _ = triplet_loss(model, train_t[a], train_t[p], train_t[n], gamma, r)
            losses.append(loss)
        total = torch.stack(losses).mean()
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        step += 1
        bar.update(1)
        point: dict[str, Any] = {
            "step": step,
            "loss": round(total.item(), 5),
            "seconds": round(time.perf_counter() - start, 1),
        }
        if step % eval_every == 0:
            point.update(validate())
            if point["selection"] > best["selection"]:
                best = {k: v for k, v in point.items() if k in ("val_map", "cross_val_map", "selection")}
                best["step"] = step
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            bar.set_postfix(loss=f"{point['loss']:.3f}", val_map=f"{point['val_map']:.3f}")
        curve.append(point)
        if step % eval_every == 0:
            _checkpoint(
                ckpt,
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "step": step,
                    "rng": rng.bit_generator.state,
                    "elapsed": time.perf_counter() - start,
                    "best": best,
                    "best_state": best_state,
                    "curve": curve,
                    "config": plain(cfg),
                    "backbone": backbone_label,
                    "selection": weight,
                    "extra": extra_note,
                    "optimizer_kind": OPTIMIZER_KIND,
                },
            )
    bar.close()
    model.load_state_dict(best_state)
    seconds = round(time.perf_counter() - start, 1)
    meta = {
        "backbone": backbone_label,
        "steps": step,
        "stopped_by": "max_steps" if step >= max_steps else "time cap (not reproducible)",
        "best_step": best["step"],
        "val_map": best["val_map"],
        "cross_val_map": best.get("cross_val_map"),
        "selection": "val mAP" if not cross else f"{1 - weight:g} x val mAP + {weight:g} x cross-corpus val mAP",
        "triplets": triplets.stats,
        "extra_training_corpus": extra_note,
        "mining": {"mode": cfg.mining, "positive_max_distance": round(pos_max, 5), "negative_margin": round(margin, 5)},
        "pca_sample": int(min(cfg.pca_sample_size, sum(d.shape[0] for d in train.values()))),
        "config": plain(cfg),
        "numerics": numerics_settings(),
    }
    # the wall time goes to the report only: the same training writes the same model file, so DVC
    # re-runs nothing downstream of a retraining that changed no weight
    save_model(output, model.cpu(), meta)
    meta = {**meta, "seconds": seconds}
    atomic_write_json(curve_path, curve)
    atomic_write_json(Path(curve_path).with_suffix(".meta.json"), meta)
    ckpt.unlink(missing_ok=True)
    return meta


def _checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)
