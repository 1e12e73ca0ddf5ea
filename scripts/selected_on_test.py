"""Score stored descriptors and an AuSiL model on `test` and `test_speed`, after the choice was made.

Issue 13's probes choose on `val` and the cross-corpus sets and never read `test`. Once a configuration
has been chosen or set aside there, a reader still asks what it gives on `test`: this script answers
without a full pipeline run, and its numbers never feed a choice. Each --row names a directory of
per-video descriptor files that holds the test and test_speed databases, and an AuSiL model file trained
on such descriptors (its PCA is the whitening). A row is scored as the pipeline's `ausil` stages score
one: variants mac, mac_w and full, per-query AP (the ablations notebook draws the bootstrap intervals and
each row's paired difference to the pipeline's row), and the split of the README's `hardcases` table.
The pipeline's own row (features/main, models/ausil_main.pt) is checked against the committed metrics.

    python scripts/pretrained_probe.py --model MSD_vgg --test-sets
    python scripts/selected_on_test.py --row default features/main models/ausil_main.pt \\
        --row trained+musicnn-MSD_vgg features/main \\
              ".cache/ausil_data_curve/ausil_q38 features=trained+musicnn-MSD_vgg.pt" \\
        --beside trained+musicnn-MSD_vgg .cache/pretrained_probe/features_MSD_vgg/test

--beside NAME DIR joins DIR's descriptors beside row NAME's, segment by segment, as
scripts/side_by_side_probe.py joins them for the selection sets.

Rows are merged into --output by name; the ablations notebook shows them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
from pathlib import Path
from typing import Any

import ausil_lib  # noqa: F401  (pins the numeric paths before torch loads)

# isort: split
from ausil_lib.core.config import load_params
from ausil_lib.core.formats import atomic_write_json, read_annotations, read_ids, write_results
from ausil_lib.core.labels import DA, JUNK
from ausil_lib.features.extraction import stored_time_step_ms
from ausil_lib.features.join import join_descriptors
from ausil_lib.models.ausil import load_model
from ausil_lib.models.training import load_benchmark_features
from ausil_lib.report.breakdowns import hard_case_summary
from ausil_lib.retrieval.evaluation import evaluate
from ausil_lib.retrieval.runner import ausil_scores

SETS = ("test", "test_speed")
VARIANTS = ("mac", "mac_w", "full")
PIPELINE = (Path("features/main"), Path("models/ausil_main.pt"))  # checked against metrics/ausil-<variant>-main


def descriptors(features: Path, beside: Path | None, bench: Path) -> dict[str, Any]:
    """Every stored video of a benchmark; with `beside`, that directory's descriptors joined to each."""
    feats = load_benchmark_features(features, bench)
    if beside is None:
        return feats
    # files without a stored signature were cut at params.yaml's step, as side_by_side_probe assumes
    second, step = (
        load_benchmark_features(beside, bench),
        stored_time_step_ms(features, load_params().features.time_step_ms),
    )
    missing = sorted(set(feats) - set(second))
    if missing:
        raise SystemExit(f"{beside}: no descriptors for {len(missing)} videos of {bench}, e.g. {missing[0]}")
    try:
        return {v: join_descriptors(d, second[v], v, step) for v, d in feats.items()}
    except ValueError as exc:
        raise SystemExit(f"{beside}: {exc}") from None


def score_row(name: str, features: Path, model_path: Path, work: Path, beside: Path | None = None) -> dict[str, Any]:
    """Per set and variant: mAP, its interval and the per-query AP; results files under `work` for the
    hard-case split."""
    models = {variant: load_model(model_path, variant)[0] for variant in VARIANTS}  # read once, not per set
    out: dict[str, Any] = {}
    for set_name in SETS:
        bench = Path("data/corpus", set_name)
        ann, dataset = read_annotations(bench / "annotation.json"), read_ids(bench / "dataset_ids.txt")
        feats = descriptors(features, beside, bench)
        missing = sorted(set(dataset) - set(feats))
        if missing:
            raise SystemExit(f"{features}: no descriptors for {len(missing)} {set_name} videos, e.g. {missing[0]}")
        out[set_name] = {}
        for variant in VARIANTS:
            results = ausil_scores(models[variant], {q: feats[q] for q in ann}, feats)
            write_results(work / "results" / f"{name}-{variant}" / f"{set_name}.json", results)
            result = evaluate(ann, results, [DA], dataset, ignore_labels=[JUNK])
            out[set_name][variant] = {
                "mAP": round(result.map, 4),
                "ap": {q: round(v, 6) for q, v in sorted(result.ap.items())},
            }
    return out


def pipeline_check(scores: dict[str, Any]) -> dict[str, Any]:
    """This script's mAP against the committed metrics of the same features and model, per set and variant."""
    check = {}
    for set_name in SETS:
        for variant in VARIANTS:
            metrics = Path("metrics", f"ausil-{variant}-main", f"{set_name}.json")
            committed = round(json.loads(metrics.read_text())["mAP"], 4)
            check[f"{set_name}/{variant}"] = {"here": scores[set_name][variant]["mAP"], "committed": committed}
    return check


def hard_cases(work: Path, names: list[str]) -> dict[str, Any]:
    """The README `hardcases` columns of each row's full and mac_w runs, read from `work`'s results."""
    link = work / "data" / "corpus"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        os.symlink(Path("data/corpus").resolve(), link)
    out: dict[str, Any] = {}
    for set_name in SETS:
        runs = [f"{n}-{v}" for n in names for v in ("mac_w", "full")]
        table = hard_case_summary(work, set_name, runs)
        if table.empty:  # no construction log: a corpus not built by this project
            continue
        for run, row in zip(runs, table.to_dict("records"), strict=True):
            out.setdefault(run, {})[set_name] = {k: _number(v) for k, v in row.items() if k != "method"}
    return out


def _number(value: Any) -> float | None:
    """JSON has no NaN: a split with no query (e.g. no hard case in the set) is null."""
    return None if math.isnan(float(value)) else round(float(value), 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--row",
        nargs=3,
        action="append",
        required=True,
        metavar=("NAME", "FEATURES", "MODEL"),
        help="a row: its name, a directory of per-video descriptor files, an AuSiL model file",
    )
    ap.add_argument(
        "--beside",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "DIR"),
        help="join DIR's descriptors beside row NAME's (two backbones side by side)",
    )
    ap.add_argument("--work", default=".cache/selected_on_test", help="results files: %(default)s")
    ap.add_argument("--output", default="reports/ablations/selected_on_test.json")
    args = ap.parse_args()

    work = Path(args.work)
    names = [name for name, _, _ in args.row]
    beside = {name: Path(d) for name, d in args.beside}
    if unknown := sorted(set(beside) - set(names)):
        raise SystemExit(f"--beside names no row: {unknown}")
    scores = {
        name: score_row(name, Path(feats), Path(model), work, beside.get(name)) for name, feats, model in args.row
    }
    hard = hard_cases(work, names)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    rows = {}
    for name, feats, model in args.row:
        row: dict[str, Any] = {"features": feats, "model": model, "commit": commit, "sets": scores[name]}
        if name in beside:
            row["beside"] = str(beside[name])
        elif (Path(feats), Path(model)) == PIPELINE:
            row["pipeline_check"] = pipeline_check(scores[name])
        row["hard_cases"] = {v: hard[f"{name}-{v}"] for v in ("mac_w", "full") if f"{name}-{v}" in hard}
        rows[name] = row
        summary = {f"{s}/{v}": scores[name][s][v]["mAP"] for s in SETS for v in VARIANTS}
        print(name, json.dumps(summary), flush=True)
        if "pipeline_check" in row:
            print("  against the committed metrics:", json.dumps(row["pipeline_check"]), flush=True)
    out_path = Path(args.output)
    kept = json.loads(out_path.read_text()) if out_path.is_file() else {}
    atomic_write_json(out_path, dict(sorted((kept | rows).items())))


if __name__ == "__main__":
    main()
