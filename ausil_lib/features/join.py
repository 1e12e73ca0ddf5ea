"""Two backbones' descriptors side by side, segment by segment.

Issue 13: the trained substitute is the best backbone measured on speed-changed queries and musicnn's
network (models/musicnn.py) the best on original ones; joined, each segment's vector is both halves,
each L2-normalised on its own so that each backbone weighs the same in a cosine similarity. The two
extractors cut the same windows but pad a video's end each its own way (the released padding adds up
to about 3 s), so their segment counts may differ by that much: the joined descriptor keeps the leading
segments both have, and a larger difference is refused by name.
"""

from __future__ import annotations

import math

import numpy as np

# the released segment padding (params features.segment_padding) appends up to 176 + 87 spectrogram
# rows, about 3.05 s, after a video: that many seconds of trailing windows one extractor may have more
MAX_PADDING_S = 3.05


def join_descriptors(first: np.ndarray, second: np.ndarray, video: str, step_ms: int) -> np.ndarray:
    """The segments both descriptors cover, each half L2-normalised."""
    if abs(len(first) - len(second)) > math.ceil(MAX_PADDING_S * 1000 / step_ms):
        raise ValueError(f"{video}: {len(first)} segments in the first backbone's file, {len(second)} in the second's")
    n = min(len(first), len(second))
    halves = [d[:n] / np.maximum(np.linalg.norm(d[:n], axis=1, keepdims=True), 1e-12) for d in (first, second)]
    return np.concatenate(halves, axis=1).astype(np.float32)
