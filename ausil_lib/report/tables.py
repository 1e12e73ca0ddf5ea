"""Report tables and figures: this suite's numbers beside the AuSiL paper's.

Everything the report notebooks show is computed here, so that the notebooks only call and draw
and the numbers they display are tested. Runs and sets are discovered from the files the
pipeline wrote under ``root`` (metrics/, plots/, results/, reports/, data/corpus/); a run or set
that is absent yields NaN, which :func:`formatted` shows as "not run" instead of failing.

The paper's numbers come from other datasets (FIVR-200K_a, FIVR-5K_a, SVD_a) and another machine
(GTX 1070); every column or row that holds them says so.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from itertools import cycle
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ausil_lib.core.formats import (
    PathLike,
    atomic_write_text,
    read_annotations,
    read_ids,
    read_results,
    read_unavailable,
)
from ausil_lib.core.labels import DA, JUNK, RELEASED_LABEL, RELEASED_RUN, speed_copy_id, speed_copy_of
from ausil_lib.retrieval.evaluation import evaluate

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
    "backbone_probe_table",
    "components_table",
    "corpus_table",
    "cross_corpus_table",
    "real_dataset_table",
    "discover_runs",
    "factor_annotations",
    "formatted",
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
NEAR_ZERO_NOTE = "paper says 'near-zero mAP' (no number); shown as 0.0"

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


def load_metrics(root: PathLike, collection: str = "") -> pd.DataFrame:
    """mAP and query count for every discovered run x set (NaN / <NA> where one is missing)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in Path(root, "metrics", collection).glob("*/*.json"):
        found[(path.parent.name, path.stem)] = _read_json(path)
    runs = [r for r in discover_runs(root, collection) if any(key[0] == r for key in found)]
    index = pd.MultiIndex.from_product([runs, _ordered_sets(s for _, s in found)], names=["run", "set"])
    return pd.DataFrame(
        {
            "mAP": [float(found[k]["mAP"]) if k in found and found[k].get("mAP") is not None else NAN for k in index],
            "n_queries": pd.array([found[k]["n_queries"] if k in found else None for k in index], dtype="Int64"),
            "note": [str(found[k].get("note", "")) if k in found else "" for k in index],
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
            "queries": int(found["n_queries"]),
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


def _map(metrics: pd.DataFrame, run: str, set_name: str) -> float:
    return float(metrics["mAP"].get((run, set_name), NAN))


def main_table(root: PathLike) -> pd.DataFrame:
    """Table VIII layout: this run's test / test_speed mAP beside the paper's FIVR-200K_a / SVD_a."""
    metrics = load_metrics(root)
    rows = {}
    for method, run in MAIN_ROWS.items():
        paper = PAPER_METHODS.get(method, {})
        rows[method] = {
            "run": run,
            **{run_column(s): _map(metrics, run, s) for s in SETS},
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
            **{run_column(s, "cross-corpus"): _map(metrics, run, s) for s in CROSS_SETS},
            "note": _note(metrics, run),
        }
        for run in discover_runs(root, CROSS)
    }
    return _frame(rows, "method")


PROBE_FILE = "reports/ablations/backbone_probe.json"
PROBE_COLUMNS = {
    "val_mac": "val, MAC",
    "val_mac_w": "val, MAC + W",
    "cross_val_mac_w": "cross-corpus val, MAC + W",
    "cross_val_speed_mac_w": "cross-corpus val_speed, MAC + W",
}


def backbone_probe_table(root: PathLike) -> pd.DataFrame:
    """Backbone recipes scored by scripts/backbone_probe.py (plain descriptors, no AuSiL network, never
    on `test`): one row per recipe and training step, as the script wrote them."""
    rows = _read_json(Path(root, PROBE_FILE)) or {}
    frame = pd.DataFrame(
        [
            {
                "recipe": r["name"],
                "backbone": r["backbone"],
                "steps": r["steps"],
                "overrides": ", ".join(f"{k}={v}" for k, v in sorted(r["overrides"].items())) or "-",
                **{label: r.get(key, NAN) for key, label in PROBE_COLUMNS.items()},
                "commit": r["commit"],
            }
            for r in rows.values()
        ],
        columns=["recipe", "backbone", "steps", "overrides", *PROBE_COLUMNS.values(), "commit"],
    )
    return frame.sort_values(["backbone", "recipe", "steps"], ignore_index=True)


def speed_table(root: PathLike) -> pd.DataFrame:
    """Section V-C: this run's speed-protocol mAP (and the plain test mAP it drops from) beside the paper's."""
    metrics = load_metrics(root)
    rows = {}
    for method, run in MAIN_ROWS.items():
        paper = PAPER_METHODS.get(method, {})
        rows[method] = {
            "run": run,
            run_column(SPEED_SET): _map(metrics, run, SPEED_SET),
            run_column("test"): _map(metrics, run, "test"),
            **{paper_column(d): paper.get(d, NAN) for d in ("FIVR-200K_a speed", "SVD_a speed")},
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
                run_column(s, f"this run, {bb} backbone"): _map(metrics, f"ausil-{variant}-{bb}", s)
                for bb in backbones
                for s in SETS
            },
            **{paper_column(d): v for d, v in zip(PAPER_ABLATION_SETS, PAPER_COMPONENTS[label], strict=True)},
        }
    return _frame(rows, "components")


def _default_param(root: PathLike, section: str, key: str) -> float | None:
    """The params.yaml value the default run ``ausil-full-main`` was made with, if params.yaml is there."""
    from ausil_lib.core.config import load_params  # here: core.config loads torch, which tables need not

    path = Path(root, "params.yaml")
    return float(getattr(getattr(load_params(path), section), key)) if path.is_file() else None


def _sweep_runs(root: PathLike, sweep: str) -> dict[float, str]:
    """{value: run} for the runs ``ausil-full-main-<prefix><value>`` of a sweep."""
    prefix = _SWEEPS[sweep][0]
    pattern = re.compile(rf"ausil-full-main-{prefix}(\d+(?:\.\d+)?)")
    return {float(m.group(1)): run for run in discover_runs(root) if (m := pattern.fullmatch(run))}


def _sweep_table(root: PathLike, sweep: str) -> pd.DataFrame:
    """Paper rows plus every run of the sweep; the default run sits at its params.yaml value."""
    _, index_name, paper, (section, key) = _SWEEPS[sweep]
    metrics = load_metrics(root)
    runs = _sweep_runs(root, sweep)
    default = _default_param(root, section, key)
    if (
        default is not None
        and default not in runs
        and any(not math.isnan(_map(metrics, "ausil-full-main", s)) for s in SETS)
    ):
        runs[default] = "ausil-full-main"
    rows = {}
    for value in sorted(set(paper) | set(runs)):
        run = runs.get(value, "")
        rows[value] = {
            "run": run,
            **{run_column(s): _map(metrics, run, s) for s in SETS},
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
    return (
        f"No {index_name} sweep was run: the default budget trains only the default setting (the row "
        f"marked `ausil-full-main`, if any). The sweep is enabled through params.yaml; its runs, named "
        f"`ausil-full-main-{prefix}<value>`, then appear here."
    )


def corpus_table(root: PathLike) -> pd.DataFrame:
    """Size of each benchmark split of this suite's corpus (reports/corpus_summary.json)."""
    summary = _read_json(Path(root, "reports", "corpus_summary.json")) or {}
    return _frame(summary.get("benchmarks", {}), "set")


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


def factor_annotations(
    annotations: Mapping[str, Mapping[str, Sequence[str]]], factor: float
) -> dict[str, dict[str, list[str]]]:
    """Annotations where each query's copy at ``factor`` is its only positive; its other positives
    (the copies at other factors) move to JUNK, so they neither help nor hurt that factor's AP."""
    out = {}
    for query, labels in annotations.items():
        target = speed_copy_id(query, factor)
        positives = list(labels.get(DA, []))
        out[query] = {
            **{k: list(v) for k, v in labels.items()},
            DA: [v for v in positives if v == target],
            JUNK: [*labels.get(JUNK, []), *(v for v in positives if v != target)],
        }
    return out


def per_factor_map(root: PathLike, run: str, factors: Sequence[float] | None = None) -> pd.DataFrame:
    """mAP of one run on the speed set counting one speed factor at a time (NaN where not run)."""
    factors = speed_factors(root) if factors is None else list(factors)
    annotation, ids = _speed_paths(root)
    results_path = Path(root, "results", run, f"{SPEED_SET}.json")
    rows: dict[float, dict[str, Any]] = {f: {"mAP": NAN, "n_queries": None} for f in factors}
    made = results_path.is_file() and read_unavailable(results_path) is None
    if annotation.is_file() and ids.is_file() and made:
        annotations, dataset, results = read_annotations(annotation), read_ids(ids), read_results(results_path)
        for factor in factors:
            if not any(speed_copy_id(q, factor) in dataset for q in annotations):
                continue  # no copy at this factor: nothing to evaluate
            result = evaluate(factor_annotations(annotations, factor), results, [DA], dataset, ignore_labels=[JUNK])
            rows[factor] = {"mAP": result.map, "n_queries": result.n_queries}
    frame = _frame(rows, "speed factor").reindex(columns=["mAP", "n_queries"])
    frame["mAP"] = frame["mAP"].astype(float)
    frame["n_queries"] = frame["n_queries"].astype("Int64")
    return frame


def per_factor_table(
    root: PathLike, runs: Sequence[str] = MAIN_RUNS, factors: Sequence[float] | None = None
) -> pd.DataFrame:
    """mAP per speed factor (rows) and method (columns), for the Section V-C breakdown."""
    factors = speed_factors(root) if factors is None else list(factors)
    frame = pd.DataFrame(
        {run_label(run): per_factor_map(root, run, factors)["mAP"] for run in runs},
        index=pd.Index(factors, name="speed factor", dtype=float),
    )
    return frame.astype(float)


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
        rows[path.name.removesuffix(".meta.json").removeprefix("training_")] = row
    return _frame(rows, "model")


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


def _machine(speed: Mapping[str, Any]) -> str:
    m = speed.get("machine", {})
    return (
        f"this machine: {m.get('cpu', '?')}, {m.get('cpu_cores', '?')} cores, {m.get('device', '?')}, "
        f"torch {m.get('torch', '?')} ({m.get('torch_threads', '?')} threads)"
    )


def _timings(root: PathLike, run: str) -> dict[str, dict[str, Any]]:
    """{set: timing dict} of a run's results/<run>/<set>.timing.json files."""
    found = {
        p.name.removesuffix(".timing.json"): _read_json(p) for p in Path(root, "results", run).glob("*.timing.json")
    }
    return {s: found[s] for s in _ordered_sets(found) if s in found}


def _ratio(numerator: Any, denominator: Any) -> float:
    return float(numerator) / float(denominator) if numerator is not None and denominator else NAN


def timing_table(root: PathLike) -> pd.DataFrame:
    """Feature extraction per 100 s of audio, similarity per pair, Dejavu and Spectro costs, with the
    paper's GTX 1070 figures as separate rows (another machine)."""
    rows: list[dict[str, Any]] = []

    def add(quantity: str, method: str, set_name: str, value: Any, unit: str, machine: str) -> None:
        rows.append(
            {
                "quantity": quantity,
                "method": method,
                "set": set_name,
                "value": NAN if value is None else float(value),
                "unit": unit,
                "machine": machine,
            }
        )

    speed = _read_json(Path(root, "reports", "speed.json"))
    extraction = "feature extraction per 100 s of audio"
    if speed:
        for step, info in sorted(speed.get("time_steps", {}).items(), key=lambda kv: -float(kv[0])):
            add(
                extraction,
                f"AuSiL, time step {step} ms (decode + log-mel + backbone)",
                "",
                1000 * info["end_to_end_s_per_100s"],
                "ms",
                _machine(speed),
            )
            add(
                extraction,
                f"AuSiL, time step {step} ms (backbone only)",
                "",
                1000 * info["backbone_s_per_100s"],
                "ms",
                _machine(speed),
            )
    else:
        add(extraction, "AuSiL", "", None, "ms", "this machine")
    add(extraction, "AuSiL (paper)", "", PAPER_TIMING["feature_extraction_ms_per_video"], "ms", PAPER_TIMING["machine"])

    runs = list(MAIN_RUNS) + [r for r in discover_runs(root) if r not in MAIN_RUNS]
    for run in runs:
        timings = _timings(root, run) or {s: {} for s in SETS}
        for set_name, timing in timings.items():
            add("similarity per video pair", run_label(run), set_name, timing.get("ms_per_pair"), "ms", "this machine")
    add(
        "similarity per video pair",
        "AuSiL (paper)",
        "",
        PAPER_TIMING["similarity_ms_per_pair"],
        "ms",
        PAPER_TIMING["machine"],
    )

    for set_name, timing in (_timings(root, "dejavu") or {s: {} for s in SETS}).items():
        add(
            "Dejavu fingerprint + insert per minute of audio",
            "Dejavu",
            set_name,
            timing.get("fingerprint_insert_s_per_audio_min"),
            "s",
            "this machine",
        )
        per_video = timing.get("index_s_per_video") or {}
        add(
            "Dejavu indexing per database video (incl. decoding)",
            "Dejavu",
            set_name,
            sum(per_video.values()) / len(per_video) if per_video else None,
            "s",
            "this machine",
        )
        add(
            "Dejavu query time per query",
            "Dejavu",
            set_name,
            _ratio(timing.get("query_s"), timing.get("queries_timed")),
            "s",
            "this machine",
        )
    for run in ("spectro-slides", "spectro-tiles"):
        for set_name, timing in (_timings(root, run) or {s: {} for s in SETS}).items():
            for key in ("fingerprint_s", "match_s"):
                add(
                    f"{run_label(run)} {key.removesuffix('_s')} time, total",
                    run_label(run),
                    set_name,
                    timing.get(key),
                    "s",
                    "this machine",
                )
    return pd.DataFrame(rows, columns=["quantity", "method", "set", "value", "unit", "machine"])


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


def formatted(frame: pd.DataFrame, number_format: str = ".3f") -> pd.DataFrame:
    """Display copy of a table: numbers formatted, a missing result shown as "not run" and a
    number the paper does not give as a dash."""
    out = frame.astype(object)
    for column in frame.columns:
        missing = NOT_IN_PAPER if str(column).startswith(PAPER_PREFIX) else NOT_RUN
        out[column] = [_cell(v, missing, number_format) for v in frame[column]]
    return out


def _finish(fig: Figure) -> Figure:
    """Detach the figure from pyplot so a notebook shows it once, where it is returned."""
    fig.tight_layout()
    plt.close(fig)
    return fig


def _empty(ax: Any) -> None:
    ax.text(0.5, 0.5, NOT_RUN, ha="center", va="center", transform=ax.transAxes, color="grey")


def plot_pr_curves(curves: pd.DataFrame, title: str) -> Figure:
    """Fig. 2 layout: interpolated precision vs recall, one marked line per method (controls dashed)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
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
        ax.legend(loc="lower left", fontsize="small")
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    return _finish(fig)


def plot_per_factor(table: pd.DataFrame, title: str) -> Figure:
    """mAP per speed factor (x) for each method (one marked line each) from :func:`per_factor_table`."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    positions = range(len(table.index))
    markers = cycle("osD^vP*X")
    for column in table.columns:
        if table[column].notna().any():
            ax.plot(positions, table[column], marker=next(markers), label=column)
    if table.notna().to_numpy().any():
        ax.legend(fontsize="small")
    else:
        _empty(ax)
    ax.set_xticks(list(positions), [f"x{f:g}" for f in table.index])
    ax.set(xlabel="speed factor of the query copy", ylabel="mAP", ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    return _finish(fig)


def plot_training(curves: pd.DataFrame) -> Figure:
    """AuSiL triplet loss, validation mAP and backbone training loss against step, one panel each."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
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
            ax.legend(fontsize="small")
        else:
            _empty(ax)
        ax.set(xlabel="step", ylabel=column, title=title)
        ax.grid(alpha=0.3)
    return _finish(fig)


# --------------------------------------------------------------------------- notebooks


LOCALISATION_SETS = ("test", "test_speed")
LOCALISATION_COLUMNS = {
    "precision": "P",
    "recall": "R",
    "f1": "F1",
    "mean_iou": "mean IoU",
    "speed_error": "speed error",
    "n": "true segments",
}


def localisation_table(root: PathLike) -> pd.DataFrame:
    """metrics/localisation/<method>/<set>.json (`ausil locate-evaluate`) as one row per method and set;
    empty when the locate stages have not run."""
    rows = {}
    for path in sorted(Path(root, "metrics", "localisation").glob("*/*.json")):
        if path.stem in LOCALISATION_SETS:
            m = json.loads(path.read_text(encoding="utf-8"))
            rows[(path.parent.name, path.stem)] = {label: m.get(key) for key, label in LOCALISATION_COLUMNS.items()}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(LOCALISATION_COLUMNS.values()))
    table.index = pd.MultiIndex.from_tuples(list(rows), names=["method", "set"]) if rows else table.index
    return table


def localisation_figure(root: PathLike, method: str = "ausil", benchmark: str = "test") -> Figure | None:
    """The example similarity map `ausil locate --example` kept, with the detected (solid) and true
    (dashed) segments drawn as lines from their start to their end; None when there is none."""
    path = Path(root, "results", "localisation", method, f"{benchmark}.example.json")
    example = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if not example:
        return None
    sim = np.asarray(example["similarity"])
    step, half = example["step_s"], example["window_s"] / 2
    fig, ax = plt.subplots(figsize=(6, 5))
    extent = (half, half + sim.shape[1] * step, half + sim.shape[0] * step, half)  # window centres, seconds
    shown = ax.imshow(sim, cmap="viridis", extent=extent, aspect="auto")
    fig.colorbar(shown, ax=ax, label="segment similarity")
    for key, style, colour in (("true", "--", "white"), ("detected", "-", "red")):
        for i, s in enumerate(example[key]):
            ax.plot(
                [s["video_start"], s["video_end"]],
                [s["query_start"], s["query_end"]],
                style,
                color=colour,
                linewidth=2,
                label=f"{key} (speed {s['speed']:.2f})" if i == 0 or key == "detected" else None,
            )
    ax.set_xlabel(f"video {example['video']} (s)")
    ax.set_ylabel(f"query {example['query']} (s)")
    ax.set_title(f"{method}, {benchmark}: similarity map and segments")
    ax.legend(loc="lower right", fontsize="small")
    return fig


def run_notebooks(
    root: PathLike, out_dir: PathLike, html: bool = True, notebooks_dir: PathLike = NOTEBOOKS_DIR
) -> list[Path]:
    """Execute every report notebook on ``root`` with papermill; write the executed copies (and HTML)
    to ``out_dir`` atomically and return the written paths.

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
    exporter = HTMLExporter(exclude_input_prompt=True, exclude_output_prompt=True)
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
            body, _ = exporter.from_notebook_node(executed)
            atomic_write_text(target.with_suffix(".html"), body)
            written.append(target.with_suffix(".html"))
    return written
