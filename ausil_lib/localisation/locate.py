"""Run AuSiL's localisation on query-video pairs: fine-step descriptors -> similarity maps -> segments.

The map is the cosine similarity of the model's embedded segment vectors after the pair's common
direction and scale are taken out (each dimension standardised over the pair's segments): raw MAC
descriptors share one dominant direction (cosines near 1 everywhere), which PCA whitening removes
only for a trained model. The similarity CNN's map is not used: its two poolings make it four
segments coarse, and localisation needs the segment step.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from ..core.config import LocalisationConfig
from ..core.formats import atomic_write_json
from ..features.extraction import Extractor, feature_path, is_current, load_features
from ..models.ausil import AuSiL
from .detection import MapGeometry, detect_segments
from .segments import Located, Segment

EPS = 1e-8


class AusilLocator:
    """Segment descriptors at the localisation step (stored in `features_dir`, extracted when missing)."""

    name = "ausil"

    def __init__(
        self,
        model: AuSiL,
        extractor: Extractor,
        features_dir: str | os.PathLike[str],
        cfg: LocalisationConfig,
        device: torch.device | str = "cpu",
    ) -> None:
        self.model, self.extractor, self.cfg = model.to(device).eval(), extractor, cfg
        self.features_dir, self.device = Path(features_dir), torch.device(device)
        fc = extractor.cfg
        self.step_s = fc.step_frames * fc.hop_length / fc.sample_rate
        self.window_s = fc.window_frames * fc.hop_length / fc.sample_rate
        self._cache: dict[str, tuple[np.ndarray, float]] = {}

    @torch.no_grad()
    def embedded(self, vid: str, path: str) -> tuple[np.ndarray, float]:
        """(segments, dims) embedded vectors of the segments that are at least half audio, and the duration."""
        if vid not in self._cache:
            fpath = feature_path(self.features_dir, vid)
            if not is_current(fpath, self.extractor.signature):
                self.extractor.extract_to(vid, path, self.features_dir)
            feats = load_features(fpath)
            duration = float(feats.meta["duration_s"])
            n = max(2, int(np.floor((duration - self.window_s / 2) / self.step_s)) + 1)
            emb = self.model.embed(torch.from_numpy(feats.descriptors[:n]).to(self.device)).cpu().numpy()
            self._cache[vid] = (emb.astype(np.float64), duration)
        return self._cache[vid]

    def similarity_map(self, q: np.ndarray, v: np.ndarray) -> np.ndarray:
        both = np.concatenate([q, v])
        mean, std = both.mean(axis=0), both.std(axis=0)
        std = std + EPS + 1e-3 * std.mean()  # a dimension constant over the pair carries nothing
        a, b = (q - mean) / std, (v - mean) / std
        a /= np.maximum(np.linalg.norm(a, axis=1, keepdims=True), EPS)
        b /= np.maximum(np.linalg.norm(b, axis=1, keepdims=True), EPS)
        return a @ b.T

    def locate(self, qid: str, qpath: str, vid: str, vpath: str) -> tuple[list[Segment], np.ndarray, MapGeometry]:
        q, q_s = self.embedded(qid, qpath)
        v, v_s = self.embedded(vid, vpath)
        sim = self.similarity_map(q, v)
        geo = MapGeometry(self.step_s, self.window_s, q_s, v_s)
        return detect_segments(sim, geo, self.cfg), sim, geo

    def segments(self, qid: str, qpath: str, vid: str, vpath: str) -> list[Segment]:
        return self.locate(qid, qpath, vid, vpath)[0]


def write_example(
    path: str | os.PathLike[str],
    locator: AusilLocator,
    located: Located,
    queries: Mapping[str, str],
    database: Mapping[str, str],
) -> None:
    """The similarity map of the best-scoring located pair, with its detections, for the report's figure."""
    best = max(
        ((s.score, q, v) for q, videos in located.items() for v, segs in videos.items() for s in segs),
        default=None,
    )
    if best is None:
        atomic_write_json(path, {})
        return
    _, q, v = best
    segs, sim, geo = locator.locate(q, queries[q], v, database[v])
    atomic_write_json(
        path,
        {
            "query": q,
            "video": v,
            "step_s": geo.step_s,
            "window_s": geo.window_s,
            "query_s": geo.query_s,
            "video_s": geo.video_s,
            "similarity": np.round(sim, 3).tolist(),
            "detected": [s.to_dict() for s in segs],
            "true": [],
        },
    )
