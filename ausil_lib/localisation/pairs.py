"""Which query-video pairs are located, and locating them with any method's locator.

Method-neutral, so that a baseline's localisation stages do not import AuSiL's model (dvc.yaml deps
follow the imports).
"""

from __future__ import annotations

import sys
from typing import Callable, Iterable, Mapping

from tqdm import tqdm

from .segments import Located, Segment


def top_k_pairs(
    ranking: Mapping[str, Mapping[str, float]] | None, queries: Iterable[str], database: Iterable[str], k: int
) -> dict[str, list[str]]:
    """The videos each query is located in: its k best-ranked (every video without a ranking)."""
    db = list(database)
    if ranking is None:
        return {q: [v for v in db if v != q] for q in queries}
    allowed = set(db)
    out = {}
    for q in queries:
        scores = {v: s for v, s in ranking.get(q, {}).items() if v in allowed and v != q}
        out[q] = sorted(scores, key=lambda v: (-scores[v], v))[:k]
    return out


def locate_pairs(
    segments: Callable[[str, str, str, str], list[Segment]],
    queries: Mapping[str, str],
    database: Mapping[str, str],
    pairs: Mapping[str, list[str]],
    progress: bool = True,
) -> Located:
    """{query: {video: segments}} for every listed pair (pairs with no match get an empty list);
    `segments(query id, path, video id, path)` is a method's locator."""
    out: Located = {}
    for qid in tqdm(list(pairs), desc="locate", unit="query", disable=not progress, file=sys.stderr):
        out[qid] = {vid: segments(qid, queries[qid], vid, database[vid]) for vid in pairs[qid]}
    return out
