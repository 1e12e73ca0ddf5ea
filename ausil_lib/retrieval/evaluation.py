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
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve

from ausil_lib.core.formats import (
    PathLike,
    atomic_write_json,
    read_annotations,
    read_ids,
    read_results,
)

__all__ = [
    "RECALL_LEVELS",
    "EvaluationResult",
    "average_precision",
    "evaluate",
    "evaluate_files",
    "interpolated_pr",
    "rank_videos",
]

_RECALL_STEP = 0.05
_N_RECALL_STEPS = 20

# Computed as i * 0.05 exactly like the reference, not as i / 20: for i in {3, 6, 7, 12, 14, 17,
# 19} the two differ in the last bit (e.g. 3 * 0.05 = 0.15000000000000002 > 3 / 20), so a point
# whose recall is exactly i / 20 does not count for that level. Kept for comparable curves.
RECALL_LEVELS: np.ndarray = np.arange(_N_RECALL_STEPS + 1) * _RECALL_STEP
RECALL_LEVELS.setflags(write=False)


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
    """Outcome of an evaluation: mAP, per-query AP, mean PR curve and why queries were skipped."""

    map: float
    ap: dict[str, float]
    pr_curve: np.ndarray
    n_queries: int
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (plain Python floats and lists)."""
        return {
            "mAP": float(self.map),
            "n_queries": self.n_queries,
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
        warnings=warnings,
    )


def write_unavailable_metrics(
    metrics_path: PathLike,
    pr_path: PathLike,
    note: str,
    relevant_labels: Sequence[str],
    ignore_labels: Sequence[str] = (),
) -> None:
    """Metrics of a run that could not be made: no mAP (never a zero that reads as a score), the reason, no PR."""
    atomic_write_json(
        metrics_path,
        {
            "available": False,
            "note": note,
            "mAP": None,
            "n_queries": 0,
            "relevant_labels": list(relevant_labels),
            "ignore_labels": list(ignore_labels),
        },
    )
    atomic_write_json(pr_path, [])


def evaluate_files(
    results_path: PathLike,
    annotations_path: PathLike,
    dataset_ids_path: PathLike,
    relevant_labels: Sequence[str],
    metrics_path: PathLike | None = None,
    pr_path: PathLike | None = None,
    ignore_labels: Sequence[str] = (),
) -> EvaluationResult:
    """Evaluate stored results and optionally write the metrics and PR-curve JSON files.

    The metrics file holds mAP, n_queries, relevant_labels, per-query AP and warnings; the PR
    file is a list of ``{"recall": r, "precision": p}`` rows, the shape DVC plots read.
    """
    labels = _check_labels(relevant_labels)
    result = evaluate(
        read_annotations(annotations_path),
        read_results(results_path),
        labels,
        read_ids(dataset_ids_path),
        ignore_labels,
    )
    if metrics_path is not None:
        summary = result.to_dict()
        atomic_write_json(
            metrics_path,
            {
                "mAP": summary["mAP"],
                "n_queries": summary["n_queries"],
                "relevant_labels": labels,
                "ignore_labels": list(ignore_labels),
                "ap": summary["ap"],
                "warnings": summary["warnings"],
            },
        )
    if pr_path is not None:
        rows = [
            {"recall": float(level), "precision": float(value)}
            for level, value in zip(RECALL_LEVELS, result.pr_curve, strict=True)
        ]
        atomic_write_json(pr_path, rows)
    return result
