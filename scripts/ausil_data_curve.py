"""AuSiL's similarity network against the amount of its training data: a learning curve (issue 13).

With the substitute backbone, full AuSiL does not beat its own MAC + whitening (Chamfer similarity of
the whitened segment vectors, no network). The paper trained the network on VCDB for about 30 hours;
here it sees the triplets of 38 training queries. This script asks whether more annotated training
data would close the gap: it trains the network (params.yaml `training`, the `train@main` recipe and
model selection) with its triplets mined from only the first K training queries, for each K given,
and scores the chosen checkpoint on the selection sets (`val`, cross-corpus `val`) beside MAC + W.
Everything else (features, PCA sample, negatives' pool, validation) is the default run's. `test` is
never read. Rows are merged into --output by K; the ablations notebook shows them.

    python scripts/ausil_data_curve.py --queries 5,10,19,38

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

from ausil_lib.core.config import Params, load_params, plain, resolve_device
from ausil_lib.core.formats import atomic_write_json, read_annotations
from ausil_lib.models.ausil import AuSiL, learn_pca
from ausil_lib.models.backbone import load_backbone
from ausil_lib.models.training import load_benchmark_features, pca_sample, train_ausil, validation_map

CORPUS = Path("data/corpus")
CROSS = (Path("features/cross_main"), Path("data/cross_corpus"))
FEATURES = Path("features/main")


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


def mac_w_reference(params: Params) -> dict[str, float]:
    """MAC + W mAP on the selection sets: the similarity without any network, PCA as the training learns it."""
    cfg = params.training
    train = load_benchmark_features(FEATURES, CORPUS / "train")
    model = AuSiL(variant="mac_w")
    model.set_pca(*learn_pca(pca_sample(train, cfg.pca_sample_size, cfg.seed), float(cfg.pca_eps)))
    device = resolve_device(params.device)
    model.to(device).eval()
    val = load_benchmark_features(FEATURES, CORPUS / "val")
    cross = load_benchmark_features(CROSS[0], CROSS[1] / "val")
    return {
        "val_mac_w": round(validation_map(model, val, CORPUS / "val", device), 5),
        "cross_val_mac_w": round(validation_map(model, cross, CROSS[1] / "val", device), 5),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queries", required=True, help="comma-separated numbers of training queries (K)")
    ap.add_argument("--work", default=".cache/ausil_data_curve", help="subset corpora, models (default: %(default)s)")
    ap.add_argument("--output", default="reports/ablations/ausil_data_curve.json")
    args = ap.parse_args()

    params = load_params()
    # budget_s is the pipeline's safety cap; a probe run beside other jobs must still reach max_steps
    cfg = params.training
    params = replace(params, training=replace(cfg, budget_s=max(cfg.budget_s, 60.0 * cfg.max_steps)))
    _, info = load_backbone(params)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    reference = mac_w_reference(params)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out_path = Path(args.output)
    for k in sorted({int(s) for s in args.queries.split(",") if s}):
        corpus, positives = subset_corpus(work, k)
        meta = train_ausil(
            params,
            FEATURES,
            corpus,
            work / f"ausil_q{k}.pt",
            work / f"curve_q{k}.json",
            info.label,
            progress=False,
            cross=(str(CROSS[0]), str(CROSS[1])),
        )
        row = {
            "queries": k,
            "positive_pairs": positives,
            "triplets": meta["triplets"],
            "steps": meta["steps"],
            "stopped_by": meta["stopped_by"],
            "best_step": meta["best_step"],
            "val_map": meta["val_map"],
            "cross_val_map": meta["cross_val_map"],
            **reference,
            "train_seconds": meta["seconds"],
            "backbone": info.label,
            "commit": commit,
            "config": plain(params.training),
        }
        print(f"K={k}", json.dumps({key: row[key] for key in ("best_step", "val_map", "cross_val_map")}), flush=True)
        # read just before writing, so that rows another run wrote meanwhile are kept
        rows = json.loads(out_path.read_text()) if out_path.is_file() else {}
        atomic_write_json(out_path, dict(sorted((rows | {f"q{k}": row}).items(), key=lambda kv: int(kv[0][1:]))))


if __name__ == "__main__":
    main()
