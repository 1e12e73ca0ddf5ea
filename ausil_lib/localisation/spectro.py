"""Spectro Slides / Tiles localisation: one segment per pair, at speed 1, from the best offset.

The baseline labels every query fingerprint with its nearest reference fingerprint and votes for the
offset d* (ausil_lib/baselines/spectro.py). The query frames whose label agrees with d* (within the
reference stride) mark the copy: their largest cluster (frames no more than segments.CLUSTER_GAP_S apart) spans the
query interval, shifted by d* in the video. Spectro has no notion of speed, so a speed copy is located
at speed 1 or not at all.
"""

from __future__ import annotations

import numpy as np

from ..baselines.spectro import Fingerprints, SpectroMethod, nearest_labels, offset_votes
from ..core.config import LocalisationConfig
from .segments import Segment, largest_cluster


def spectro_segment(
    query: Fingerprints, ref: Fingerprints, method: SpectroMethod, cfg: LocalisationConfig
) -> list[Segment]:
    """The copy the best offset points at ([] without votes or when it is shorter than min_duration_s)."""
    sc = method.cfg
    labels = nearest_labels(query, ref, sc)
    if labels.query_frames.size == 0:
        return []
    votes = offset_votes(labels, len(query), len(ref), sc.tau)
    best = int(votes.argmax()) - (len(query) - 1)
    agree = np.sort(labels.query_frames[np.abs(labels.ref_frames - labels.query_frames - best) <= sc.ref_stride])
    if agree.size < 2:
        return []
    frame_s = sc.hop / sc.sample_rate
    core = largest_cluster(agree, frame_s)
    window_s = (sc.frames_per_fp - 1) * frame_s + sc.n_fft / sc.sample_rate
    q0, q1 = core[0] * frame_s, core[-1] * frame_s + window_s
    if q1 - q0 < cfg.min_duration_s:
        return []
    shift = best * frame_s
    return [Segment(q0, q1, max(0.0, q0 + shift), q1 + shift, score=float(len(core)) / max(1, query.n_nonempty))]


class SpectroLocator:
    """Spectro fingerprints (cached as the retrieval baseline caches them) -> one segment per pair."""

    def __init__(self, method: SpectroMethod, cfg: LocalisationConfig) -> None:
        self.method, self.cfg = method, cfg

    def segments(self, qid: str, qpath: str, vid: str, vpath: str) -> list[Segment]:
        q, v = self.method.fingerprints(qid, qpath), self.method.fingerprints(vid, vpath)
        return spectro_segment(q, v, self.method, self.cfg)
