"""Does AuSiL's similarity network transfer when it trains on more varied recordings? (issue 13)

The data curve (`scripts/ausil_data_curve.py`) trained the network on 5 to 38 queries of the main
corpus and saw no change: always below MAC + W on the cross-corpus `val`. Those queries come from 30
recordings. This probe varies the recordings instead: it builds params.yaml `train_corpus` (the main
corpus's construction on `backbone_sources`, pinned Debian packages and espeak-ng voices that neither
corpus uses) with another construction seed or number of queries per recording, extracts it with the
run's backbone, and trains the network as `train@main` trains it, on the main train split's triplets
plus that corpus's (`train_ausil(extra=…)`). With params.yaml's own settings it reads the pipeline's
data/train_corpus and features/train_main and repeats `train@main`; other seeds show how much the gain
depends on which clips were drawn. `test` is never read.

    python scripts/ausil_variety_probe.py
    python scripts/ausil_variety_probe.py --seed 4
    python scripts/ausil_variety_probe.py --seed 3 --queries-per-recording 2

Whitening is learnt from all training videos, so the extra corpus also moves MAC + W: the row's MAC + W
columns use the main train split's whitening (the pipeline's before `train_corpus`), `merged_whitening`
the whitening of both. Run from the repository root after `make repro` (it reads data/backbone_sources,
features/main, features/cross_main, data/corpus and data/cross_corpus). Rows go to
reports/ablations/ausil_data_curve.json, beside the data curve's, with the recipe naming the corpus.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import ausil_lib  # noqa: F401  (pins the numeric paths before torch loads)

# isort: split
from ausil_data_curve import (
    CORPUS,
    CROSS_CORPUS,
    CROSS_FEATURES,
    FEATURES,
    add_row,
    mac_w_reference,
    speed_map,
    training_columns,
)

from ausil_lib.core.config import TrainCorpusConfig, load_params, plain, train_corpus_params
from ausil_lib.core.formats import read_annotations, read_video_list
from ausil_lib.datasets.embedded.corpus import build_corpus
from ausil_lib.features.extraction import Extractor
from ausil_lib.models.ausil import load_model
from ausil_lib.models.backbone import load_backbone
from ausil_lib.models.training import (
    train_ausil,
    training_material,
)

PIPELINE_CORPUS = Path("data/train_corpus")
PIPELINE_FEATURES = Path("features/train_main")
PIPELINE_SUMMARY = Path("reports/train_corpus_summary.json")


def probe_corpus(shipped: TrainCorpusConfig, seed: int | None, queries_per_recording: int | None) -> TrainCorpusConfig:
    """params.yaml's training corpus with the asked seed and queries per recording (None: keep params.yaml's)."""
    return replace(
        shipped,
        seed=shipped.seed if seed is None else seed,
        queries_per_recording=shipped.queries_per_recording if queries_per_recording is None else queries_per_recording,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=None, help="the corpus's construction seed (params.yaml's)")
    ap.add_argument("--queries-per-recording", type=int, default=None, help="(params.yaml's)")
    ap.add_argument("--sources", type=Path, default=Path("data/backbone_sources"))
    ap.add_argument("--work", type=Path, default=Path(".cache/ausil_variety"))
    ap.add_argument("--output", type=Path, default=Path("reports/ablations/ausil_data_curve.json"))
    args = ap.parse_args()

    params = load_params()
    shipped = params.train_corpus
    tc = probe_corpus(shipped, args.seed, args.queries_per_recording)
    params = replace(params, train_corpus=tc)
    tag = f"seed{tc.seed}_q{tc.queries_per_recording}"
    _, info = load_backbone(params)
    if tc == shipped:  # params.yaml's own corpus: the pipeline's files, as train@main reads them
        corpus, features = PIPELINE_CORPUS, PIPELINE_FEATURES
        summary = json.loads(PIPELINE_SUMMARY.read_text())
    else:
        corpus, features = args.work / f"corpus_{tag}", args.work / f"features_{tag}"
        summary = build_corpus(train_corpus_params(params), args.sources, corpus, args.work / f"summary_{tag}.json")
        report = Extractor.from_params(params).run(read_video_list(corpus / "all_videos.txt"), features)
        if report.failed:
            example = next(iter(report.failed.items()))
            raise SystemExit(f"{features}: {len(report.failed)} videos failed, e.g. {example}")
    bench = summary["benchmarks"]["train"]
    print(f"{corpus}: {bench['queries']} queries, {bench['database']} videos, {summary['hours']:.2f} h", flush=True)

    name = f"train_corpus {tag} + main"
    cfg = params.training  # budget_s is the pipeline's safety cap; a probe beside other jobs must reach max_steps
    params = replace(params, training=replace(cfg, budget_s=max(cfg.budget_s, 60.0 * cfg.max_steps)))
    model_path = args.work / f"ausil_{tag}.pt"
    meta = train_ausil(
        params,
        FEATURES,
        CORPUS,
        model_path,
        args.work / f"curve_{tag}.json",
        info.label,
        progress=False,
        cross=(str(CROSS_FEATURES), str(CROSS_CORPUS)),
        extra=(features, corpus),
    )
    main_train, _ = training_material(FEATURES, CORPUS, None)
    merged_train, _ = training_material(FEATURES, CORPUS, (features, corpus))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    row: dict[str, Any] = {
        "queries": len(read_annotations(CORPUS / "train" / "annotation.json")) + bench["queries"],
        "recipe": name,
        "train_corpus": {"queries": bench["queries"], "database": bench["database"], "hours": summary["hours"]},
        "positive_pairs": meta["triplets"]["positive_pairs"],
        **training_columns(meta),
        "cross_val_speed_map": speed_map(load_model(model_path)[0], params, CROSS_FEATURES),
        **mac_w_reference(params, FEATURES, CROSS_FEATURES, main_train),
        "merged_whitening": mac_w_reference(params, FEATURES, CROSS_FEATURES, merged_train),
        "backbone": info.label,
        "commit": commit,
        "config": plain(params.training),
        "cnn_init": "torch",
        "time_step_ms": params.features.time_step_ms,
    }
    shown = ("best_step", "val_map", "cross_val_map", "cross_val_speed_map", "merged_whitening")
    print(name, json.dumps({k: row[k] for k in shown}), flush=True)
    add_row(args.output, name, row)


if __name__ == "__main__":
    main()
