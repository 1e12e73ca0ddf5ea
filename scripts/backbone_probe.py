"""Probe a backbone recipe without the whole pipeline: val and cross-corpus mAP of its MAC descriptors.

Issue 13 asks which levers make the offline substitute backbone better. A full `dvc repro` per lever
costs ~45 min here, so this probe trains the backbone once (params.yaml `backbone_training` plus
--set overrides), keeps snapshots at the given steps, and scores each snapshot's plain MAC and MAC +
whitening (PCA from train-split videos) on the main corpus's `val` and on the cross-corpus `val` and
`val_speed`. No AuSiL network is trained, and `test` is never read. Rows are merged into --output by
name, with the commit and the settings that made them; the ablations notebook shows them.

    python scripts/backbone_probe.py --name steps400 --max-steps 400 --snapshots 100,200,400
    python scripts/backbone_probe.py --name untrained --random
    python scripts/backbone_probe.py --name temp0.05 --set temperature=0.05
    python scripts/backbone_probe.py --name extra-sources --set extra_sources=true --snapshots 200,400 --max-steps 400
    python scripts/backbone_probe.py --name shipped-bn-identity --weights models/backbone.pt --bn-identity
    python scripts/backbone_probe.py --name step250ms --weights models/backbone.pt --set features.time_step_ms=250
    python scripts/backbone_probe.py --name step500ms --weights models/backbone.pt --set features.time_step_ms=500 \
        --whole-train   # then: scripts/ausil_data_curve.py --features .cache/backbone_probe/step500ms/features_step0

A dotted --set key (`features.time_step_ms`) overrides that params.yaml section instead of backbone_training.

Run from the repository root after `make repro` (it reads data/sources, data/backbone_sources, data/corpus,
data/cross_corpus).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import ausil_lib  # noqa: F401  (pins the numeric paths before torch loads)

# isort: split
import torch

from ausil_lib.core.config import Params, load_params, plain, resolve_device
from ausil_lib.core.formats import atomic_write_json, read_video_list
from ausil_lib.features.extraction import Extractor, open_features
from ausil_lib.features.logmel import FeatureConfig
from ausil_lib.models.ausil import AuSiL, learn_pca
from ausil_lib.models.backbone import BackboneInfo, KumarCNN, MacExtractor
from ausil_lib.models.backbone_training import train_backbone
from ausil_lib.models.training import load_benchmark_features, pca_sample, validation_map

# (label, corpus dir, benchmark) of every set a snapshot is scored on
SETS = (
    ("val", "data/corpus", "val"),
    ("cross_val", "data/cross_corpus", "val"),
    ("cross_val_speed", "data/cross_corpus", "val_speed"),
)
PCA_VIDEOS = 120  # train-split videos the whitening is learnt from (every 3rd: the same for every snapshot)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def with_sections(params: Params, overrides: dict[str, Any]) -> Params:
    """params with `section.key` overrides applied (e.g. features.time_step_ms), each section rebuilt
    through its dataclass so that an unknown key fails by name."""
    for dotted, value in overrides.items():
        section, key = dotted.split(".", 1)
        params = replace(params, **{section: replace(getattr(params, section), **{key: value})})
    return params


def extractor(params: Params, model: KumarCNN, label: str) -> Extractor:
    bb = params.backbone
    mac = MacExtractor(model.eval(), resolve_device(params.device), fuse_bn=bb.fuse_bn, channels_last=bb.channels_last)
    info = BackboneInfo("trained", label, label)
    return Extractor(mac, info, FeatureConfig.from_params(params), params.audio, params.extract.batch_size)


def reset_batchnorm(model: torch.nn.Module) -> None:
    """Running mean 0 and variance 1 in every BatchNorm, as a freshly built network has them: the
    untrained network's lead on original queries comes mostly from this (docs/history.md)."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()


def pca_videos(train: dict[str, str]) -> dict[str, str]:
    """The train-split videos the whitening is learnt from: every 3rd id, the same for every snapshot."""
    return {v: train[v] for v in sorted(train)[::3][:PCA_VIDEOS]}


def videos_to_extract(whole_train: bool = False) -> dict[str, dict[str, str]]:
    """{feature subdir: {video id: path}}: the PCA sample of train (or all of train), and every set's database."""
    train = read_video_list("data/corpus/train/database.txt")
    out = {"main": dict(train) if whole_train else pca_videos(train), "cross": {}}
    for _, corpus, bench in SETS:
        key = "cross" if "cross" in corpus else "main"
        out[key].update(read_video_list(Path(corpus, bench, "database.txt")))
    return out


def score(params: Params, feat_dir: Path) -> dict[str, float]:
    """mAP of MAC and MAC + W on every set (JUNK left out), as AuSiL's training validates."""
    cfg = params.training
    # the PCA sample only, also after --whole-train extracted all of train, so that a row does not depend on it
    stored = open_features(feat_dir / "main")
    train = {v: stored.get(v) for v in pca_videos(read_video_list("data/corpus/train/database.txt")) if v in stored}
    mean, weights = learn_pca(pca_sample(train, cfg.pca_sample_size, cfg.seed), float(cfg.pca_eps))
    out = {}
    for label, corpus, bench in SETS:
        d = Path(corpus, bench)
        feats = load_benchmark_features(feat_dir / ("cross" if "cross" in corpus else "main"), d)
        for variant in ("mac", "mac_w"):
            model = AuSiL(dims=mean.shape[0], variant=variant)  # a backbone of another width too
            model.set_pca(mean, weights)
            out[f"{label}_{variant}"] = round(validation_map(model.eval(), feats, d, torch.device("cpu")), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", required=True, help="row name in --output")
    ap.add_argument("--max-steps", type=int, default=None, help="override backbone_training.max_steps")
    ap.add_argument("--snapshots", default="", help="comma-separated steps to score (default: the last)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="backbone_training override; SECTION.KEY=VALUE overrides another params.yaml section",
    )
    ap.add_argument("--random", action="store_true", help="score the untrained, seeded backbone instead")
    ap.add_argument("--weights", default=None, help="score this trained backbone file (ausil format) instead")
    ap.add_argument(
        "--bn-identity",
        action="store_true",
        help="score with every BatchNorm's running statistics reset to mean 0, variance 1 (an untrained network's)",
    )
    ap.add_argument(
        "--whole-train",
        action="store_true",
        help="extract every train-split video, not only the PCA sample (for scripts/ausil_data_curve.py --features)",
    )
    ap.add_argument("--work", default=".cache/backbone_probe", help="snapshots and features (default: %(default)s)")
    ap.add_argument("--output", default="reports/ablations/backbone_probe.json")
    args = ap.parse_args()

    params = load_params()
    overrides = {k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}
    if args.max_steps is not None:
        overrides["max_steps"] = args.max_steps
    params = with_sections(params, {k: v for k, v in overrides.items() if "." in k})
    cfg = replace(params.backbone_training, **{k: v for k, v in overrides.items() if "." not in k})
    params = replace(params, backbone_training=replace(cfg, budget_s=max(cfg.budget_s, 10 * cfg.max_steps)))
    work = Path(args.work) / args.name
    work.mkdir(parents=True, exist_ok=True)
    wanted = sorted({int(s) for s in args.snapshots.split(",") if s} | ({0} if args.random else {cfg.max_steps}))
    snapshots: dict[int, Path] = {}
    train_s = None
    if args.weights:
        blob = torch.load(args.weights, map_location="cpu", weights_only=True)
        torch.save(blob["state_dict"], work / "step0.pt")
        wanted, snapshots = [0], {0: work / "step0.pt"}
    elif args.random:
        torch.manual_seed(params.backbone.random_seed)
        torch.save(KumarCNN().state_dict(), work / "step0.pt")
        snapshots[0] = work / "step0.pt"
    else:
        if any(not (work / f"step{k}.pt").is_file() for k in wanted):
            params = replace(
                params, backbone_training=replace(params.backbone_training, checkpoint_every=min(wanted + [25]))
            )

            def keep(step: int, model: torch.nn.Module) -> None:
                if step in wanted:
                    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                    torch.save(state, work / f"step{step}.pt")

            start = time.perf_counter()
            train_backbone(
                params,
                "data/sources",
                "data/corpus",
                work / "backbone.pt",
                work / "curve.json",
                extra_sources_dir="data/backbone_sources",
                on_checkpoint=keep,
            )
            train_s = round(time.perf_counter() - start, 1)
        snapshots = {k: work / f"step{k}.pt" for k in wanted}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out_path = Path(args.output)
    for step, path in snapshots.items():
        model = KumarCNN()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        if args.bn_identity:
            reset_batchnorm(model)
        feat_dir = work / f"features_step{step}"
        ex = extractor(params, model, f"probe {args.name} step {step}")
        start = time.perf_counter()
        for sub, videos in videos_to_extract(args.whole_train).items():
            report = ex.run(videos, feat_dir / sub, workers=params.extract.decode_workers, progress=False)
            if report.failed:
                raise SystemExit(f"{feat_dir / sub}: {len(report.failed)} videos failed: {sorted(report.failed)[:5]}")
        extract_s = round(time.perf_counter() - start, 1)
        key = f"{args.name}@{step}"
        row = {
            "name": args.name,
            "steps": step,
            "backbone": "untrained (random, seeded)" if args.random else "trained",
            "overrides": overrides,
            "weights": args.weights,
            "bn_identity": args.bn_identity,
            **score(params, feat_dir),
            "train_seconds": train_s,
            "extract_seconds": extract_s,
            "commit": commit,
            "config": None if args.random or args.weights else plain(params.backbone_training),
        }
        print(key, json.dumps({k: v for k, v in row.items() if k.endswith(("mac", "mac_w"))}), flush=True)
        # read just before writing, so that rows another probe wrote meanwhile are kept
        rows = json.loads(out_path.read_text()) if out_path.is_file() else {}
        atomic_write_json(out_path, dict(sorted((rows | {key: row}).items())))


if __name__ == "__main__":
    main()
