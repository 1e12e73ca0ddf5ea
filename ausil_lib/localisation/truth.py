"""True segment pairs: the embedded corpus's from its construction log, VCDB's from its annotation.

A query is piece [a, b) of recording R (source seconds). A database clip is its content pieces played
one after another, each at its `speed` (a speed copy plays every piece `speed` times faster). Every
content piece of R that shares source time with [a, b) is one true pair: query time = source - a,
video time = where the piece starts in the clip + (source - piece start) / speed. Pairs the corpus
labels DA (shared >= min_shared_s) are the ones listed.

VCDB annotates copied segment pairs directly (video a from..to, video b from..to; see
datasets/real/loaders.py): each is a true pair both ways round, query a in video b and query b in video a.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Mapping, Sequence

from ..core.formats import atomic_write_json
from ..core.labels import DA
from .segments import Located, Segment


def clip_truth(query: Mapping[str, Any], clip: Mapping[str, Any]) -> list[Segment]:
    """The true segments of `clip` for `query` (log entries of the two clips)."""
    q = query["pieces"][0]
    a, b = float(q["src_start"]), float(q["src_end"])
    out, at = [], 0.0
    for p in clip["pieces"]:
        if p["role"] != "content":
            continue
        start, end, speed = float(p["src_start"]), float(p["src_end"]), float(p["speed"])
        lo, hi = max(start, a), min(end, b)
        if p["rec"] == q["rec"] and hi > lo:
            out.append(Segment(lo - a, hi - a, at + (lo - start) / speed, at + (hi - start) / speed, 1.0, speed))
        at += (end - start) / speed
    return out


def corpus_truth(log_path: str | os.PathLike[str], annotations: Mapping[str, Mapping[str, Iterable[str]]]) -> Located:
    """{query: {video: true segments}} for every DA pair of a benchmark's annotation."""
    log = json.loads(open(log_path, encoding="utf-8").read())
    clips = {c["clip_id"]: c for c in log["clips"]}
    return {
        q: {v: clip_truth(clips[q], clips[v]) for v in labels.get(DA, ())}
        for q, labels in annotations.items()
        if q in clips
    }


SpanPair = tuple[str, str, Sequence[float], Sequence[float]]  # (a, b, (a_start, a_end), (b_start, b_end))


def span_pair_truth(pairs: Iterable[SpanPair]) -> Located:
    """{query: {video: true segments}} from annotated segment pairs, each taken both ways round.

    speed = query duration / video duration of the pair (as `ausil locate` reports it); a span of zero
    length (VCDB marks a few single instants) gets speed 1. A video paired with itself is left out: a
    query is never ranked against itself."""
    out: Located = {}
    for a, b, (a0, a1), (b0, b1) in pairs:
        if a == b:
            continue
        a0, a1, b0, b1 = float(a0), float(a1), float(b0), float(b1)
        for q, v, (q0, q1), (v0, v1) in ((a, b, (a0, a1), (b0, b1)), (b, a, (b0, b1), (a0, a1))):
            speed = (q1 - q0) / (v1 - v0) if q1 > q0 and v1 > v0 else 1.0
            out.setdefault(q, {}).setdefault(v, []).append(Segment(q0, q1, v0, v1, 1.0, speed))
    return out


def add_truth_to_example(path: str | os.PathLike[str], truth: Located) -> None:
    """Fill in the true segments of the example map's pair (`ausil locate --example`) for the figure."""
    example = json.loads(open(path, encoding="utf-8").read())
    if example:
        example["true"] = [s.to_dict() for s in truth.get(example["query"], {}).get(example["video"], [])]
        atomic_write_json(path, example)
