"""FIVR evaluation protocol (mAP and interpolated PR curve) as used by the AuSiL authors.

Reimplements the behaviour of the reference ``evaluation.py`` so that numbers are comparable
with the paper, with two deliberate differences that do not change results on valid input:
ties in similarity are broken by video id (the reference keeps dict order, which is not
reproducible across producers), and warnings are returned instead of printed.

Protocol, per query of the annotation file:

* relevant set = union of the annotation lists of ``relevant_labels``, restricted to the dataset;
  a query missing from the results, absent from the dataset or with no relevant video is skipped
  with a warning;
* ranking = result entries whose video is in the dataset and is not the query, by similarity
  descending;
* AP (paper Eq. 7) = (1/n) * sum over relevant hits of (hits so far / rank), n = size of the
  relevant set, so relevant videos missing from the results contribute 0;
* PR curve: the ranking's labels and scores, padded as the reference does (a 1 for every relevant
  video missing from the results, 0s up to the dataset size, score 0 for all padding), fed to
  ``sklearn.metrics.precision_recall_curve`` and interpolated at :data:`RECALL_LEVELS`.

Beside mAP, two summaries that read differently:

* recall@k (hit rate, the Recall@K of metric learning): the share of evaluated queries with at
  least one relevant video among their first k ranked videos, for k in :data:`RECALL_AT`;
* µAP (micro AP, FIVR / ViSiL): every evaluated query's ranked (query, video) pairs pooled into one
  list by similarity (ties by query id, then video id), AP of that list over all the queries'
  relevant videos together, a relevant video missing from its query's results contributing 0 as
  in Eq. 7; unlike mAP it rewards scores that are comparable across queries.

Files: the metrics file holds only these summaries (what ``dvc metrics show`` lists); per-query
values go to a file beside the results (:func:`query_ap_path`, read by :func:`read_query_ap`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve

from ausil_lib.core.bootstrap import bootstrap_map
from ausil_lib.core.formats import (
    FormatError,
    PathLike,
    atomic_write_json,
    metric_values,
    read_annotations,
    read_ids,
    read_results,
)
from ausil_lib.core.labels import JUNK, speed_copy_id, speed_copy_of

__all__ = [
    "RECALL_AT",
    "RECALL_LEVELS",
    "EvaluationResult",
    "average_precision",
    "evaluate",
    "evaluate_files",
    "interpolated_pr",
    "micro_average_precision",
    "query_ap_path",
    "rank_videos",
    "read_query_ap",
    "restrict_relevant",
    "speed_factor_results",
]

_RECALL_STEP = 0.05
_N_RECALL_STEPS = 20

# Computed as i * 0.05 exactly like the reference, not as i / 20: for i in {3, 6, 7, 12, 14, 17,
# 19} the two differ in the last bit (e.g. 3 * 0.05 = 0.15000000000000002 > 3 / 20), so a point
# whose recall is exactly i / 20 does not count for that level. Kept for comparable curves.
RECALL_LEVELS: np.ndarray = np.arange(_N_RECALL_STEPS + 1) * _RECALL_STEP
RECALL_LEVELS.setflags(write=False)

RECALL_AT: tuple[int, ...] = (1, 10)  # the k of recall@k in the metrics files
QUERY_AP_SUFFIX = ".ap.json"  # per-query values beside a results file


def rank_videos(query: str, similarities: Mapping[str, float], dataset: set[str]) -> list[tuple[str, float]]:
    """Rank the dataset videos of one query's results, best first.

    The query itself and ids outside the dataset are dropped; ties in similarity are broken by
    video id ascending so that the ranking (hence AP) does not depend on dict order.
    """
    ranked = []
    for video, sim in similarities.items():
        if video == query or video not in dataset:
            continue
        if not math.isfinite(sim):
            raise ValueError(f"query {query!r}, video {video!r}: similarity {sim!r} is not finite")
        ranked.append((video, float(sim)))
    ranked.sort(key=lambda item: (-item[1], item[0]))
    return ranked


def average_precision(ranked_ids: Sequence[str], relevant: set[str]) -> float:
    """AP of a ranking (paper Eq. 7): mean over all relevant videos of the precision at their
    rank, a relevant video that was never retrieved contributing 0."""
    if not relevant:
        raise ValueError("average precision is undefined for an empty relevant set")
    hits = 0
    total = 0.0
    for rank, video in enumerate(ranked_ids, start=1):
        if video in relevant:
            hits += 1
            total += hits / rank
    return total / len(relevant)


def micro_average_precision(pairs: Iterable[tuple[float, str, str, bool]], n_relevant: int) -> float:
    """µAP of pooled ``(similarity, query, video, relevant)`` pairs: one ranking by similarity (ties by
    query, then video id), precision summed at each relevant pair and divided by ``n_relevant``, the
    relevant pairs of all queries, so one never retrieved contributes 0 (as in Eq. 7)."""
    if n_relevant <= 0:
        raise ValueError("micro AP is undefined without relevant pairs")
    hits = 0
    total = 0.0
    for rank, (*_, relevant) in enumerate(sorted(pairs, key=lambda item: (-item[0], item[1], item[2])), start=1):
        if relevant:
            hits += 1
            total += hits / rank
    return total / n_relevant


def interpolated_pr(ranked: list[tuple[str, float]], relevant: set[str], dataset_size: int) -> np.ndarray:
    """Interpolated precision at :data:`RECALL_LEVELS` for one query, as the reference does.

    ``ranked`` comes from :func:`rank_videos`; ``dataset_size`` is the number of dataset ids
    (the reference pads to ``len(dataset)``, the query included). Precision at level r is the
    highest precision over curve points with recall >= r.
    """
    if not relevant:
        raise ValueError("the PR curve is undefined for an empty relevant set")
    y_target = [1.0 if video in relevant else 0.0 for video, _ in ranked]
    y_score = [sim for _, sim in ranked]
    retrieved = int(sum(y_target))
    y_target += [1.0] * (len(relevant) - retrieved)
    y_target += [0.0] * (dataset_size - len(y_target))
    y_score += [0.0] * (len(y_target) - len(y_score))
    precision, recall, _ = precision_recall_curve(y_target, y_score)
    return np.array([precision[recall >= level].max() for level in RECALL_LEVELS])


@dataclass(frozen=True)
class EvaluationResult:
    """Outcome of an evaluation: mAP, per-query AP and hits, µAP, mean PR curve and why queries were skipped."""

    map: float
    ap: dict[str, float]
    pr_curve: np.ndarray
    n_queries: int
    micro_ap: float
    hits: dict[str, dict[int, bool]]  # per query: is a relevant video among the first k, for k in RECALL_AT
    warnings: list[str] = field(default_factory=list)

    def recall_at(self, k: int) -> float:
        """recall@k as a hit rate: the share of evaluated queries with a relevant video in their top k."""
        return float(np.mean([hits[k] for hits in self.hits.values()]))

    def summary(self) -> dict[str, Any]:
        """The numbers a metrics file holds (plain Python values), under the short keys that keep
        ``dvc metrics show`` within 200 columns: mAP and its 95 % bootstrap interval over queries
        (mAP_lo, mAP_hi: :func:`ausil_lib.core.bootstrap.bootstrap_map`, the report's), n (queries), R@k
        (recall@k), uAP (µAP)."""
        interval = bootstrap_map(self.ap)
        return {
            "mAP": float(self.map),
            "mAP_lo": interval.low,
            "mAP_hi": interval.high,
            "n": self.n_queries,
            **{f"R@{k}": self.recall_at(k) for k in RECALL_AT},
            "uAP": float(self.micro_ap),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (plain Python floats and lists), per-query values included."""
        return {
            **self.summary(),
            "ap": {query: float(value) for query, value in self.ap.items()},
            "recall": [float(level) for level in RECALL_LEVELS],
            "precision": [float(value) for value in self.pr_curve],
            "warnings": list(self.warnings),
        }


def _relevant_set(labels: Mapping[str, Sequence[str]], relevant_labels: Sequence[str], dataset: set[str]) -> set[str]:
    """Union of the lists of the relevant labels, restricted to the dataset."""
    relevant: set[str] = set()
    for label in relevant_labels:
        relevant.update(labels.get(label, ()))
    return relevant & dataset


def _check_labels(relevant_labels: Sequence[str]) -> list[str]:
    """A bare string would be iterated character by character; refuse it, and empty lists."""
    if isinstance(relevant_labels, str):
        raise TypeError(f"relevant_labels must be a sequence of labels, not the string {relevant_labels!r}")
    labels = list(relevant_labels)
    if not labels:
        raise ValueError("relevant_labels is empty: no video could be relevant")
    return labels


def evaluate(
    annotations: Mapping[str, Mapping[str, Sequence[str]]],
    results: Mapping[str, Mapping[str, float]],
    relevant_labels: Sequence[str],
    dataset_ids: Iterable[str],
    ignore_labels: Sequence[str] = (),
) -> EvaluationResult:
    """Evaluate ``results`` against ``annotations`` with the FIVR protocol.

    Queries are those of the annotations, in their order. Videos a query labels with one of
    ``ignore_labels`` (the embedded corpus's JUNK: neither clean positives nor clean negatives)
    are removed from that query's dataset, as junk images are in Revisited Oxford/Paris; with no
    ignore labels this is exactly the FIVR evaluation. Raises ValueError, listing the reasons,
    when no query can be evaluated (a mean over nothing would be meaningless).
    """
    labels = _check_labels(relevant_labels)
    dataset = set(dataset_ids)
    ap: dict[str, float] = {}
    hits: dict[str, dict[int, bool]] = {}
    pooled: list[tuple[float, str, str, bool]] = []
    n_relevant = 0
    curves: list[np.ndarray] = []
    warnings: list[str] = []
    for query, query_labels in annotations.items():
        if query not in results:
            warnings.append(f"query {query!r} is missing from the results; skipped")
            continue
        if query not in dataset:
            warnings.append(f"query {query!r} is not in the dataset; skipped")
            continue
        ignored = {v for label in ignore_labels for v in query_labels.get(label, ())}
        query_dataset = dataset - ignored if ignored else dataset
        relevant = _relevant_set(query_labels, labels, query_dataset)
        if not relevant:
            warnings.append(f"query {query!r} has no relevant video for labels {labels} in the dataset; skipped")
            continue
        ranked = rank_videos(query, results[query], query_dataset)
        ap[query] = average_precision([video for video, _ in ranked], relevant)
        hits[query] = {k: any(video in relevant for video, _ in ranked[:k]) for k in RECALL_AT}
        pooled += [(sim, query, video, video in relevant) for video, sim in ranked]
        n_relevant += len(relevant)
        curves.append(interpolated_pr(ranked, relevant, len(query_dataset)))
    if not ap:
        reasons = "; ".join(warnings) if warnings else "the annotations contain no query"
        raise ValueError(f"no query could be evaluated: {reasons}")
    pr_curve = np.mean(curves, axis=0)
    pr_curve.setflags(write=False)  # the result is frozen; keep its curve from being edited too
    return EvaluationResult(
        map=float(np.mean(list(ap.values()))),
        ap=ap,
        pr_curve=pr_curve,
        n_queries=len(ap),
        micro_ap=micro_average_precision(pooled, n_relevant),
        hits=hits,
        warnings=warnings,
    )


def restrict_relevant(
    annotations: Mapping[str, Mapping[str, Sequence[str]]],
    keep: Callable[[str, str], bool],
    relevant_labels: Sequence[str],
) -> dict[str, dict[str, list[str]]]:
    """Annotations where a query's relevant videos are only those with ``keep(query, video)``; its other
    relevant videos move to JUNK, so evaluated with JUNK ignored they leave the ranking and neither help
    nor hurt (FIVR-style per-category AP: one kind of positive at a time, the others not negatives).
    A query left with no relevant video is skipped by :func:`evaluate`."""
    labels = _check_labels(relevant_labels)
    out: dict[str, dict[str, list[str]]] = {}
    for query, query_labels in annotations.items():
        moved = [v for label in labels for v in query_labels.get(label, ()) if not keep(query, v)]
        gone = set(moved)
        out[query] = {label: [v for v in videos if v not in gone] for label, videos in query_labels.items()}
        out[query][JUNK] = [*query_labels.get(JUNK, ()), *moved]
    return out


def speed_factor_key(factor: float) -> str:
    """The metrics-file key of one speed factor's mAP: ``x0.5`` for the copies played at half speed."""
    return f"x{factor:g}"


def speed_factor_results(
    annotations: Mapping[str, Mapping[str, Sequence[str]]],
    results: Mapping[str, Mapping[str, float]],
    relevant_labels: Sequence[str],
    dataset_ids: Iterable[str],
    ignore_labels: Sequence[str] = (),
) -> dict[float, EvaluationResult]:
    """Evaluation at each speed factor of a speed set (the paper's Section V-C): a query's only relevant
    video is its own copy at that factor (``<query>_x<factor>``, see :func:`restrict_relevant`), so with
    one positive per query the factor's mAP is a mean reciprocal rank. Empty for a set without copies."""
    labels = _check_labels(relevant_labels)
    dataset = set(dataset_ids)
    factors = set()
    for query, query_labels in annotations.items():
        for video in _relevant_set(query_labels, labels, dataset):
            copy = speed_copy_of(video)
            if copy is not None and copy[0] == query:
                factors.add(copy[1])
    ignore = [*ignore_labels, *([JUNK] if JUNK not in ignore_labels else [])]
    return {
        factor: evaluate(
            restrict_relevant(annotations, lambda q, v, f=factor: v == speed_copy_id(q, f), labels),
            results,
            labels,
            dataset,
            ignore,
        )
        for factor in sorted(factors)
    }


def query_ap_path(results_path: PathLike) -> Path:
    """The per-query file beside a results file: ``<dir>/<set>.json`` -> ``<dir>/<set>.ap.json``."""
    results_path = Path(results_path)
    return results_path.with_name(results_path.stem + QUERY_AP_SUFFIX)


def read_query_ap(path: PathLike) -> dict[str, float]:
    """Per-query AP ``{query: AP}`` of a file written by :func:`evaluate_files` (empty for a run
    recorded as not available)."""
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    queries = record.get("queries") if isinstance(record, Mapping) else None
    if not isinstance(queries, Mapping):
        raise FormatError(path, "expected an object with a 'queries' object")
    return {str(query): float(values["ap"]) for query, values in queries.items()}


def _query_record(result: EvaluationResult) -> dict[str, dict[str, Any]]:
    return {
        query: {"ap": float(value), **{f"hit@{k}": result.hits[query][k] for k in RECALL_AT}}
        for query, value in result.ap.items()
    }


def write_unavailable_metrics(
    metrics_path: PathLike,
    pr_path: PathLike,
    note: str,
    relevant_labels: Sequence[str],
    ignore_labels: Sequence[str] = (),
    ap_path: PathLike | None = None,
) -> None:
    """Metrics of a run that could not be made: no mAP (never a zero that reads as a score), no PR, and
    (at ``ap_path``) no per-query values but the reason. The reason stays out of the metrics file, whose
    values DVC lists in one table (a string column would widen every row); the results' ``.timing.json``
    holds it too (:func:`ausil_lib.core.formats.read_unavailable`)."""
    atomic_write_json(
        metrics_path,
        {
            "mAP": None,
            "n": 0,
            "relevant_labels": list(relevant_labels),
            "ignore_labels": list(ignore_labels),
        },
    )
    atomic_write_json(pr_path, [])
    if ap_path is not None:
        atomic_write_json(ap_path, {**_per_query_file(None, {}, relevant_labels, ignore_labels), "note": note})


def _per_query_file(
    result: EvaluationResult | None,
    factors: Mapping[float, EvaluationResult],
    relevant_labels: Sequence[str],
    ignore_labels: Sequence[str],
) -> dict[str, Any]:
    """The per-query file's record; ``result`` None for a run that was not made."""
    return {
        "relevant_labels": list(relevant_labels),
        "ignore_labels": list(ignore_labels),
        "queries": {} if result is None else _query_record(result),
        "speed_factors": {f"{factor:g}": {**r.summary(), "queries": _query_record(r)} for factor, r in factors.items()},
        "warnings": [] if result is None else list(result.warnings),
    }


def evaluate_files(
    results_path: PathLike,
    annotations_path: PathLike,
    dataset_ids_path: PathLike,
    relevant_labels: Sequence[str],
    metrics_path: PathLike | None = None,
    pr_path: PathLike | None = None,
    ignore_labels: Sequence[str] = (),
) -> EvaluationResult:
    """Evaluate stored results and optionally write the metrics, per-query and PR-curve JSON files.

    The metrics file holds summaries only, the numbers ``dvc metrics show`` lists: mAP, n (queries),
    R@k (recall@k), uAP, ``x<factor>`` (the mAP of the copies at that speed) for each speed factor of a
    speed set, and the labels (lists, which DVC does not show). With it, the per-query file
    :func:`query_ap_path` of the results is written:
    ``{"queries": {q: {"ap", "hit@k"}}, "speed_factors": {"<factor>": {summary, "queries"}},
    "relevant_labels", "ignore_labels", "warnings"}``. The PR file is a list of
    ``{"recall": r, "precision": p}`` rows, the shape DVC plots read.
    """
    labels = _check_labels(relevant_labels)
    annotations, results = read_annotations(annotations_path), read_results(results_path)
    dataset = read_ids(dataset_ids_path)
    result = evaluate(annotations, results, labels, dataset, ignore_labels)
    if metrics_path is not None:
        factors = speed_factor_results(annotations, results, labels, dataset, ignore_labels)
        atomic_write_json(
            metrics_path,
            metric_values(
                {
                    **result.summary(),
                    **{speed_factor_key(factor): float(r.map) for factor, r in factors.items()},
                    "relevant_labels": labels,
                    "ignore_labels": list(ignore_labels),
                }
            ),
        )
        atomic_write_json(query_ap_path(results_path), _per_query_file(result, factors, labels, ignore_labels))
    if pr_path is not None:
        rows = [
            {"recall": float(level), "precision": float(value)}
            for level, value in zip(RECALL_LEVELS, result.pr_curve, strict=True)
        ]
        atomic_write_json(pr_path, rows)
    return result
