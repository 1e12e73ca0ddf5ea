"""mAP broken down by what the embedded corpus's construction log says about each positive and query.

The corpus builder records every clip it made (``data/corpus/construction_log.json``): a positive's
``case`` (full, partial, embedded, ``transformed:<preset>``, ``hard:<kind>``), a speed copy's
``x<factor>``, and each query's source segment, hence its length. The overall mAP hides which of
these a method fails on; these breakdowns show it.

Rules (so that every number is an AP of the FIVR protocol of :mod:`ausil_lib.retrieval.evaluation`):

* **positive case** (and speed factor, the case of a speed copy): for each query, only its DA videos of
  that case are relevant; its other DA videos leave the ranking (moved to JUNK, as in FIVR's
  per-category evaluation: another kind of duplicate is neither a hit nor a negative), and queries
  without a positive of the case are not counted. ``transformed`` pools every preset.
* **query length**: the queries whose source segment falls in the short range of
  ``corpus.query_lengths_s`` (SVD-like, 8-20 s by default), in the long range (FIVR-like, 30-60 s),
  or between the two (a long draw cut to its recording's length), with all their positives relevant.

* **all but the hard cases**: every positive except the three ``hard:`` kinds, which are the cases the
  paper reports every method failing on (high-volume mixes, overlaps of about a second, heavy distortion).
  :func:`hard_case_summary` sets it beside the full mAP, the hard cases alone, and the mAP with every
  other duplicate ranked first, per method.

``n queries`` is the number of queries a row averages over; small n means a noisy number.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ausil_lib.core.formats import PathLike, read_annotations, read_ids, read_results, read_unavailable
from ausil_lib.core.labels import DA, JUNK
from ausil_lib.report.tables import MAIN_RUNS, run_label
from ausil_lib.retrieval.evaluation import evaluate, restrict_relevant

__all__ = [
    "CONSTRUCTION_LOG",
    "ConstructionLog",
    "breakdown",
    "breakdown_table",
    "hard_case_summary",
    "plot_breakdown",
    "query_length_bounds",
    "read_construction_log",
]

CONSTRUCTION_LOG = Path("data", "corpus", "construction_log.json")  # relative to the project root
CASE = "positive case"
LENGTH = "query length"
FACTOR = "speed factor"
_TRANSFORMED = "transformed"
_HARD = "hard"
_SPEED_MARK = "x"
NOT_HARD = "all but the hard cases"
OTHERS_FIRST = "others ranked first"
_LENGTH_ORDER = ("short", "between", "long")  # the first word of a query-length group
COLUMNS = ["breakdown", "group", "run", "method", "mAP", "n queries"]


@dataclass(frozen=True)
class ConstructionLog:
    """What the breakdowns need of the log: the case of every clip made for a query, the length of each query."""

    case_of: dict[str, str]  # positive or speed copy id -> case
    query_length_s: dict[str, float]  # query id -> seconds of source audio


def read_construction_log(path: PathLike) -> ConstructionLog:
    """Cases and query lengths from a construction log written by the corpus builder."""
    clips = json.loads(Path(path).read_text(encoding="utf-8"))["clips"]
    return ConstructionLog(
        case_of={c["clip_id"]: str(c["case"]) for c in clips if c.get("query")},
        query_length_s={
            c["clip_id"]: float(sum(p["src_end"] - p["src_start"] for p in c["pieces"]))
            for c in clips
            if c["role"] == "query"
        },
    )


def query_length_bounds(root: PathLike) -> dict[str, tuple[float, float]]:
    """``{"short": (lo, hi), "long": (lo, hi)}`` of params.yaml's corpus.query_lengths_s under ``root``."""
    from ausil_lib.core.config import load_params  # here: core.config loads torch, which the rest need not

    lengths = load_params(Path(root, "params.yaml")).corpus.query_lengths_s
    return {"short": tuple(lengths.short), "long": tuple(lengths.long)}


def _case_groups(case_of: Mapping[str, str], positives: set[str]) -> dict[tuple[str, str], set[str]]:
    """(breakdown, group) -> the positive ids of that group, among ``positives``."""
    groups: dict[tuple[str, str], set[str]] = defaultdict(set)
    for video in positives:
        case = case_of.get(video)
        if case is None:
            continue
        kind, _, detail = case.partition(":")
        if kind != _HARD and not kind.startswith(_SPEED_MARK):
            groups[(CASE, NOT_HARD)].add(video)
        if kind == _TRANSFORMED:
            groups[(CASE, _TRANSFORMED)].add(video)
            groups[(CASE, f"{_TRANSFORMED}: {detail}")].add(video)
        elif kind == _HARD:
            groups[(CASE, f"{detail.replace('_', ' ')} (hard)")].add(video)
        elif kind.startswith(_SPEED_MARK):
            groups[(FACTOR, case)].add(video)
        else:
            groups[(CASE, case)].add(video)
    return dict(groups)


def _length_group(seconds: float, bounds: Mapping[str, tuple[float, float]]) -> str:
    short, long = bounds["short"], bounds["long"]
    if seconds <= short[1]:
        return f"short ({short[0]:g}-{short[1]:g} s)"
    if seconds >= long[0]:
        return f"long ({long[0]:g}-{long[1]:g} s)"
    return f"between ({short[1]:g}-{long[0]:g} s)"


def _sort_key(key: tuple[str, str]) -> tuple[int, float, str]:
    """Cases first (plain, transformed, hard), then lengths, then speed factors by value."""
    breakdown_name, group = key
    if breakdown_name == FACTOR:
        return (2, float(group.removeprefix(_SPEED_MARK)), group)
    if breakdown_name == LENGTH:
        return (1, float(_LENGTH_ORDER.index(group.split(" ", 1)[0])), group)
    if group == NOT_HARD:
        return (0, 3.0, group)
    order = 2.0 if group.endswith("(hard)") else 1.0 if group.startswith(_TRANSFORMED) else 0.0
    return (0, order, group)


def _set_inputs(
    root: PathLike, set_name: str
) -> tuple[ConstructionLog, dict[str, dict[str, list[str]]], list[str]] | None:
    """The construction log, annotations and dataset ids of a corpus set; None where any is absent."""
    bench = Path(root, "data", "corpus", set_name)
    log_path = Path(root, CONSTRUCTION_LOG)
    if not (log_path.is_file() and (bench / "annotation.json").is_file()):
        return None
    return (
        read_construction_log(log_path),
        read_annotations(bench / "annotation.json"),
        read_ids(bench / "dataset_ids.txt"),
    )


def _run_results(
    root: PathLike, runs: Sequence[str], set_name: str
) -> Iterator[tuple[str, dict[str, dict[str, float]]]]:
    """(run, results) of each run that has results on the set; runs marked unavailable are skipped."""
    for run in runs:
        path = Path(root, "results", run, f"{set_name}.json")
        if path.is_file() and read_unavailable(path) is None:
            yield run, read_results(path)


def breakdown(
    root: PathLike,
    set_name: str,
    runs: Sequence[str] = MAIN_RUNS,
    bounds: Mapping[str, tuple[float, float]] | None = None,
) -> pd.DataFrame:
    """mAP per positive case, query length and speed factor (rules in the module docstring) of each run
    with results on ``set_name``, long format (:data:`COLUMNS`); empty where the corpus or results are absent.

    ``bounds`` are the query length ranges (default: params.yaml's, see :func:`query_length_bounds`).
    """
    inputs = _set_inputs(root, set_name)
    if inputs is None:
        return pd.DataFrame(columns=COLUMNS)
    log, annotations, dataset = inputs
    bounds = query_length_bounds(root) if bounds is None else bounds
    positives = {video for labels in annotations.values() for video in labels.get(DA, ())}
    cases = _case_groups(log.case_of, positives)
    lengths: dict[tuple[str, str], set[str]] = defaultdict(set)
    for query in annotations:
        if query in log.query_length_s:
            lengths[(LENGTH, _length_group(log.query_length_s[query], bounds))].add(query)
    subsets: dict[tuple[str, str], Mapping[str, Mapping[str, Sequence[str]]]] = {
        key: restrict_relevant(annotations, lambda _q, v, ids=ids: v in ids, [DA]) for key, ids in cases.items()
    }
    subsets |= {key: {q: annotations[q] for q in queries} for key, queries in lengths.items()}
    rows: list[dict[str, Any]] = []
    for run, results in _run_results(root, runs, set_name):
        for key in sorted(subsets, key=_sort_key):
            try:
                result = evaluate(subsets[key], results, [DA], dataset, ignore_labels=[JUNK])
            except ValueError:  # no query of the group could be evaluated
                continue
            rows.append(
                {
                    "breakdown": key[0],
                    "group": key[1],
                    "run": run,
                    "method": run_label(run),
                    "mAP": result.map,
                    "n queries": result.n_queries,
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def _others_first(
    results: Mapping[str, Mapping[str, float]],
    annotations: Mapping[str, Mapping[str, Sequence[str]]],
    hard: Callable[[str], bool],
) -> dict[str, dict[str, float]]:
    """Each query's ranking with its relevant videos that are no hard case lifted above every other video,
    in their own order (a constant added to their scores)."""
    out = {}
    for query, sims in results.items():
        lifted = {v for v in annotations.get(query, {}).get(DA, ()) if not hard(v)}
        lift = (max(sims.values()) - min(sims.values()) + 1.0) if sims else 0.0
        out[query] = {v: s + lift if v in lifted else s for v, s in sims.items()}
    return out


def hard_case_summary(root: PathLike, set_name: str = "test", runs: Sequence[str] = MAIN_RUNS) -> pd.DataFrame:
    """Per method with results on ``set_name``: mAP with every duplicate relevant, without the hard cases
    (they leave the ranking), of the hard cases alone, and with every other duplicate moved to the top of
    its query's ranking (the hard ones keep their scores): the most the method could reach by improving
    on everything but the cases the paper reports every method failing on. Empty where the corpus or
    results are absent."""
    columns = ["method", "all duplicates", NOT_HARD, "hard cases only", OTHERS_FIRST, "n queries"]
    inputs = _set_inputs(root, set_name)
    if inputs is None:
        return pd.DataFrame(columns=columns)
    log, annotations, dataset = inputs
    case_of = log.case_of

    def hard(video: str) -> bool:
        return case_of.get(video, "").partition(":")[0] == _HARD

    subsets = {
        "all duplicates": annotations,
        NOT_HARD: restrict_relevant(annotations, lambda _q, v: not hard(v), [DA]),
        "hard cases only": restrict_relevant(annotations, lambda _q, v: hard(v), [DA]),
    }
    rows = []
    for run, results in _run_results(root, runs, set_name):
        row: dict[str, Any] = {"method": run_label(run)}
        boosted = _others_first(results, annotations, hard)
        row[OTHERS_FIRST] = evaluate(annotations, boosted, [DA], dataset, ignore_labels=[JUNK]).map
        for name, subset in subsets.items():
            try:
                result = evaluate(subset, results, [DA], dataset, ignore_labels=[JUNK])
            except ValueError:  # no query has a duplicate of this kind
                row[name] = float("nan")
                continue
            row[name] = result.map
            if name == "all duplicates":
                row["n queries"] = result.n_queries
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def breakdown_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (breakdown, group), its number of queries, then one mAP column per method."""
    if frame.empty:
        return pd.DataFrame(index=pd.MultiIndex.from_tuples([], names=["breakdown", "group"]))
    index = list(dict.fromkeys(zip(frame["breakdown"], frame["group"], strict=True)))
    wide = frame.pivot_table(index=["breakdown", "group"], columns="method", values="mAP", sort=False)
    wide = wide.reindex(index=pd.MultiIndex.from_tuples(index, names=["breakdown", "group"]))
    wide = wide[list(dict.fromkeys(frame["method"]))]
    wide.columns.name = None
    n = frame.groupby(["breakdown", "group"], sort=False)["n queries"].max()
    wide.insert(0, "n queries", n.reindex(wide.index).astype("Int64"))
    return wide


def plot_breakdown(frame: pd.DataFrame, title: str) -> Figure:
    """Horizontal bars: one row per group (with its n), one bar per method, the legend beside the plot."""
    table = breakdown_table(frame)
    methods = [c for c in table.columns if c != "n queries"]
    rows = len(table.index)
    fig, ax = plt.subplots(figsize=(8.0, 1.0 + 0.18 * max(1, rows) * max(1, len(methods))))
    if rows == 0:
        ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes, color="grey")
    else:
        height = 0.8 / len(methods)
        positions = np.arange(rows)
        for i, method in enumerate(methods):
            ax.barh(positions + i * height, table[method].fillna(0.0), height=height, label=method)
        ax.set_yticks(
            positions + 0.4 - height / 2,
            [f"{group} (n={n})" for (_, group), n in zip(table.index, table["n queries"], strict=True)],
        )
        ax.invert_yaxis()
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    ax.set(xlabel="mAP", xlim=(0, 1.0), title=title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    plt.close(fig)
    return fig
