"""One interface for every method: index a database, score each query against all of it.

`run_similarity` writes the reference results JSON {query: {video: similarity}}, a failure report
(videos that could not be used, with the reason; the run goes on without them) and the time spent
indexing and querying. Finished queries are kept in a partial file, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..audio.decode import AudioError
from ..core.formats import atomic_write_json, atomic_write_text, write_results
from ..core.numerics import apply_torch_settings, numerics_settings
from ..core.provenance import code_digest, package_modules
from ..features.extraction import Extractor, feature_path, is_current, load_features
from ..models.ausil import AuSiL, repeat_to
from ..models.backbone import state_digest
from .method import Method, index_videos

apply_torch_settings()  # torch's threads and cuDNN settings, before any tensor work (core/numerics.py)


def resume_key(method: Method, database: Mapping[str, str]) -> dict[str, Any]:
    """What a partial file must match to be resumed: the method (its label, and the weights of its network
    where it has one), the database, and the code, so that an edit or a retrained model starts afresh."""
    return {
        "method": method.label,
        "weights": getattr(method, "weights", None),
        "database": sorted(database),
        "code": code_digest(package_modules(), ("torch", "numpy")),
    }


def run_similarity(
    method: Method,
    queries: Mapping[str, str],
    database: Mapping[str, str],
    output: str | os.PathLike[str],
    progress: bool = True,
) -> dict[str, Any]:
    """Score all queries; write results, `.failures.tsv` and `.timing.json` beside `output`."""
    output = Path(output)
    partial = output.with_name(output.name + ".partial")
    key = resume_key(method, database)
    done: dict[str, dict[str, float]] = {}
    if partial.is_file():
        saved = json.loads(partial.read_text(encoding="utf-8"))
        if {k: saved.get(k) for k in key} == key:
            done = saved["results"]
    start = time.perf_counter()
    failures = method.index(database, progress=progress)
    index_s = time.perf_counter() - start
    query_s = 0.0
    todo = [q for q in queries if q not in done]
    for qid in tqdm(todo, desc=f"{method.name} queries", unit="query", disable=not progress, file=sys.stderr):
        t0 = time.perf_counter()
        try:
            done[qid] = method.query(qid, queries[qid])
        except AudioError as exc:
            failures[qid] = exc.reason
            done[qid] = {}
        query_s += time.perf_counter() - t0
        atomic_write_json(partial, {**key, "results": done})
    write_results(output, {q: done[q] for q in queries if q in done})
    write_failure_report(output, failures)
    pairs = sum(len(r) for r in done.values())
    timing = {
        "method": method.name,
        "label": method.label,
        "queries": len(queries),
        "database": len(database),
        "failed": len(failures),
        "index_s": round(index_s, 3),
        "query_s": round(query_s, 3),
        "queries_timed": len(todo),
        "pairs": pairs,
        "ms_per_pair": round(1000 * query_s / max(1, sum(len(done[q]) for q in todo)), 4),
        **getattr(method, "timings", {}),
        "numerics": numerics_settings(),
    }
    atomic_write_json(output.with_name(output.stem + ".timing.json"), timing)
    partial.unlink(missing_ok=True)
    return timing


def write_failure_report(results_path: Path, failures: Mapping[str, str]) -> None:
    """`<results>.failures.tsv` beside a results file: the videos left out of it, and why."""
    lines = ["video_id\treason"] + [f"{v}\t{r}".replace("\n", " ") for v, r in sorted(failures.items())]
    atomic_write_text(results_path.with_name(results_path.stem + ".failures.tsv"), "\n".join(lines) + "\n")


class AusilMethod:
    """AuSiL (or one of its ablation variants) over stored segment descriptors."""

    name = "ausil"

    def __init__(
        self,
        model: AuSiL,
        extractor: Extractor,
        features_dir: str | os.PathLike[str],
        device: torch.device | str = "cpu",
        label: str = "",
    ) -> None:
        self.model = model.to(device).eval()
        self.extractor, self.features_dir, self.device = extractor, Path(features_dir), torch.device(device)
        self.label = label or f"ausil {model.variant}; backbone {extractor.backbone.label}"
        self.weights = state_digest(model.state_dict())  # the label names the model file, not its contents
        self.db: dict[str, torch.Tensor] = {}
        self.timings: dict[str, float] = {}

    def descriptors(self, vid: str, path: str) -> np.ndarray:
        """Stored descriptors, extracted now (and stored) when missing or made by another backbone."""
        fpath = feature_path(self.features_dir, vid)
        if is_current(fpath, self.extractor.signature):
            return load_features(fpath).descriptors
        return self.extractor.extract_to(vid, path, self.features_dir)

    @torch.no_grad()
    def embed(self, desc: np.ndarray) -> torch.Tensor:
        return self.model.embed(torch.from_numpy(desc).to(self.device))

    def index(self, database: Mapping[str, str], progress: bool = True) -> dict[str, str]:
        return index_videos(self.name, database, self._add, progress)

    def _add(self, vid: str, path: str) -> None:
        self.db[vid] = self.embed(self.descriptors(vid, path))

    @torch.no_grad()
    def query(self, query_id: str, path: str) -> dict[str, float]:
        q = self.embed(self.descriptors(query_id, path))
        return {vid: float(self.model.similarity(q, emb)) for vid, emb in self.db.items()}


def ausil_scores(
    model: AuSiL,
    queries: Mapping[str, np.ndarray | torch.Tensor],
    database: Mapping[str, np.ndarray | torch.Tensor],
    device: torch.device | str = "cpu",
    whitened: bool = False,
) -> dict[str, dict[str, float]]:
    """All query-database similarities from descriptors in memory (validation during training). With
    `whitened`, the inputs are already `model.whiten`ed (training whitens its validation videos once)."""
    model = model.eval()
    embed = model.attend if whitened else model.embed
    with torch.no_grad():
        db = {v: embed(torch.as_tensor(d).to(device)) for v, d in database.items()}
        out = {}
        for qid, desc in queries.items():
            q = embed(torch.as_tensor(desc).to(device))
            out[qid] = {v: float(model.similarity(q, emb)) for v, emb in db.items()}
    return out


class DescriptorSource(Protocol):
    """Read access to stored descriptors (a FeatureStore, or a directory of per-video files)."""

    def __contains__(self, video_id: object) -> bool: ...

    def n_segments(self, video_id: str) -> int: ...

    def get(self, video_id: str) -> np.ndarray: ...


def _repeated_length(n: int, min_segments: int) -> int:
    """Rows after `repeat_to`: the bucket key under which candidates batch exactly."""
    while n < min_segments:
        n *= 2
    return n


@torch.no_grad()
def score_stored(
    model: AuSiL,
    source: DescriptorSource,
    query_ids: Sequence[str],
    database_ids: Sequence[str],
    device: torch.device | str = "cpu",
    batch_bytes: int = 1 << 30,
    progress: bool = True,
) -> tuple[dict[str, dict[str, float]], dict[str, str], dict[str, Any]]:
    """All queries against the whole database, reading the database once, in exact length buckets.

    Candidates are grouped by their length after repetition and scored in batches of up to
    `batch_bytes` of embedded descriptors with `AuSiL.similarity_many`, every query per batch, so a
    collection of hundreds of thousands of videos streams through the GPU once. Videos without stored
    descriptors are returned as failures (id -> reason) and left out of every ranking.
    Returns (results, failures, timing).
    """
    device = torch.device(device)
    model = model.to(device).eval()
    missing = "no stored descriptors (extraction failed or was not run)"
    failures = {v: missing for v in dict.fromkeys([*query_ids, *database_ids]) if v not in source}
    t0 = time.perf_counter()
    queries = {
        q: model.embed(torch.from_numpy(np.asarray(source.get(q))).to(device)) for q in query_ids if q not in failures
    }
    buckets: dict[int, list[str]] = {}
    for vid in database_ids:
        if vid not in failures:
            buckets.setdefault(_repeated_length(source.n_segments(vid), model.min_segments), []).append(vid)
    results: dict[str, dict[str, float]] = {q: {} for q in queries}
    row_bytes = model.pca_mean.numel() * 4
    bar = tqdm(
        total=sum(len(v) for v in buckets.values()),
        desc="ausil similarity",
        unit="video",
        disable=not progress,
        file=sys.stderr,
    )
    for length, ids in sorted(buckets.items()):
        step = max(1, batch_bytes // (length * row_bytes))
        for start in range(0, len(ids), step):
            chunk = ids[start : start + step]
            rows = [repeat_to(torch.from_numpy(np.asarray(source.get(v))), model.min_segments) for v in chunk]
            cands = model.embed(torch.stack(rows).to(device))
            for q, emb in queries.items():
                sims = model.similarity_many(emb, cands).tolist()
                results[q].update(zip(chunk, sims))
            bar.update(len(chunk))
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - t0
    pairs = sum(len(r) for r in results.values())
    timing = {
        "queries": len(queries),
        "database": len(database_ids),
        "failed": len(failures),
        "pairs": pairs,
        "query_s": round(elapsed, 3),
        "ms_per_pair": round(1000 * elapsed / max(1, pairs), 4),
        "device": str(device),
        "buckets": len(buckets),
    }
    return results, failures, timing
