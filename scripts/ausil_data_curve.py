"""AuSiL's similarity network against the amount of its training data: a learning curve (issue 13).

With the substitute backbone, full AuSiL does not beat its own MAC + whitening (Chamfer similarity of
the whitened segment vectors, no network). The paper trained the network on VCDB for about 30 hours;
here it sees the triplets of 38 training queries. This script asks whether more annotated training
data would close the gap: it trains the network (params.yaml `training`, the `train@main` recipe and
model selection) with its triplets mined from only the first K training queries, for each K given,
and scores the chosen checkpoint on the selection sets (`val`, cross-corpus `val`) beside MAC + W.
Everything else (features, PCA sample, negatives' pool, validation) is the default run's. `test` is
never read. Rows are merged into --output by K and recipe; the ablations notebook shows them.
A recipe changes params.yaml `training` (--set) or how the similarity CNN starts (--cnn-init); the chosen
checkpoint is also scored on the cross-corpus `val_speed`, which takes no part in the choice:

    python scripts/ausil_data_curve.py --queries 5,10,19,38
    python scripts/ausil_data_curve.py --queries 38 --cnn-init identity --set learning_rate=0.0001
    python scripts/ausil_data_curve.py --queries 38 --features .cache/backbone_probe/step500ms/features_step0

--features trains and scores on a backbone probe's descriptors (scripts/backbone_probe.py --whole-train),
e.g. extracted at another time step; the row records the step they were extracted at, and --label
names descriptors of another backbone in the recipe (else the row would pass for the default's):

    python scripts/ausil_data_curve.py --queries 38 --label trained+musicnn-MSD_vgg \
        --features .cache/side_by_side_probe/trained+musicnn-MSD_vgg

Run from the repository root after `make repro` (it reads features/main, features/cross_main,
data/corpus and data/cross_corpus).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping
from unittest import mock

import ausil_lib  # noqa: F401  (pins the numeric paths before torch loads)

# isort: split
import numpy as np
import torch
from torch import nn

from ausil_lib.core.config import Params, load_params, plain, resolve_device
from ausil_lib.core.formats import atomic_write_json, read_annotations
from ausil_lib.features.extraction import stored_time_step_ms
from ausil_lib.models import training
from ausil_lib.models.ausil import AuSiL, SimilarityCNN, learn_pca, load_model
from ausil_lib.models.backbone import load_backbone
from ausil_lib.models.training import (
    descriptor_width,
    load_benchmark_features,
    pca_sample,
    train_ausil,
    validation_map,
)

CORPUS = Path("data/corpus")
CROSS_CORPUS = Path("data/cross_corpus")
FEATURES = Path("features/main")  # the default run's; --features names another (same layout: main/, cross/)
CROSS_FEATURES = Path("features/cross_main")
CNN_INITS = ("torch", "glorot", "identity")


def initialise_cnn(cnn: SimilarityCNN, scheme: str) -> None:
    """Set the similarity CNN's starting weights (it is seeded by the training just before).

    torch: left as built, the pipeline's training. glorot: Glorot-uniform kernels and zero biases, the
    defaults of the Keras layers in the authors' released graph. identity: as glorot, then channel 0 of
    each layer passes its input through (centre tap 1; +1 before the ReLUs, -1 at the 1x1 head, which
    reads only that channel), so the untrained network outputs the 4x4 max-pooled similarity map: the
    training starts from a Chamfer-like similarity instead of noise, and the other channels, which the
    head reads with weight 0, get gradients from the first step.
    """
    if scheme not in CNN_INITS:
        raise ValueError(f"--cnn-init must be one of {', '.join(CNN_INITS)}, got {scheme!r}")
    if scheme == "torch":
        return
    convs = (cnn.conv1, cnn.conv2, cnn.conv3, cnn.fconv)
    with torch.no_grad():
        for conv in convs:
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)
        if scheme == "identity":
            for conv in convs[:3]:
                conv.weight[0].zero_()
                conv.weight[0, 0, 1, 1] = 1.0
            cnn.conv1.bias[0] = 1.0  # similarities lie in [-1, 1]; shifted by 1 the ReLUs keep them
            cnn.fconv.weight.zero_()
            cnn.fconv.weight[0, 0] = 1.0
            cnn.fconv.bias[0] = -1.0


def initialised(scheme: str) -> Callable[..., AuSiL]:
    """A drop-in for the AuSiL class that `train_ausil` builds its model with, starting its CNN by `scheme`."""

    def build(*args: Any, **kwargs: Any) -> AuSiL:
        model = AuSiL(*args, **kwargs)
        initialise_cnn(model.cnn, scheme)
        return model

    return build


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def subset_corpus(work: Path, k: int) -> tuple[Path, int]:
    """A corpus directory whose train annotation keeps the first k queries (sorted ids); its videos,
    val split and every other file are the default corpus's. Returns it and its positive pairs."""
    ann = read_annotations(CORPUS / "train" / "annotation.json")
    if not 0 < k <= len(ann):
        raise SystemExit(f"--queries: {k} is not between 1 and the {len(ann)} training queries")
    keep = sorted(ann)[:k]
    root = work / f"q{k}"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(CORPUS / "train", root / "train", ignore=shutil.ignore_patterns("annotation.json", "queries.txt"))
    (root / "train" / "annotation.json").write_text(json.dumps({q: ann[q] for q in keep}, indent=1, sort_keys=True))
    (root / "train" / "queries.txt").write_text("".join(f"{q}\n" for q in keep))
    (root / "val").symlink_to((CORPUS / "val").resolve(), target_is_directory=True)
    return root, sum(len(ann[q].get("DA", [])) for q in keep)


def speed_map(model: AuSiL, params: Params, cross_features: Path) -> float:
    """mAP on the cross-corpus val_speed (speed-changed queries; not a selection set)."""
    device = resolve_device(params.device)
    feats = load_benchmark_features(cross_features, CROSS_CORPUS / "val_speed")
    return round(validation_map(model.to(device).eval(), feats, CROSS_CORPUS / "val_speed", device), 5)


def mac_w_reference(
    params: Params, features: Path, cross_features: Path, train: Mapping[str, np.ndarray] | None = None
) -> dict[str, float]:
    """MAC + W mAP on the selection sets (and the cross-corpus val_speed): the similarity without any
    network, PCA as the training learns it (from `train`'s descriptors; default: the train split's)."""
    cfg = params.training
    train = load_benchmark_features(features, CORPUS / "train") if train is None else train
    model = AuSiL(dims=descriptor_width(train, features), variant="mac_w")
    model.set_pca(*learn_pca(pca_sample(train, cfg.pca_sample_size, cfg.seed), float(cfg.pca_eps)))
    device = resolve_device(params.device)
    model.to(device).eval()
    val = load_benchmark_features(features, CORPUS / "val")
    cross = load_benchmark_features(cross_features, CROSS_CORPUS / "val")
    return {
        "val_mac_w": round(validation_map(model, val, CORPUS / "val", device), 5),
        "cross_val_mac_w": round(validation_map(model, cross, CROSS_CORPUS / "val", device), 5),
        "cross_val_speed_mac_w": speed_map(model, params, cross_features),
    }


def training_columns(meta: dict[str, Any]) -> dict[str, Any]:
    """A row's columns that come from `train_ausil`'s meta: the training and its chosen checkpoint."""
    keys = ("triplets", "steps", "stopped_by", "best_step", "val_map", "cross_val_map")
    return {key: meta[key] for key in keys} | {"train_seconds": meta["seconds"]}


def add_row(out_path: Path, name: str, row: dict[str, Any]) -> None:
    """Write `row` under `name` (replacing an earlier run of the same recipe) and keep the other rows.

    The file is read just before writing, so rows another probe wrote meanwhile are kept."""
    rows = json.loads(out_path.read_text()) if out_path.is_file() else {}
    atomic_write_json(out_path, rows | {name: row})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queries", required=True, help="comma-separated numbers of training queries (K)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="params.yaml training override")
    ap.add_argument("--cnn-init", choices=CNN_INITS, default="torch", help="the CNN's starting weights (%(default)s)")
    ap.add_argument(
        "--features",
        type=Path,
        default=None,
        help="a backbone probe's feature dir (main/ and cross/ inside, e.g. another time step) instead of the run's",
    )
    ap.add_argument(
        "--label", default=None, help="names --features in the row's recipe (e.g. the probe row they come from)"
    )
    ap.add_argument("--work", default=".cache/ausil_data_curve", help="subset corpora, models (default: %(default)s)")
    ap.add_argument("--output", default="reports/ablations/ausil_data_curve.json")
    args = ap.parse_args()

    params = load_params()
    overrides = {k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}
    features, cross_features = FEATURES, CROSS_FEATURES
    if args.features:
        features, cross_features = args.features / "main", args.features / "cross"
    try:
        step = stored_time_step_ms(features)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    changes = overrides | ({"cnn_init": args.cnn_init} if args.cnn_init != "torch" else {})
    if step != params.features.time_step_ms:
        changes["time_step_ms"] = step
    if args.label:
        changes["features"] = args.label
    recipe = " ".join(f"{k}={v}" for k, v in sorted(changes.items())) or "default"
    # budget_s is the pipeline's safety cap; a probe run beside other jobs must still reach max_steps
    cfg = replace(params.training, **overrides)
    params = replace(params, training=replace(cfg, budget_s=max(cfg.budget_s, 60.0 * cfg.max_steps)))
    _, info = load_backbone(params)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    reference = mac_w_reference(params, features, cross_features)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out_path = Path(args.output)
    for k in sorted({int(s) for s in args.queries.split(",") if s}):
        name = f"q{k}" if not changes else f"q{k} {recipe}"
        corpus, positives = subset_corpus(work, k)
        with mock.patch.object(training, "AuSiL", initialised(args.cnn_init)):
            meta = train_ausil(
                params,
                features,
                corpus,
                work / f"ausil_{name}.pt",
                work / f"curve_{name}.json",
                info.label,
                progress=False,
                cross=(str(cross_features), str(CROSS_CORPUS)),
            )
        row = {
            "queries": k,
            "recipe": recipe,
            "positive_pairs": positives,
            **training_columns(meta),
            "cross_val_speed_map": speed_map(load_model(work / f"ausil_{name}.pt")[0], params, cross_features),
            **reference,
            "backbone": info.label,
            "commit": commit,
            "config": plain(params.training),
            "cnn_init": args.cnn_init,
            "time_step_ms": step,
        }
        shown = ("best_step", "val_map", "cross_val_map", "cross_val_speed_map")
        print(name, json.dumps({key: row[key] for key in shown}), flush=True)
        add_row(out_path, name, row)


if __name__ == "__main__":
    main()
