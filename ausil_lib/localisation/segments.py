"""A located (or true) duplicate segment pair, and the segments JSON every method writes.

Format: `{query: {video: [{"query_start", "query_end", "video_start", "video_end", "score", "speed"}]}}`,
times in seconds, `speed` = query duration / video duration of the matched part (1.5 when the video
plays the query 1.5x faster), segments of a pair best first.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..core.formats import FormatError, atomic_write_json

FIELDS = ("query_start", "query_end", "video_start", "video_end", "score", "speed")
ROUND = 3  # ms: far finer than any segment step
CLUSTER_GAP_S = 2.0  # matching frames further apart than this belong to separate copies


@dataclass(frozen=True)
class Segment:
    query_start: float
    query_end: float
    video_start: float
    video_end: float
    score: float = 1.0
    speed: float = 1.0

    @property
    def query_span(self) -> tuple[float, float]:
        return self.query_start, self.query_end

    @property
    def video_span(self) -> tuple[float, float]:
        return self.video_start, self.video_end

    def to_dict(self) -> dict[str, float]:
        return {k: round(float(v), ROUND) for k, v in asdict(self).items()}


Located = dict[str, dict[str, list[Segment]]]


def write_segments(path: str | os.PathLike[str], located: Mapping[str, Mapping[str, Sequence[Segment]]]) -> None:
    atomic_write_json(
        path, {q: {v: [s.to_dict() for s in segs] for v, segs in videos.items()} for q, videos in located.items()}
    )


def read_segments(path: str | os.PathLike[str]) -> Located:
    """Read a segments JSON; anything but the format above raises FormatError naming the file."""
    try:
        raw: Any = json.loads(open(path, encoding="utf-8").read())
        return {
            str(q): {str(v): [Segment(**{k: float(s[k]) for k in FIELDS}) for s in segs] for v, segs in videos.items()}
            for q, videos in raw.items()
        }
    except (OSError, json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"{path}: not a segments file ({type(exc).__name__}: {exc})") from exc


def largest_cluster(frames: np.ndarray, frame_s: float, gap_s: float = CLUSTER_GAP_S) -> np.ndarray:
    """The largest run of sorted frame indices with no gap over `gap_s` seconds (the earliest of equal
    sizes): the one copy that Spectro and Dejavu, which score a single offset per pair, report."""
    if frames.size == 0:
        return frames
    splits = np.flatnonzero(np.diff(frames) * frame_s > gap_s) + 1
    return max(np.split(frames, splits), key=len)
