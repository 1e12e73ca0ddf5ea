"""Dejavu localisation: one segment per pair, at speed 1, from the aligned hashes' offset and time span.

Dejavu's retrieval (ausil_lib/baselines/dejavu.py) scores a video by its largest group of matched
hashes that share one offset difference (video offset minus query offset). The same matching is done
here in Python, with no database: every query hash that equals a video hash gives one difference per
pair of offsets, as Dejavu's `find_matches` returns them, and the largest group of equal differences
is the alignment (a tie goes to the smallest difference, as `DejavuIndex.query` and Dejavu's
`align_matches` pick it). The query offsets of that group's hashes mark the copy: their largest
cluster (offsets no more than segments.CLUSTER_GAP_S apart) spans the query interval, plus one FFT window, shifted by
the difference in the video. Dejavu has no model of speed (its hashes hold the frequencies and time
delta of two peaks, which a speed change alters), so a speed copy is located at speed 1 or not at all.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from functools import partial

import numpy as np

from ..audio.decode import AudioError
from ..baselines.dejavu import SAMPLE_RATE, best_alignment, file_hashes
from ..core.config import DejavuConfig, LocalisationConfig
from ..core.parallel import ordered_map
from .segments import Segment, largest_cluster

MIN_ALIGNED = 5  # fewer aligned hashes in the largest cluster are taken for chance (at least 2 make a span)

Hashes = Iterable[tuple[str, int]]


def offset_differences(query_hashes: Hashes, video_hashes: Hashes) -> list[tuple[int, int]]:
    """(video offset - query offset, query offset) for every pair of equal hashes, as Dejavu's
    `find_matches` pairs each stored (hash, offset) row with every query offset of that hash."""
    at: defaultdict[str, list[int]] = defaultdict(list)
    for digest, offset in video_hashes:
        at[digest.upper()].append(int(offset))
    return [(v - int(q), int(q)) for digest, q in query_hashes for v in at.get(digest.upper(), ())]


def dejavu_segment(
    query_hashes: Hashes,
    video_hashes: Hashes,
    hop_s: float,
    cfg: LocalisationConfig,
    window_s: float = DejavuConfig().window_size / SAMPLE_RATE,
) -> list[Segment]:
    """The copy the best offset difference points at: [] with fewer than MIN_ALIGNED aligned hashes in
    its largest cluster or a query span shorter than min_duration_s.

    `hop_s` is Dejavu's frame step and `window_s` its FFT window, in seconds (a frame's offset is where
    its window starts, so the last aligned frame ends one window later; default: the default config's).
    Score: the cluster's aligned-hash count over the number of query hashes (the fraction of the query's
    fingerprint that lines up, in [0, 1]).
    """
    query_hashes = list(query_hashes)
    matches = offset_differences(query_hashes, video_hashes)
    if not matches:
        return []
    _, best = best_alignment(Counter(d for d, _ in matches))
    aligned = np.sort(np.array([q for d, q in matches if d == best], dtype=np.int64))
    core = largest_cluster(aligned, hop_s)
    if core.size < MIN_ALIGNED:
        return []
    q0, q1 = float(core[0]) * hop_s, float(core[-1]) * hop_s + window_s
    if q1 - q0 < cfg.min_duration_s:
        return []
    shift = float(best) * hop_s
    return [Segment(q0, q1, max(0.0, q0 + shift), q1 + shift, score=float(core.size) / len(query_hashes), speed=1.0)]


class DejavuLocator:
    """Dejavu's hashes of each file (decoded and fingerprinted once per id, kept in memory; `prefetch`
    makes them in worker processes) -> one segment per pair; no PostgreSQL is started."""

    def __init__(
        self,
        config: DejavuConfig,
        cfg: LocalisationConfig,
        ffmpeg: str | None = None,
        decode_timeout_s: float = 600.0,
    ) -> None:
        self.config, self.cfg = config, cfg
        self._ffmpeg, self._decode_timeout_s = ffmpeg, decode_timeout_s
        self.hop_s = config.hop_samples / SAMPLE_RATE
        self.window_s = config.window_size / SAMPLE_RATE
        self._cache: dict[str, set[tuple[str, int]]] = {}

    def hashes(self, vid: str, path: str | os.PathLike[str]) -> set[tuple[str, int]]:
        if vid not in self._cache:
            self._cache[vid] = file_hashes(
                (vid, path), self.config, self._ffmpeg, self._decode_timeout_s, content=False
            ).hashes
        return self._cache[vid]

    def prefetch(self, files: Mapping[str, str], workers: int = 1) -> None:
        """Fingerprint these (id -> path) files ahead, in `workers` processes. A file that cannot be
        decoded is skipped here; `hashes` raises its AudioError when a pair needs it."""
        todo = [(vid, path) for vid, path in files.items() if vid not in self._cache]
        prepare = partial(
            file_hashes, config=self.config, ffmpeg=self._ffmpeg, timeout_s=self._decode_timeout_s, content=False
        )
        results = ordered_map(prepare, todo, workers)
        try:
            for (vid, _), result in zip(todo, results):
                try:
                    self._cache[vid] = result().hashes
                except AudioError:
                    continue
        finally:
            results.close()

    def segments(self, qid: str, qpath: str, vid: str, vpath: str) -> list[Segment]:
        return dejavu_segment(self.hashes(qid, qpath), self.hashes(vid, vpath), self.hop_s, self.cfg, self.window_s)
