"""Report of the temporal localisation (issue 15): the scores per method and set, their bootstrap
intervals over queries, AuSiL's paired F1 difference with each other method, and an example map.

The scores are those of :func:`ausil_lib.localisation.metrics.localisation_metrics`, the one definition:
it is called on each query alone, which gives the query's counts (detections, correct detections, true
pairs, hit pairs, summed IoU), and the pooled scores of any set of queries follow from summed counts
(P = correct / detections, R = hits / true pairs, F1 from them, mean IoU = summed IoU / true pairs,
speed error = summed speed error / hits).
The queries are resampled as for mAP (:func:`ausil_lib.report.stats.bootstrap_pooled`).

Kept apart from :mod:`ausil_lib.report.tables` (only the localisation notebook imports it), so that the
README stage, which imports the tables, does not depend on the localisation code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ausil_lib.core.formats import PathLike, read_annotations
from ausil_lib.localisation.metrics import localisation_metrics
from ausil_lib.localisation.segments import Located, Segment, read_segments
from ausil_lib.localisation.truth import corpus_truth
from ausil_lib.report.stats import Interval, bootstrap_pooled
from ausil_lib.report.tables import CI_HEADER, ci_text, difference_ci_text, finding, run_label, verdict

__all__ = [
    "COUNTS",
    "LOCALISATION_COLUMNS",
    "LOCALISATION_SETS",
    "STATISTICS",
    "f1_difference",
    "localisation_comparison",
    "localisation_figure",
    "localisation_findings",
    "localisation_intervals",
    "localisation_table",
    "method_label",
    "speed_breakdown",
    "pooled",
    "query_counts",
]

LOCALISATION_SETS = ("test", "test_speed")
LOCALISATION_COLUMNS = {"P": "P", "R": "R", "F1": "F1", "tIoU": "mean IoU", "dspd": "speed error", "n": "true segments"}
CI_COLUMNS = ("F1", "tIoU", "dspd")  # the scores the table gives an interval
REFERENCE = "ausil"  # the method every other one is compared with
COUNTS = ("detections", "correct", "true", "hits", "iou", "speed_error")  # the columns of query_counts

_Segments = Mapping[str, Mapping[str, Sequence[Segment]]]


# --------------------------------------------------------------------------- per-query counts


def query_counts(detected: _Segments, truth: _Segments, queries: Sequence[str] | None = None) -> np.ndarray:
    """One row of :data:`COUNTS` per query (default: every query with true or detected segments, sorted),
    from :func:`localisation_metrics` of that query alone; a query without detections has 0 of them."""
    queries = sorted(set(truth) | set(detected)) if queries is None else queries
    rows = []
    for q in queries:
        mine = detected.get(q, {})
        m = localisation_metrics({q: mine}, {q: truth.get(q, {})})
        n_det = sum(len(segments) for segments in mine.values())
        hits = round(m["R"] * m["n"])
        rows.append((n_det, round(m["P"] * n_det), m["n"], hits, m["tIoU"] * m["n"], (m["dspd"] or 0.0) * hits))
    return np.array(rows, dtype=float).reshape(len(rows), len(COUNTS))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (as localisation_metrics scores an empty set)."""
    return np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den > 0)


def _precision(sums: np.ndarray) -> np.ndarray:
    return _ratio(sums[:, 1], sums[:, 0])


def _recall(sums: np.ndarray) -> np.ndarray:
    return _ratio(sums[:, 3], sums[:, 2])


def _f1(sums: np.ndarray) -> np.ndarray:
    p, r = _precision(sums), _recall(sums)
    return _ratio(2 * p * r, p + r)


def _mean_iou(sums: np.ndarray) -> np.ndarray:
    return _ratio(sums[:, 4], sums[:, 2])


def _speed_error(sums: np.ndarray) -> np.ndarray:
    """Summed speed error / hits: NaN without hits (localisation_metrics gives None there, not 0)."""
    hits = sums[:, 3]
    return np.divide(sums[:, 5], hits, out=np.full_like(hits, np.nan, dtype=float), where=hits > 0)


# pooled score of summed counts, shape (m, len(COUNTS)) -> m values; keys as localisation_metrics'
STATISTICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "P": _precision,
    "R": _recall,
    "F1": _f1,
    "tIoU": _mean_iou,
    "dspd": _speed_error,
}


def pooled(counts: np.ndarray) -> dict[str, float]:
    """P, R, F1 and mean IoU of the queries whose counts are given (equal to localisation_metrics on them)."""
    sums = np.asarray(counts, dtype=float).reshape(-1, len(COUNTS)).sum(axis=0)[None, :]
    return {key: float(statistic(sums)[0]) for key, statistic in STATISTICS.items()}


def localisation_intervals(detected: _Segments, truth: _Segments) -> dict[str, Interval]:
    """P, R, F1, mean IoU and speed error with their 95 % bootstrap intervals over queries."""
    counts = query_counts(detected, truth)
    return {key: bootstrap_pooled(counts, statistic) for key, statistic in STATISTICS.items()}


def f1_difference(a: _Segments, b: _Segments, truth: _Segments) -> Interval:
    """F1(a) − F1(b) on the same queries, with an interval that resamples the same queries for both."""
    queries = sorted(set(truth) | set(a) | set(b))
    both = np.hstack([query_counts(a, truth, queries), query_counts(b, truth, queries)])
    k = len(COUNTS)
    return bootstrap_pooled(both, lambda sums: _f1(sums[:, :k]) - _f1(sums[:, k:]))


# --------------------------------------------------------------------------- files under root


def _segments(root: PathLike, method: str, set_name: str) -> Located | None:
    path = Path(root, "results", "localisation", method, f"{set_name}.json")
    return read_segments(path) if path.is_file() else None


def _truth(root: PathLike, set_name: str) -> Located | None:
    """The set's true segments from the construction log and its annotation; None when either is absent."""
    log = Path(root, "data", "corpus", "construction_log.json")
    annotation = Path(root, "data", "corpus", set_name, "annotation.json")
    if not (log.is_file() and annotation.is_file()):
        return None
    return corpus_truth(log, read_annotations(annotation))


def _others(root: PathLike) -> list[str]:
    """Every method but AuSiL with a localisation results folder, by name."""
    return sorted(p.name for p in Path(root, "results", "localisation").glob("*") if p.is_dir() and p.name != REFERENCE)


def method_label(method: str) -> str:
    """A localisation method's name as tables print it."""
    return "AuSiL" if method == REFERENCE else run_label(method)


def ci_header(key: str) -> str:
    return f"{LOCALISATION_COLUMNS[key]} {CI_HEADER}"


def localisation_table(root: PathLike) -> pd.DataFrame:
    """metrics/localisation/<method>/<set>.json (`ausil locate-evaluate`) as one row per method and set,
    with the 95 % bootstrap interval of F1 and mean IoU over queries where the segments file and the
    corpus truth exist (<NA> otherwise); empty when the locate stages have not run."""
    rows = {}
    truths: dict[str, Located | None] = {}
    for path in sorted(Path(root, "metrics", "localisation").glob("*/*.json")):
        method, set_name = path.parent.name, path.stem
        if set_name not in LOCALISATION_SETS:
            continue
        m = json.loads(path.read_text(encoding="utf-8"))
        row = {label: m.get(key) for key, label in LOCALISATION_COLUMNS.items()}
        if set_name not in truths:
            truths[set_name] = _truth(root, set_name)
        detected, truth = _segments(root, method, set_name), truths[set_name]
        intervals = localisation_intervals(detected, truth) if detected is not None and truth is not None else {}
        for key in CI_COLUMNS:
            measured = key in intervals and intervals[key].n and not np.isnan(intervals[key].estimate)
            row[ci_header(key)] = ci_text(intervals[key]) if measured else pd.NA
        row["queries"] = intervals["F1"].n if intervals else pd.NA
        rows[(method, set_name)] = row
    columns = [c for key, label in LOCALISATION_COLUMNS.items() for c in (label, *_ci_of(key))] + ["queries"]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    table["queries"] = table["queries"].astype("Int64")
    table.index = pd.MultiIndex.from_tuples(list(rows), names=["method", "set"]) if rows else table.index
    return table


def _ci_of(key: str) -> tuple[str, ...]:
    return (ci_header(key),) if key in CI_COLUMNS else ()


DIFFERENCE = "F1(a) − F1(b)"


def _comparisons(root: PathLike, sets: Sequence[str]) -> list[tuple[str, str, str, Interval]]:
    """(set, label a, label b, paired F1 difference): AuSiL against each other method that located the set."""
    out = []
    for set_name in sets:
        reference, truth = _segments(root, REFERENCE, set_name), _truth(root, set_name)
        if reference is None or truth is None:
            continue
        for method in _others(root):
            other = _segments(root, method, set_name)
            if other is not None:
                diff = f1_difference(reference, other, truth)
                if diff.n:
                    out.append((set_name, method_label(REFERENCE), method_label(method), diff))
    return out


def localisation_comparison(root: PathLike, sets: Sequence[str] = LOCALISATION_SETS) -> pd.DataFrame:
    """Paired F1 differences, AuSiL − each other method on the same set (the same resampled queries for
    both), with their 95 % bootstrap interval and a verdict that orders two methods only where it excludes 0."""
    rows = [
        {
            "set": set_name,
            "a": a,
            "b": b,
            DIFFERENCE: diff.estimate,
            CI_HEADER: difference_ci_text(diff),
            "queries": diff.n,
            "verdict": verdict(a, b, diff),
        }
        for set_name, a, b, diff in _comparisons(root, sets)
    ]
    return pd.DataFrame(rows, columns=["set", "a", "b", DIFFERENCE, CI_HEADER, "queries", "verdict"])


def localisation_findings(root: PathLike, sets: Sequence[str] = LOCALISATION_SETS) -> list[str]:
    """One sentence per comparison of :func:`localisation_comparison`, worded as the mAP findings."""
    return [finding(f"{set_name} (localisation F1)", a, b, diff) for set_name, a, b, diff in _comparisons(root, sets)]


def _at_speed(truth: _Segments, speed: float) -> Located:
    """The true segments of one speed (rounded to 3 decimals, as the corpus's factors are given)."""
    out: Located = {}
    for q, videos in truth.items():
        for v, segs in videos.items():
            kept = [s for s in segs if round(s.speed, 3) == speed]
            if kept:
                out.setdefault(q, {})[v] = kept
    return out


def speed_breakdown(root: PathLike, set_name: str = "test_speed") -> pd.DataFrame:
    """Recall and speed error of each method per true speed of the set (rows), from the segments files and
    the corpus truth; empty when either is absent. Precision has no per-speed value (a false detection has
    no true speed), so only the true-segment side is split: R = hit / true pairs of that speed, speed
    error = mean |detected / true speed - 1| over those hits, both by localisation_metrics itself."""
    truth = _truth(root, set_name)
    located = {m: s for m in [REFERENCE, *_others(root)] if (s := _segments(root, m, set_name)) is not None}
    if truth is None or not located:
        return pd.DataFrame()
    speeds = sorted({round(s.speed, 3) for videos in truth.values() for segs in videos.values() for s in segs})
    per_speed = {speed: _at_speed(truth, speed) for speed in speeds}
    frame = pd.DataFrame(index=pd.Index(speeds, name="true speed"))
    frame["true segments"] = [sum(len(s) for v in per_speed[x].values() for s in v.values()) for x in speeds]
    for method, detected in located.items():
        scores = [localisation_metrics(detected, per_speed[x]) for x in speeds]
        frame[(method_label(method), "R")] = [m["R"] for m in scores]
        frame[(method_label(method), "speed error")] = [m["dspd"] if m["dspd"] is not None else np.nan for m in scores]
    frame.columns = pd.MultiIndex.from_tuples([c if isinstance(c, tuple) else (c, "") for c in frame.columns])
    return frame


# --------------------------------------------------------------------------- figure


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
