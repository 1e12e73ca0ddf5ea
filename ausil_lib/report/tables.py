"""Report tables and figures: this suite's numbers beside the AuSiL paper's.

Everything the report notebooks show is computed here, so that the notebooks only call and draw
and the numbers they display are tested. Runs and sets are discovered from the files the
pipeline wrote under ``root`` (metrics/, plots/, results/, reports/, data/corpus/); a run or set
that is absent yields NaN, which :func:`formatted` shows as "not run" instead of failing.

The paper's numbers come from other datasets (FIVR-200K_a, FIVR-5K_a, SVD_a) and another machine
(GTX 1070); every column or row that holds them says so.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from functools import partial
from itertools import cycle
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from pandas.io.formats.style import Styler

from ausil_lib.core.formats import (
    PathLike,
    atomic_write_text,
    read_annotations,
    read_ids,
    read_results,
    read_unavailable,
)
from ausil_lib.core.labels import DA, JUNK, RELEASED_LABEL, RELEASED_RUN, speed_copy_of
from ausil_lib.report.stats import LEVEL, Interval, bootstrap_map, load_ap, map_interval, paired_difference
from ausil_lib.retrieval.evaluation import speed_factor_results

__all__ = [
    "MAIN_ROWS",
    "MAIN_RUNS",
    "NOT_RUN",
    "PAPER_COMPONENTS",
    "PAPER_GAMMA",
    "PAPER_METHODS",
    "PAPER_REAL",
    "PAPER_TIME_STEP",
    "PAPER_TIMING",
    "ablation_note",
    "backbone_note",
    "ausil_data_curve_table",
    "backbone_probe_table",
    "mac_taps_table",
    "selected_on_test_table",
    "components_table",
    "corpus_table",
    "cross_corpus_table",
    "real_dataset_table",
    "discover_runs",
    "ci_text",
    "difference_ci_text",
    "finding",
    "formatted",
    "shown",
    "verdict",
    "gamma_table",
    "load_metrics",
    "main_table",
    "paper_column",
    "per_factor_map",
    "per_factor_table",
    "plot_per_factor",
    "plot_pr_curves",
    "plot_training",
    "pr_curves",
    "run_column",
    "run_label",
    "run_notebooks",
    "speed_factors",
    "speed_table",
    "time_step_table",
    "timing_details",
    "timing_table",
    "cost_findings",
    "plot_accuracy_cost",
    "provenance",
    "findings",
    "findings_markdown",
    "real_findings",
    "paper_real_table",
    "budget_markdown",
    "comparison_table",
    "page_title",
    "training_curves",
    "training_summary",
]

NAN = math.nan
SETS = ("test", "test_speed")
SPEED_SET = "test_speed"
CROSS = "cross"  # the cross-corpus validation set's collection under metrics/, plots/, results/
CROSS_SETS = ("val", "val_speed")
NOT_RUN = "not run"
NOT_IN_PAPER = "–"
PAPER_PREFIX = "paper"
NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"

# --------------------------------------------------------------------------- the paper's numbers

# Table VIII (FIVR-200K_a, SVD_a) and Section V-C (speed protocol), mAP.
PAPER_METHODS: dict[str, dict[str, float]] = {
    "Dejavu": {"FIVR-200K_a": 0.726, "SVD_a": 0.874, "FIVR-200K_a speed": 0.443, "SVD_a speed": 0.741},
    "Spectro Slides": {"FIVR-200K_a": 0.588, "SVD_a": 0.716, "FIVR-200K_a speed": 0.0, "SVD_a speed": 0.0},
    "Spectro Tiles": {"FIVR-200K_a": 0.510, "SVD_a": 0.605, "FIVR-200K_a speed": 0.0, "SVD_a speed": 0.0},
    "AuSiL": {"FIVR-200K_a": 0.701, "SVD_a": 0.940, "FIVR-200K_a speed": 0.865, "SVD_a speed": 0.923},
}
PAPER_METHODS[RELEASED_LABEL] = PAPER_METHODS["AuSiL"]  # the paper's numbers are the released model's
# Section V-C gives no number for these, only "near-zero mAP"; the 0.0 above stands for it.
PAPER_NEAR_ZERO = frozenset({"Spectro Slides", "Spectro Tiles"})
NEAR_ZERO = "≈ 0"
NEAR_ZERO_NOTE = "the paper says 'near-zero mAP', without a number"

# Tables IV, V and VII: (FIVR-5K_a, SVD_a) mAP.
PAPER_ABLATION_SETS = ("FIVR-5K_a", "SVD_a")
PAPER_TIME_STEP: dict[float, tuple[float, float]] = {
    1000: (0.794, 0.903),
    500: (0.789, 0.915),
    250: (0.787, 0.928),
    125: (0.790, 0.940),
}
PAPER_COMPONENTS: dict[str, tuple[float, float]] = {
    "MAC": (0.656, 0.891),
    "MAC + W": (0.740, 0.932),
    "MAC + W + A": (0.742, 0.934),
    "AuSiL": (0.794, 0.940),
}
PAPER_GAMMA: dict[float, tuple[float, float]] = {
    0.4: (0.764, 0.903),
    0.6: (0.761, 0.895),
    0.8: (0.786, 0.937),
    1.0: (0.794, 0.940),
    1.2: (0.767, 0.919),
}

# Section IV-C: timings for videos of 100 s on average.
PAPER_TIMING: dict[str, Any] = {
    "machine": "paper: Intel Xeon @2.10 GHz + Nvidia GTX 1070 (another machine)",
    "video_s": 100.0,
    "feature_extraction_ms_per_video": 100.0,
    "similarity_ms_per_pair": 3.0,
}

# --------------------------------------------------------------------------- runs

VARIANT_LABELS = {"mac": "MAC", "mac_w": "MAC + W", "mac_w_a": "MAC + W + A", "full": "AuSiL"}
MAIN_ROWS: dict[str, str] = {
    "Dejavu": "dejavu",
    "Spectro Slides": "spectro-slides",
    "Spectro Tiles": "spectro-tiles",
    "AuSiL": "ausil-full-main",
    "AuSiL, random backbone (control)": "ausil-full-random",
    RELEASED_LABEL: RELEASED_RUN,
}
MAIN_RUNS = tuple(MAIN_ROWS.values())
BACKBONES = ("main", "random")
_AUSIL_RUN = re.compile(r"ausil-(full|mac_w_a|mac_w|mac)-([^-]+)(?:-(.+))?")
# sweep name -> (run-name suffix prefix, index name, paper table, params.yaml key of the default)
_SWEEPS: dict[str, tuple[str, str, Mapping[float, tuple[float, float]], tuple[str, str]]] = {
    "time_step": ("t", "time step (ms)", PAPER_TIME_STEP, ("features", "time_step_ms")),
    "gamma": ("gamma", "gamma", PAPER_GAMMA, ("training", "gamma")),
}


def run_label(run: str) -> str:
    """Readable name of a run: the paper's method names, AuSiL variants with their backbone."""
    for label, name in MAIN_ROWS.items():
        if run == name:
            return label
    match = _AUSIL_RUN.fullmatch(run)
    if match is None:
        return run
    variant, backbone, suffix = match.groups()
    extra = f", {suffix}" if suffix else ""
    return f"{VARIANT_LABELS[variant]} ({backbone} backbone{extra})"


def _is_control(run: str) -> bool:
    match = _AUSIL_RUN.fullmatch(run)
    return match is not None and match.group(2) == "random"


# folders under metrics/, plots/ and results/ that hold other collections, not runs
COLLECTIONS = (CROSS, "real")


def discover_runs(root: PathLike, collection: str = "") -> list[str]:
    """Every run with metrics, plots or results under root (or a collection of it, e.g. `cross`):
    the main runs first, then by name."""
    found = {
        p.name for sub in ("metrics", "plots", "results") for p in Path(root, sub, collection).glob("*") if p.is_dir()
    }
    if not collection:
        found -= set(COLLECTIONS)
    return [r for r in MAIN_RUNS if r in found] + sorted(found - set(MAIN_RUNS))


def _ordered_sets(sets: Iterable[str]) -> list[str]:
    found = set(sets)
    return list(SETS) + sorted(found - set(SETS))


def _read_json(path: Path) -> Any:
    """Parsed JSON, or None when the file does not exist (a stage that was not run)."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _frame(rows: Mapping[Any, Mapping[str, Any]], index_name: str) -> pd.DataFrame:
    frame = pd.DataFrame.from_dict(dict(rows), orient="index")
    frame.index.name = index_name
    return frame


def paper_column(dataset: str) -> str:
    return f"{PAPER_PREFIX}, {dataset} (different dataset)"


def run_column(set_name: str, prefix: str = "this run") -> str:
    return f"{prefix}, {set_name} mAP"


# --------------------------------------------------------------------------- metrics tables


SUMMARY_METRICS = {"R@1": "R@1", "R@10": "R@10", "uAP": "µAP"}  # beside mAP; see retrieval.evaluation


def _number(record: Mapping[str, Any] | None, key: str) -> float:
    value = record.get(key) if record else None
    return NAN if value is None else float(value)


def load_metrics(root: PathLike, collection: str = "") -> pd.DataFrame:
    """mAP, recall@1/@10, µAP and query count for every discovered run x set (NaN / <NA> where one is
    missing); ``note`` says why a run recorded as not available has no numbers."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in Path(root, "metrics", collection).glob("*/*.json"):
        found[(path.parent.name, path.stem)] = _read_json(path)
    runs = [r for r in discover_runs(root, collection) if any(key[0] == r for key in found)]
    index = pd.MultiIndex.from_product([runs, _ordered_sets(s for _, s in found)], names=["run", "set"])
    results = Path(root, "results", collection)
    return pd.DataFrame(
        {
            **{key: [_number(found.get(k), key) for k in index] for key in ("mAP", *SUMMARY_METRICS)},
            "n_queries": pd.array([found[k]["n"] if k in found else None for k in index], dtype="Int64"),
            "note": [read_unavailable(results / run / f"{s}.json") or "" for run, s in index],
        },
        index=index,
    )


def _note(metrics: pd.DataFrame, run: str) -> str:
    """Why a run has no numbers (e.g. the released model is not fetched), from its metrics files."""
    notes = (
        {str(n) for n in metrics["note"].xs(run, level="run")} - {""}
        if run in metrics.index.get_level_values("run")
        else set()
    )
    return "; ".join(sorted(notes))


# the paper's AuSiL mAP on its real datasets (Tables V, VIII, IX and Section V-C); other cells not published
# in the text this project holds are left out rather than guessed
PAPER_REAL: dict[tuple[str, str], float] = {
    ("fivr200k", "audio"): PAPER_METHODS["AuSiL"]["FIVR-200K_a"],
    ("fivr200k", "audio_speed"): PAPER_METHODS["AuSiL"]["FIVR-200K_a speed"],
    ("svd", "audio"): PAPER_METHODS["AuSiL"]["SVD_a"],
    ("svd", "audio_speed"): PAPER_METHODS["AuSiL"]["SVD_a speed"],
    ("fivr5k", "audio"): PAPER_COMPONENTS["AuSiL"][0],
    ("fivr200k", "isvr"): 0.232,
    ("svd", "visual"): 0.516,
    ("evve", "visual"): 0.288,  # Table IX, Section V-D
}
REAL_TASK_ORDER = ("audio", "audio_speed", "dsvr", "csvr", "isvr", "visual")


def real_dataset_table(root: PathLike) -> pd.DataFrame:
    """Every real-dataset task the pipeline evaluated (metrics/real/<dataset>/<method>/<task>.json), with the
    paper's AuSiL number where it published one; empty when no real dataset was run."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for path in sorted(Path(root, "metrics", "real").glob("*/*/*.json")):
        dataset, method, task = path.parent.parent.name, path.parent.name, path.stem
        found = _read_json(path)
        rows[(dataset, task, method)] = {
            "mAP": float(found["mAP"]),
            "queries": int(found["n"]),
            "relevant labels": ",".join(found["relevant_labels"]),
            "paper AuSiL": PAPER_REAL.get((dataset, task), NAN),
        }
    order = {t: i for i, t in enumerate(REAL_TASK_ORDER)}
    keys = sorted(rows, key=lambda k: (k[0], order.get(k[1], len(order)), k[1], k[2]))
    frame = pd.DataFrame(
        [rows[k] for k in keys],
        index=pd.MultiIndex.from_tuples(keys, names=["dataset", "task", "method"]) if keys else None,
        columns=["mAP", "queries", "relevant labels", "paper AuSiL"],
    )
    return frame


def paper_real_table() -> pd.DataFrame:
    """The paper's AuSiL mAP per real dataset and task (what a real-dataset run is compared with)."""
    order = {t: i for i, t in enumerate(REAL_TASK_ORDER)}
    keys = sorted(PAPER_REAL, key=lambda k: (k[0], order.get(k[1], len(order))))
    index = pd.MultiIndex.from_tuples(keys, names=["dataset", "task"])
    return pd.DataFrame({"paper AuSiL mAP": [PAPER_REAL[k] for k in keys]}, index=index)


def budget_markdown(root: PathLike) -> str:
    """The real datasets' disk and time budget on the reports/gpu/ measurements (the README's table)."""
    from ausil_lib.report.readme import budget_table  # the README's renderer, one definition

    if not Path(root, GPU_DIR).is_dir():
        return f"{NOT_RUN}: no `reports/gpu/` measurements."
    return budget_table(Path(root))


def _metric(metrics: pd.DataFrame, run: str, set_name: str, key: str) -> float:
    return float(metrics[key].get((run, set_name), NAN))


def map_of(metrics: pd.DataFrame, run: str, set_name: str) -> float:
    return _metric(metrics, run, set_name, "mAP")


def ci_column(set_name: str) -> str:
    return f"this run, {set_name} {int(LEVEL * 100)} % CI"


def ci_text(interval: Interval) -> str:
    """An interval as every table shows it (low–high, 3 decimals), or "not run" when nothing was measured."""
    return NOT_RUN if math.isnan(interval.estimate) else f"{interval.low:.3f}–{interval.high:.3f}"


def main_table(root: PathLike) -> pd.DataFrame:
    """Table VIII layout: this run's test / test_speed mAP, each with its bootstrap 95 % CI over
    queries, beside the paper's FIVR-200K_a / SVD_a."""
    metrics = load_metrics(root)
    rows = {}
    for method, run in MAIN_ROWS.items():
        paper = PAPER_METHODS.get(method, {})
        rows[method] = {
            "run": run,
            **{
                key: value
                for s in SETS
                for key, value in (
                    (run_column(s), map_of(metrics, run, s)),
                    (ci_column(s), ci_text(map_interval(root, run, s))),
                    *((f"this run, {s} {n}", _metric(metrics, run, s, k)) for k, n in SUMMARY_METRICS.items()),
                )
            },
            "queries": metrics["n_queries"].get((run, "test"), pd.NA),
            **{paper_column(d): paper.get(d, NAN) for d in ("FIVR-200K_a", "SVD_a")},
            "note": _note(metrics, run),
        }
    return _frame(rows, "method")


def cross_corpus_table(root: PathLike) -> pd.DataFrame:
    """Every AuSiL row on the cross-corpus validation set (val, val_speed; metrics/cross/): whether the test
    orderings hold on other material. That set takes part in model selection, so it is no unbiased test."""
    metrics = load_metrics(root, CROSS)
    rows = {
        run_label(run): {
            "run": run,
            **{run_column(s, "cross-corpus"): map_of(metrics, run, s) for s in CROSS_SETS},
            "note": _note(metrics, run),
        }
        for run in discover_runs(root, CROSS)
    }
    return _frame(rows, "method")


PROBE_FILE = "reports/ablations/backbone_probe.json"
PROBE_RECIPE = "differs from params.yaml"
PROBE_COLUMNS = {
    "val_mac": "val, MAC",
    "val_mac_w": "val, MAC + W",
    "cross_val_mac_w": "cross-corpus val, MAC + W",
    "cross_val_speed_mac_w": "cross-corpus val_speed, MAC + W",
}


PROBE_RECIPE_IGNORED = ("budget_s", "checkpoint_every")  # a safety cap and a resume interval: no effect on weights


def _probe_recipe(row: Mapping[str, Any], default: Mapping[str, Any] | None) -> str:
    """How a probe row's backbone differs from what today's params.yaml trains: a trained row's stored
    recipe against params.yaml's backbone_training (probes of an older default carry that default's
    values, so the column stays true when the default moves) and its overrides of other sections
    (`features.time_step_ms`); else the overrides it was run with, the weights file it scored, and whether
    BatchNorm's running statistics were reset."""
    config = row.get("config")
    if row["backbone"] == "trained" and not row.get("weights") and config and default is not None:
        canon = partial(json.dumps, sort_keys=True)
        parts = [
            f"{k}={v}"
            for k, v in sorted(config.items())
            if k not in PROBE_RECIPE_IGNORED and canon(v) != canon(default.get(k))
        ]
        parts += [f"{k}={v}" for k, v in sorted(row["overrides"].items()) if "." in k]  # other sections
    else:
        parts = [f"{k}={v}" for k, v in sorted(row["overrides"].items())]
    if row.get("weights"):
        parts.append(f"weights {row['weights']} as of commit {row['commit']}")  # the path's file changes
    if row.get("bn_identity"):
        parts.append("BatchNorm running statistics reset to mean 0, variance 1")
    return ", ".join(parts) or "-"


def backbone_probe_table(root: PathLike) -> pd.DataFrame:
    """Backbone recipes scored by scripts/backbone_probe.py (plain descriptors, no AuSiL network, never
    on `test`): one row per recipe and training step, as the script wrote them, with what each recipe
    differs in from today's params.yaml."""
    rows = _read_json(Path(root, PROBE_FILE)) or {}
    params = _params(root) if rows else None
    default = None
    if params is not None:
        from ausil_lib.core.config import plain  # loaded already by _params

        default = plain(params.backbone_training)
    frame = pd.DataFrame(
        [
            {
                "recipe": r["name"],
                "backbone": r["backbone"],
                "steps": r["steps"],
                PROBE_RECIPE: _probe_recipe(r, default),
                **{label: r.get(key, NAN) for key, label in PROBE_COLUMNS.items()},
                "commit": r["commit"],
            }
            for r in rows.values()
        ],
        columns=["recipe", "backbone", "steps", PROBE_RECIPE, *PROBE_COLUMNS.values(), "commit"],
    )
    return frame.sort_values(["backbone", "recipe", "steps"], ignore_index=True)


TAPS_FILE = "reports/ablations/mac_taps_probe.json"
TAPS_MEAN = "mean of the three MAC + W"  # the probes' selection rule


def mac_taps_table(root: PathLike) -> pd.DataFrame:
    """Subsets of the backbone layers feeding the MAC (scripts/mac_taps_probe.py), scored like the backbone
    probes on the selection sets only, per backbone, in the script's order (the paper's twelve taps first)."""
    rows = sorted((_read_json(Path(root, TAPS_FILE)) or {}).values(), key=lambda r: (r["backbone"], r["order"]))
    return pd.DataFrame(
        [
            {
                "backbone": r["backbone"],
                "taps": r["taps"],
                "dims": r["dims"],
                **{label: r[key] for key, label in PROBE_COLUMNS.items()},
                TAPS_MEAN: (r["val_mac_w"] + r["cross_val_mac_w"] + r["cross_val_speed_mac_w"]) / 3,
                "commit": r["commit"],
            }
            for r in rows
        ],
        columns=["backbone", "taps", "dims", *PROBE_COLUMNS.values(), TAPS_MEAN, "commit"],
    )


DATA_CURVE_FILE = "reports/ablations/ausil_data_curve.json"
DATA_CURVE_GAP = "cross-corpus val, full - MAC + W"


def ausil_data_curve_table(root: PathLike) -> pd.DataFrame:
    """AuSiL trained on the triplets of the first K training queries (scripts/ausil_data_curve.py), the
    checkpoint chosen as the default run chooses it, beside MAC + W (no network) on the same selection
    sets: whether more annotated training data, or another recipe (--set), would let the network beat its
    own input similarity."""
    rows = _read_json(Path(root, DATA_CURVE_FILE)) or {}
    cells = {
        "training queries": lambda r: r["queries"],
        "recipe": lambda r: r.get("recipe", "default"),
        "positive pairs kept / annotated": lambda r: f"{r['triplets']['positive_pairs_kept']} / {r['positive_pairs']}",
        "triplets": lambda r: r["triplets"]["triplets"],
        "chosen step": lambda r: r["best_step"],
        "val, full": lambda r: r["val_map"],
        "val, MAC + W": lambda r: r["val_mac_w"],
        "cross-corpus val, full": lambda r: r["cross_val_map"],
        "cross-corpus val, MAC + W": lambda r: r["cross_val_mac_w"],
        DATA_CURVE_GAP: lambda r: r["cross_val_map"] - r["cross_val_mac_w"],
        # not a selection set; rows written before 2026-12-02's sixth session lack it
        "cross-corpus val_speed, full": lambda r: r.get("cross_val_speed_map", NAN),
        "cross-corpus val_speed, MAC + W": lambda r: r.get("cross_val_speed_mac_w", NAN),
        "stopped by": lambda r: r["stopped_by"],
        "commit": lambda r: r["commit"],
    }
    frame = pd.DataFrame([{k: cell(r) for k, cell in cells.items()} for r in rows.values()], columns=list(cells))
    frame["_changed"] = frame["recipe"] != "default"  # the default recipe first for each K
    return frame.sort_values(["training queries", "_changed", "recipe"], ignore_index=True).drop(columns="_changed")


SELECTED_FILE = "reports/ablations/selected_on_test.json"


def selected_on_test_table(root: PathLike) -> pd.DataFrame:
    """Descriptor sets chosen or set aside on the selection sets, then scored on `test` / `test_speed`
    (scripts/selected_on_test.py): MAC + W and AuSiL per row, each with its bootstrap interval, its paired
    difference to the pipeline's own row (the one checked against the committed metrics), and the README
    `hardcases` split on `test`. These numbers never choose anything."""
    rows = _read_json(Path(root, SELECTED_FILE)) or {}
    pipeline = next((r for r in rows.values() if "pipeline_check" in r), None)
    out = []
    for name, row in rows.items():
        for variant in ("mac_w", "full"):
            cells: dict[str, Any] = {"descriptors": name, "similarity": VARIANT_LABELS[variant]}
            for set_name in SETS:
                ap = row["sets"][set_name][variant]["ap"]
                interval = bootstrap_map(ap)
                cells[f"{set_name} mAP"] = interval.estimate
                cells[f"{set_name} {CI_HEADER}"] = ci_text(interval)
                if pipeline is not None and row is not pipeline:
                    diff = paired_difference(ap, pipeline["sets"][set_name][variant]["ap"])
                    cells[f"{set_name}, − pipeline's row"] = f"{diff.estimate:+.3f} ({difference_ci_text(diff)})"
                else:
                    cells[f"{set_name}, − pipeline's row"] = ""
            hard = row.get("hard_cases", {}).get(variant, {}).get("test", {})
            for column in ("hard cases only", "others ranked first"):
                value = hard.get(column)
                cells[f"test, {column}"] = NAN if value is None else value
            cells["commit"] = row["commit"]
            out.append(cells)
    columns = ["descriptors", "similarity"]
    for set_name in SETS:
        columns += [f"{set_name} mAP", f"{set_name} {CI_HEADER}", f"{set_name}, − pipeline's row"]
    return pd.DataFrame(out, columns=[*columns, "test, hard cases only", "test, others ranked first", "commit"])


def speed_table(root: PathLike) -> pd.DataFrame:
    """Section V-C: this run's speed-protocol mAP (and the plain test mAP it drops from) beside the paper's."""
    metrics = load_metrics(root)
    rows = {}
    for method, run in MAIN_ROWS.items():
        paper = PAPER_METHODS.get(method, {})
        rows[method] = {
            "run": run,
            run_column(SPEED_SET): map_of(metrics, run, SPEED_SET),
            run_column("test"): map_of(metrics, run, "test"),
            **{
                paper_column(d): NEAR_ZERO if method in PAPER_NEAR_ZERO else paper.get(d, NAN)
                for d in ("FIVR-200K_a speed", "SVD_a speed")
            },
            "paper note": NEAR_ZERO_NOTE if method in PAPER_NEAR_ZERO else "",
            "note": _note(metrics, run),
        }
    return _frame(rows, "method")


def _backbones(root: PathLike) -> list[str]:
    found = {m.group(2) for r in discover_runs(root) if (m := _AUSIL_RUN.fullmatch(r))}
    return list(BACKBONES) + sorted(found - set(BACKBONES))


def components_table(root: PathLike) -> pd.DataFrame:
    """Table V layout: MAC, +W, +W+A, AuSiL for every backbone, beside the paper's FIVR-5K_a / SVD_a."""
    metrics, backbones = load_metrics(root), _backbones(root)
    rows = {}
    for variant, label in VARIANT_LABELS.items():
        rows[label] = {
            **{
                run_column(s, f"this run, {bb} backbone"): map_of(metrics, f"ausil-{variant}-{bb}", s)
                for bb in backbones
                for s in SETS
            },
            **{paper_column(d): v for d, v in zip(PAPER_ABLATION_SETS, PAPER_COMPONENTS[label], strict=True)},
        }
    return _frame(rows, "components")


def _params(root: PathLike) -> Any:
    """The Params of params.yaml under ``root`` (the settings the committed run was made with), or None."""
    from ausil_lib.core.config import load_params  # here: core.config loads torch, which tables need not

    path = Path(root, "params.yaml")
    return load_params(path) if path.is_file() else None


def _default_param(root: PathLike, section: str, key: str) -> float | None:
    """The params.yaml value the default run ``ausil-full-main`` was made with, if params.yaml is there."""
    params = _params(root)
    return float(getattr(getattr(params, section), key)) if params is not None else None


def _sweep_runs(root: PathLike, sweep: str) -> dict[float, str]:
    """{value: run} for the runs ``ausil-full-main-<prefix><value>`` of a sweep."""
    prefix = _SWEEPS[sweep][0]
    pattern = re.compile(rf"ausil-full-main-{prefix}(\d+(?:\.\d+)?)")
    return {float(m.group(1)): run for run in discover_runs(root) if (m := pattern.fullmatch(run))}


SWEEP_SET = "test"  # the sweep stages score test only


def _sweep_table(root: PathLike, sweep: str) -> pd.DataFrame:
    """Paper rows plus every run of the sweep on ``test``; the default run sits at its params.yaml value."""
    _, index_name, paper, (section, key) = _SWEEPS[sweep]
    metrics = load_metrics(root)
    runs = _sweep_runs(root, sweep)
    default = _default_param(root, section, key)
    if (
        default is not None
        and default not in runs
        and any(not math.isnan(map_of(metrics, "ausil-full-main", s)) for s in SETS)
    ):
        runs[default] = "ausil-full-main"
    rows = {}
    for value in sorted(set(paper) | set(runs)):
        run = runs.get(value, "")
        rows[value] = {
            "run": run,
            run_column(SWEEP_SET): map_of(metrics, run, SWEEP_SET),
            ci_column(SWEEP_SET): ci_text(map_interval(root, run, SWEEP_SET)) if run else NOT_RUN,
            **{paper_column(d): v for d, v in zip(PAPER_ABLATION_SETS, paper.get(value, (NAN, NAN)), strict=True)},
        }
    return _frame(rows, index_name)


def time_step_table(root: PathLike) -> pd.DataFrame:
    """Table IV layout: AuSiL mAP per segment time step (runs ``ausil-full-main-t<ms>``) beside the paper."""
    table = _sweep_table(root, "time_step")
    table.index = table.index.astype(int)
    return table.sort_index(ascending=False)


def gamma_table(root: PathLike) -> pd.DataFrame:
    """Table VII layout: AuSiL mAP per triplet margin (runs ``ausil-full-main-gamma<g>``) beside the paper."""
    return _sweep_table(root, "gamma")


def ablation_note(root: PathLike, sweep: str) -> str:
    """Markdown saying which runs a sweep has, or that the default budget did not run it."""
    prefix, index_name = _SWEEPS[sweep][:2]
    runs = _sweep_runs(root, sweep)
    if runs:
        return f"Runs of the {index_name} sweep: " + ", ".join(f"`{r}`" for r in runs.values()) + "."
    key = {"time_step": "time_steps_ms: [500, 250, 125]", "gamma": "gammas: [0.4, 0.6, 0.8, 1.2]"}[sweep]
    return (
        f"No {index_name} sweep was run: the default budget trains only the default setting (the row "
        f"marked `ausil-full-main`). To run it, set `ablations.{key}` in params.yaml and run "
        f"`dvc repro {sweep}_sweep`; its runs, `ausil-full-main-{prefix}<value>`, then fill this table."
    )


CORPUS_COLUMNS = {
    "queries": "queries",
    "database": "database videos",
    "database_hours": "database hours",
    "da_pairs": "duplicate (DA) pairs",
    "da_per_query_mean": "DA per query, mean",
    "junk_pairs": "JUNK pairs",
    "video_files": "video files",
}


def corpus_table(root: PathLike) -> pd.DataFrame:
    """Size of each benchmark split of this suite's corpus (reports/corpus_summary.json)."""
    summary = _read_json(Path(root, "reports", "corpus_summary.json")) or {}
    return _frame(summary.get("benchmarks", {}), "set").rename(columns=CORPUS_COLUMNS)


# --------------------------------------------------------------------------- speed protocol


def _speed_paths(root: PathLike) -> tuple[Path, Path]:
    bench = Path(root, "data", "corpus", SPEED_SET)
    return bench / "annotation.json", bench / "dataset_ids.txt"


def speed_factors(root: PathLike) -> list[float]:
    """Speed factors of the copies in the speed set (``<query>_x<factor>`` dataset ids)."""
    annotation, ids = _speed_paths(root)
    if not (annotation.is_file() and ids.is_file()):
        return []
    queries = set(read_annotations(annotation))
    copies = [speed_copy_of(video) for video in read_ids(ids)]
    return sorted({copy[1] for copy in copies if copy and copy[0] in queries})


def per_factor_map(root: PathLike, run: str, factors: Sequence[float] | None = None) -> pd.DataFrame:
    """mAP of one run on the speed set counting one speed factor at a time (NaN where not run)."""
    factors = speed_factors(root) if factors is None else list(factors)
    annotation, ids = _speed_paths(root)
    results_path = Path(root, "results", run, f"{SPEED_SET}.json")
    rows: dict[float, dict[str, Any]] = {f: {"mAP": NAN, "n_queries": None} for f in factors}
    made = results_path.is_file() and read_unavailable(results_path) is None
    if annotation.is_file() and ids.is_file() and made:
        annotations, dataset, results = read_annotations(annotation), read_ids(ids), read_results(results_path)
        for factor, result in speed_factor_results(annotations, results, [DA], dataset, [JUNK]).items():
            if factor in rows:
                rows[factor] = {"mAP": result.map, "n_queries": result.n_queries}
    frame = _frame(rows, "speed factor").reindex(columns=["mAP", "n_queries"])
    frame["mAP"] = frame["mAP"].astype(float)
    frame["n_queries"] = frame["n_queries"].astype("Int64")
    return frame


PER_FACTOR_N = "queries (n)"


def per_factor_table(
    root: PathLike, runs: Sequence[str] = MAIN_RUNS, factors: Sequence[float] | None = None
) -> pd.DataFrame:
    """mAP per speed factor (rows) and method (columns), for the Section V-C breakdown, with the number of
    queries per factor. Each query has one positive per factor, so each value is a mean reciprocal rank."""
    factors = speed_factors(root) if factors is None else list(factors)
    maps = {run_label(run): per_factor_map(root, run, factors) for run in runs}
    frame = pd.DataFrame({label: m["mAP"] for label, m in maps.items()}, index=pd.Index(factors, dtype=float))
    frame.index.name = "speed factor"
    counts = pd.DataFrame({label: m["n_queries"] for label, m in maps.items()}, index=frame.index)
    frame = frame.astype(float)
    frame[PER_FACTOR_N] = counts.max(axis=1).astype("Int64")
    return frame


# --------------------------------------------------------------------------- curves


def pr_curves(root: PathLike, set_name: str, runs: Sequence[str] | None = None) -> pd.DataFrame:
    """Interpolated PR points (long format) of the given runs, or of every run, on one set."""
    rows = []
    for run in discover_runs(root) if runs is None else runs:
        for point in _read_json(Path(root, "plots", run, f"{set_name}.json")) or []:
            rows.append(
                {
                    "run": run,
                    "method": run_label(run),
                    "recall": float(point["recall"]),
                    "precision": float(point["precision"]),
                }
            )
    return pd.DataFrame(rows, columns=["run", "method", "recall", "precision"])


def training_curves(root: PathLike) -> pd.DataFrame:
    """Every training curve under reports/ (AuSiL per backbone, backbone pre-training), long format."""
    reports = Path(root, "reports")
    sources = {
        f"AuSiL similarity network ({p.stem.removeprefix('training_')} backbone)": p
        for p in sorted(reports.glob("training_*.json"))
        if not p.name.endswith(".meta.json")
    }
    sources["backbone training (no AudioSet weights)"] = reports / "backbone_training.json"
    rows = [
        {
            "curve": name,
            "step": point["step"],
            "loss": point.get("loss"),
            "val_map": point.get("val_map"),
            "seconds": point.get("seconds"),
        }
        for name, path in sources.items()
        for point in _read_json(path) or []
    ]
    frame = pd.DataFrame(rows, columns=["curve", "step", "loss", "val_map", "seconds"])
    return frame.astype({"step": int, "loss": float, "val_map": float, "seconds": float})


def training_summary(root: PathLike) -> pd.DataFrame:
    """One row per trained AuSiL model (reports/training_<backbone>.meta.json); the config is left out."""
    rows = {}
    for path in sorted(Path(root, "reports").glob("training_*.meta.json")):
        meta = _read_json(path)
        row = {k: v for k, v in meta.items() if not isinstance(v, Mapping)}
        row.update({f"triplets: {k}": v for k, v in meta.get("triplets", {}).items()})
        if isinstance(row.get("seconds"), float):
            row["seconds"] = round(row["seconds"])  # a wall time: its tenths are noise, not a measurement
        rows[path.name.removesuffix(".meta.json").removeprefix("training_")] = row
    return _frame(rows, "model").rename(columns=lambda c: str(c).replace("_", " "))  # readable headers


def _backbone_label(root: PathLike, backbone: str) -> str | None:
    """What produced the run's descriptors: the similarity run's own label, else the training meta."""
    for set_name in SETS:
        timing = _read_json(Path(root, "results", f"ausil-full-{backbone}", f"{set_name}.timing.json"))
        if timing and timing.get("label"):
            return str(timing["label"])
    meta = _read_json(Path(root, "reports", f"training_{backbone}.meta.json"))
    return str(meta["backbone"]) if meta and meta.get("backbone") else None


def backbone_note(root: PathLike) -> str:
    """Markdown naming the backbone behind AuSiL's numbers, read from the run's outputs."""
    lines = ["Backbones behind the AuSiL rows (read from the runs' outputs):"]
    for backbone in BACKBONES:
        lines.append(f"- `ausil-full-{backbone}`: {_backbone_label(root, backbone) or NOT_RUN}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- timings


def _timings(root: PathLike, run: str) -> dict[str, dict[str, Any]]:
    """{set: timing dict} of a run's results/<run>/<set>.timing.json files."""
    found = {
        p.name.removesuffix(".timing.json"): _read_json(p) for p in Path(root, "results", run).glob("*.timing.json")
    }
    return {s: found[s] for s in _ordered_sets(found) if s in found}


def _ratio(numerator: Any, denominator: Any) -> float:
    return float(numerator) / float(denominator) if numerator is not None and denominator else NAN


def _seconds(timing: Mapping[str, Any], key: str) -> float:
    return float(timing[key]) if timing.get(key) is not None else NAN


COST_SET = "test"
COST_COLUMNS = (
    "decode + features / fingerprints (s)",
    "index build (s)",
    "all queries (s)",
    "total (s)",
    "per query (s)",
)
H100_COLUMN = "AuSiL on the H100, same work (s)"
GPU_DIR = Path("reports", "gpu")


def _extraction_s(speed: Mapping[str, Any] | None, audio_s: float) -> float:
    """Seconds to decode and describe ``audio_s`` of audio at the default time step (speed report's rate)."""
    if not speed or not audio_s:
        return NAN
    steps = speed.get("time_steps", {})
    step = "1000" if "1000" in steps else next(iter(steps), None)
    return float(steps[step]["end_to_end_s_per_100s"]) * audio_s / 100 if step else NAN


def _set_audio_s(root: PathLike, set_name: str) -> float:
    summary = _read_json(Path(root, "reports", "corpus_summary.json")) or {}
    hours = summary.get("benchmarks", {}).get(set_name, {}).get("database_hours")
    return 3600 * float(hours) if hours else NAN


def _stages(run: str, timing: Mapping[str, Any], extraction_s: float) -> tuple[float, float, float]:
    """(decode + features / fingerprints, index build, all queries) seconds of one run on one set, split
    the same way for every method; AuSiL's features come from a separate stage, so they are estimated."""

    def get(key: str) -> float:
        return _seconds(timing, key)

    if run == "dejavu":
        return get("decode_s") + get("fingerprint_s"), get("insert_s"), get("query_s")
    if run.startswith("spectro"):
        return get("fingerprint_s"), get("index_s") - get("fingerprint_s"), get("query_s")
    return extraction_s, get("index_s"), get("query_s")


def timing_table(root: PathLike, set_name: str = COST_SET) -> pd.DataFrame:
    """Method x stage, in seconds, of one set on this machine, with a total per method; AuSiL's feature
    extraction is estimated from reports/speed.json's rate times the database audio (it runs in its own
    stage), and AuSiL's cost on the H100 of reports/gpu/ (same rates, same pairs) sits beside it. A last
    row applies the paper's GTX 1070 figures to the same work."""
    speed = _read_json(Path(root, "reports", "speed.json"))
    gpu_speed = _read_json(Path(root, GPU_DIR, "speed_h100.json"))
    gpu_pairs = _read_json(Path(root, GPU_DIR, "similarity_h100.json")) or {}
    audio_s = _set_audio_s(root, set_name)
    rows: dict[str, dict[str, Any]] = {}
    pairs = None
    for method, run in MAIN_ROWS.items():
        timing = _timings(root, run).get(set_name)
        if timing is None or timing.get("query_s") is None:  # not run (e.g. the released model, not fetched)
            continue
        extraction, index, queries = _stages(run, timing, _extraction_s(speed, audio_s))
        total = extraction + index + queries
        h100 = NAN
        if run.startswith("ausil") and gpu_pairs.get("ms_per_pair") and timing.get("pairs"):
            h100 = _extraction_s(gpu_speed, audio_s) + gpu_pairs["ms_per_pair"] * timing["pairs"] / 1000
        rows[method] = dict(
            zip(COST_COLUMNS, (extraction, index, queries, total, _ratio(queries, timing.get("queries_timed"))))
        )
        rows[method][H100_COLUMN] = h100
        pairs = timing.get("pairs")
    if rows and pairs:
        paper_extraction = PAPER_TIMING["feature_extraction_ms_per_video"] / 1000 * audio_s / PAPER_TIMING["video_s"]
        paper_queries = PAPER_TIMING["similarity_ms_per_pair"] * pairs / 1000
        rows["AuSiL, the paper's GTX 1070 figures (paper machine)"] = dict(
            zip(
                COST_COLUMNS,
                (paper_extraction, NAN, paper_queries, paper_extraction + paper_queries, NAN),
            )
        )
    frame = _frame(rows, "method").reindex(columns=[*COST_COLUMNS, H100_COLUMN])
    return frame.astype(float)


def cost_findings(root: PathLike, set_name: str = COST_SET) -> list[str]:
    """Sentences from :func:`timing_table`: the total cost of each method and the cheapest one."""
    table = timing_table(root, set_name)
    measured = table.drop(index=[i for i in table.index if "paper" in i])["total (s)"].dropna()
    if measured.empty:
        return []
    totals = ", ".join(f"{m} {v:.0f} s" for m, v in measured.sort_values().items())
    return [
        f"Total cost of the {set_name} set on this machine, from decoding to the last query: {totals} "
        "(AuSiL's feature extraction estimated from reports/speed.json).",
        f"Cheapest: {measured.idxmin()}. Accuracy against cost: the figure below.",
    ]


def plot_accuracy_cost(root: PathLike, set_name: str = COST_SET) -> Figure:
    """mAP with its 95 % CI (y) against total seconds on this machine (x, log scale), one point per method."""
    costs = timing_table(root, set_name)["total (s)"]
    fig, ax = plt.subplots(figsize=(9.6, 4.2))
    markers = cycle("osD^vP*X")
    drawn = False
    for method, run in MAIN_ROWS.items():
        interval = map_interval(root, run, set_name)
        cost = costs.get(method, NAN)
        if interval.n and not math.isnan(cost):
            err = [[interval.estimate - interval.low], [interval.high - interval.estimate]]
            ax.errorbar([cost], [interval.estimate], yerr=err, marker=next(markers), capsize=3, label=method)
            drawn = True
    if drawn:
        ax.set_xscale("log")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    else:
        _empty(ax)
    ax.set(xlabel=f"total seconds for {set_name} on this machine (log)", ylabel=f"{set_name} mAP (95 % CI)")
    ax.set(ylim=(0, 1.02), title=f"Accuracy against cost, {set_name}")
    ax.grid(alpha=0.3)
    return _finish(fig)


def _summarise(value: Any) -> Any:
    """A timing value as one table cell: scalars as they are, per-video dicts as count / mean / max."""
    if isinstance(value, Mapping):
        numbers = [float(v) for v in value.values() if isinstance(v, (int, float))]
        if not numbers:
            return f"{len(value)} entries"
        return f"{len(numbers)} values, mean {sum(numbers) / len(numbers):.4g}, max {max(numbers):.4g}"
    return value


def timing_details(root: PathLike, run: str) -> pd.DataFrame:
    """Every key of a run's timing files (rows) per set (columns), whatever the method recorded."""
    timings = _timings(root, run)
    if not timings:
        return pd.DataFrame({s: [NAN] for s in SETS}, index=pd.Index(["timing"], name="key"))
    frame = pd.DataFrame({s: {k: _summarise(v) for k, v in t.items()} for s, t in timings.items()})
    frame.index.name = "key"
    return frame


# --------------------------------------------------------------------------- comparisons and findings

# (label a, run a, label b, run b, group): a difference a - b the tables imply; groups pick findings per page
_METHODS_VS_AUSIL = [(m, r) for m, r in MAIN_ROWS.items() if r not in ("ausil-full-main", "ausil-full-random")]
ABLATION_STEPS = (("mac_w", "mac"), ("mac_w_a", "mac_w"), ("full", "mac_w_a"))
COMPARISON_GROUPS = ("methods", "control", "ablation")


def _comparison_pairs(root: PathLike) -> list[tuple[str, str, str, str, str]]:
    pairs = [(method, run, "AuSiL", "ausil-full-main", "methods") for method, run in _METHODS_VS_AUSIL]
    pairs.append(
        (
            "AuSiL (trained backbone)",
            "ausil-full-main",
            "AuSiL (random backbone, control)",
            "ausil-full-random",
            "control",
        )
    )
    for backbone in _backbones(root):
        for a, b in ABLATION_STEPS:
            pairs.append(
                (
                    f"{VARIANT_LABELS[a]} ({backbone} backbone)",
                    f"ausil-{a}-{backbone}",
                    f"{VARIANT_LABELS[b]} ({backbone} backbone)",
                    f"ausil-{b}-{backbone}",
                    "ablation",
                )
            )
    return pairs


def _comparisons(
    root: PathLike, groups: Sequence[str], sets: Sequence[str]
) -> list[tuple[str, str, str, str, Interval]]:
    """(set, label a, label b, group, paired difference) for every implied comparison both runs made."""
    out = []
    for set_name in sets:
        for a_label, a_run, b_label, b_run, group in _comparison_pairs(root):
            if group in groups:
                diff = paired_difference(load_ap(root, a_run, set_name), load_ap(root, b_run, set_name))
                if diff.n:
                    out.append((set_name, a_label, b_label, group, diff))
    return out


CI_HEADER = f"{int(LEVEL * 100)} % CI"


def comparison_table(
    root: PathLike, groups: Sequence[str] = COMPARISON_GROUPS, sets: Sequence[str] = SETS
) -> pd.DataFrame:
    """Paired mAP differences (a − b, the same resampled queries for both) with their bootstrap 95 % CI,
    for each method against AuSiL, trained against random backbone and each ablation step; a comparison
    whose runs are missing is left out."""
    rows = [
        {
            "set": set_name,
            "a": a,
            "b": b,
            "mAP(a) − mAP(b)": diff.estimate,
            CI_HEADER: difference_ci_text(diff),
            "queries": diff.n,
            "verdict": verdict(a, b, diff),
        }
        for set_name, a, b, _, diff in _comparisons(root, groups, sets)
    ]
    return pd.DataFrame(rows, columns=["set", "a", "b", "mAP(a) − mAP(b)", CI_HEADER, "queries", "verdict"])


def difference_ci_text(diff: Interval) -> str:
    """A paired difference's interval as the comparison tables show it (signed bounds)."""
    return f"{diff.low:+.3f} to {diff.high:+.3f}"


def verdict(a: str, b: str, diff: Interval) -> str:
    """The comparison tables' last column: an ordering only where the paired CI excludes 0."""
    if not diff.excludes_zero:
        return "no significant difference"
    return f"{a} better" if diff.estimate > 0 else f"{b} better"


def finding(set_name: str, a: str, b: str, diff: Interval) -> str:
    """One key-finding sentence for a paired difference a − b, worded by whether its CI excludes 0."""
    if not diff.excludes_zero:
        return (
            f"On {set_name}, no significant difference between {a} and {b} "
            f"(difference {diff.estimate:+.3f}, {CI_HEADER} {diff.low:+.3f} to {diff.high:+.3f}, {diff.n} queries)."
        )
    winner, loser = (a, b) if diff.estimate > 0 else (b, a)
    low, high = sorted((abs(diff.low), abs(diff.high)))
    ci = f"{CI_HEADER} {low:.2f}–{high:.2f}, {diff.n} queries"
    return f"On {set_name}, {winner} beats {loser} by {abs(diff.estimate):.2f} ({ci})."


def _highest(root: PathLike, set_name: str, made: Mapping[str, Interval]) -> str:
    """The highest mAP of the main table, and whether its lead over every other row is significant."""
    method, best = max(made.items(), key=lambda kv: kv[1].estimate)
    tied = [
        other
        for other in made
        if other != method
        and not paired_difference(
            load_ap(root, MAIN_ROWS[method], set_name), load_ap(root, MAIN_ROWS[other], set_name)
        ).excludes_zero
    ]
    lead = (
        f"no significant difference from {', '.join(tied)}"
        if tied
        else "ahead of every other row (each paired CI excludes 0)"
    )
    ci = f"{CI_HEADER} {best.low:.3f}–{best.high:.3f}, {best.n} queries"
    return f"Highest {set_name} mAP: {method}, {best.estimate:.3f} ({ci}); {lead}."


def findings(root: PathLike, groups: Sequence[str] = COMPARISON_GROUPS, sets: Sequence[str] = SETS) -> list[str]:
    """Short sentences from the numbers: per set the highest mAP of the main table with its CI, then each
    implied comparison; an ordering is stated only where the paired CI excludes 0."""
    out = []
    comparisons = _comparisons(root, groups, sets)
    for set_name in sets:
        if "methods" in groups:
            intervals = {m: map_interval(root, r, set_name) for m, r in MAIN_ROWS.items()}
            made = {m: i for m, i in intervals.items() if i.n}
            if made:
                out.append(_highest(root, set_name, made))
        out += [finding(s, a, b, diff) for s, a, b, _, diff in comparisons if s == set_name]
    return out


def findings_markdown(lines: Sequence[str]) -> str:
    """The key-findings cell of a page: a heading and one bullet per finding."""
    head = "**Key findings** (seeded bootstrap over queries; an ordering only where the paired CI excludes 0)"
    return head + "\n\n" + "\n".join(f"- {line}" for line in lines or [f"{NOT_RUN}: no result to compare."])


def real_findings(root: PathLike) -> list[str]:
    """One sentence per real-dataset task evaluated, with its CI and the paper's number where published."""
    table = real_dataset_table(root)
    if table.empty:
        return ["Real datasets not evaluated in this run (params `datasets.enabled` is empty)."]
    out = []
    for (dataset, task, method), row in table.iterrows():
        interval = map_interval(root, f"real/{dataset}/{method}", task)
        paper = row["paper AuSiL"]
        beside = f"; the paper's AuSiL: {paper:.3f}" if not math.isnan(paper) else ""
        ci = f"{CI_HEADER} {ci_text(interval)}, " if interval.n else ""
        out.append(f"{dataset}, {task}: {method} mAP {row['mAP']:.3f} ({ci}{row['queries']} queries){beside}.")
    return out


# --------------------------------------------------------------------------- provenance


def _git_commit(root: PathLike) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return done.stdout.strip()


def _params_hash(root: PathLike) -> str:
    path = Path(root, "params.yaml")
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else "no params.yaml"


def _models(root: PathLike) -> tuple[str, str]:
    """(backbone, similarity model) behind the main AuSiL run, from its timing label (``<model>; backbone:
    <backbone>``) or, failing that, the training meta."""
    label = _backbone_label(root, "main") or NOT_RUN
    model, sep, backbone = label.partition("; backbone: ")
    if sep:
        return backbone, model
    meta = _read_json(Path(root, "reports", "training_main.meta.json")) or {}
    steps = f"AuSiL network trained here ({meta['steps']} steps)" if "steps" in meta else NOT_RUN
    return label, steps


def provenance(root: PathLike) -> str:
    """One markdown line a reader can cite: commit, params.yaml hash, render date, machine, backbone and
    similarity model (no directory of the machine)."""
    speed = _read_json(Path(root, "reports", "speed.json")) or {}
    m = speed.get("machine", {})
    machine = f"{m.get('cpu', '?')}, {m.get('cpu_cores', '?')} cores, device {m.get('device', '?')}" if m else "?"
    backbone, model = _models(root)
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"*Rendered from commit `{_git_commit(root)}` · params.yaml sha256 `{_params_hash(root)}` · rendered {date} · "
        f"machine: {machine} · backbone: {backbone} · similarity model: {model}*"
    )


# --------------------------------------------------------------------------- display


def _cell(value: Any, missing: str, number_format: str) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return missing
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return format(float(value), number_format)
    return value


def formatted(frame: pd.DataFrame, number_format: str = ".3f", missing: str = NOT_RUN) -> pd.DataFrame:
    """Display copy of a table: numbers formatted, a missing result shown as ``missing`` ("not run") and
    a number the paper does not give as a dash."""
    out = frame.astype(object)
    for column in frame.columns:
        shown = NOT_IN_PAPER if str(column).startswith(PAPER_PREFIX) else missing
        out[column] = [_cell(v, shown, number_format) for v in frame[column]]
    return out


def shown(frame: pd.DataFrame, number_format: str = ".3f", missing: str = NOT_RUN) -> pd.DataFrame | Styler:
    """What a page displays: `formatted`, without pandas' 0, 1, 2 ... row numbers where the rows have no
    index of their own (a reader takes them for data)."""
    out = formatted(frame, number_format, missing)
    return out.style.hide(axis="index") if isinstance(frame.index, pd.RangeIndex) else out


def _finish(fig: Figure) -> Figure:
    """Detach the figure from pyplot so a notebook shows it once, where it is returned."""
    fig.tight_layout()
    plt.close(fig)
    return fig


def _empty(ax: Any) -> None:
    ax.text(0.5, 0.5, NOT_RUN, ha="center", va="center", transform=ax.transAxes, color="grey")


def plot_pr_curves(curves: pd.DataFrame, title: str) -> Figure:
    """Fig. 2 layout: interpolated precision vs recall, one marked line per method (controls dashed)."""
    fig, ax = plt.subplots(figsize=(9.6, 4.8))
    markers = cycle("osD^vP*X")
    for (run, method), part in curves.groupby(["run", "method"], sort=False):
        ax.plot(
            part["recall"],
            part["precision"],
            marker=next(markers),
            markersize=4,
            label=method,
            linestyle="--" if _is_control(run) else "-",
        )
    if curves.empty:
        _empty(ax)
    else:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")  # off the curves
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    return _finish(fig)


def plot_per_factor(table: pd.DataFrame, title: str) -> Figure:
    """mAP per speed factor (x) for each method (one marked line each) from :func:`per_factor_table`."""
    fig, ax = plt.subplots(figsize=(9.6, 4.2))
    positions = range(len(table.index))
    markers = cycle("osD^vP*X")
    for column in table.columns.drop(PER_FACTOR_N, errors="ignore"):
        if table[column].notna().any():
            ax.plot(positions, table[column], marker=next(markers), label=column)
    if table.drop(columns=PER_FACTOR_N, errors="ignore").notna().to_numpy().any():
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    else:
        _empty(ax)
    ax.set_xticks(list(positions), [f"x{f:g}" for f in table.index])
    ax.set(xlabel="speed factor of the query copy", ylabel="mAP (= mean reciprocal rank)", ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    return _finish(fig)


def plot_training(curves: pd.DataFrame) -> Figure:
    """AuSiL triplet loss, validation mAP and backbone training loss against step, one panel each."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.8))
    panels = [
        (axes[0], "AuSiL", "loss", "AuSiL training loss"),
        (axes[1], "AuSiL", "val_map", "validation mAP (model selection)"),
        (axes[2], "backbone", "loss", "backbone training loss"),
    ]
    for ax, prefix, column, title in panels:
        drawn = False
        for name, part in curves[curves["curve"].str.startswith(prefix)].groupby("curve", sort=False):
            part = part.dropna(subset=[column])
            if not part.empty:
                ax.plot(
                    part["step"], part[column], marker="o" if column == "val_map" else None, markersize=3, label=name
                )
                drawn = True
        if drawn:
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize="small")  # full labels
        else:
            _empty(ax)
        ax.set(xlabel="step", ylabel=column, title=title)
        ax.grid(alpha=0.3)
    return _finish(fig)


# --------------------------------------------------------------------------- notebooks


def page_title(notebook: Any) -> str:
    """The browser title of a rendered page: the notebook's first markdown heading, without the ``#``."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return "ausil report"


# an interval such as "0.939–0.990" must not break at its dash; longer text in a cell still wraps
_INTERVAL = re.compile(r"(?<![\w.])(-?\d+\.\d+)–(-?\d+\.\d+)")


def unbroken_intervals(html: str) -> str:
    """The rendered page with every ``low–high`` interval held on one line."""
    return _INTERVAL.sub(r'<span style="white-space: nowrap">\1–\2</span>', html)


def run_notebooks(
    root: PathLike, out_dir: PathLike, html: bool = True, notebooks_dir: PathLike = NOTEBOOKS_DIR
) -> list[Path]:
    """Execute every report notebook (the index page included) on ``root`` with papermill; write the
    executed copies (and HTML without code cells, titled by each notebook's heading) to ``out_dir``
    atomically and return the written paths.

    The ``python3`` kernel's ``python`` is replaced by this interpreter (jupyter_client does so for a
    bare ``python``), so the notebooks see the same environment as the caller. The kernel runs in
    ``root`` and gets ``root = "."``, and papermill's record of the paths is reduced to file names, so
    a committed rendering names no directory of the machine that made it.
    """
    # Imported here: the kernels import this module, and they need neither.
    import nbformat
    import papermill
    from nbconvert import HTMLExporter

    root_abs = Path(root).resolve()
    notebooks = sorted(Path(notebooks_dir).glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no notebook in {notebooks_dir}")
    # code hidden: a reader sees the text, tables and figures; the notebooks hold the code
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    written = []
    for notebook in notebooks:
        executed = papermill.execute_notebook(
            str(notebook),
            None,
            parameters={"root": "."},
            kernel_name="python3",
            cwd=str(root_abs),
            progress_bar=False,
            log_output=False,
        )
        record = executed.metadata.get("papermill", {})
        record["input_path"] = f"notebooks/{notebook.name}"
        record["output_path"] = None
        target = Path(out_dir, notebook.name)
        atomic_write_text(target, nbformat.writes(executed))
        written.append(target)
        if html:
            body, _ = exporter.from_notebook_node(executed, resources={"metadata": {"name": page_title(executed)}})
            atomic_write_text(target.with_suffix(".html"), unbroken_intervals(body))
            written.append(target.with_suffix(".html"))
    return written
