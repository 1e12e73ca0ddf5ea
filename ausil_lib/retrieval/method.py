"""What every retrieval method is to the runner, and the index loop they all share.

Kept apart from runner.py (which holds AuSiL's scoring, and so imports its model and torch) so that
the baselines can implement the interface without importing AuSiL.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from tqdm import tqdm

from ..audio.decode import AudioError
from ..core.parallel import ordered_map


class Method(Protocol):
    """A retrieval method as the runner sees it."""

    name: str
    label: str  # what produced the numbers (method, backbone, variant, parameters)

    def index(self, database: Mapping[str, str], progress: bool = True) -> dict[str, str]:
        """Prepare every database video; return {video id: reason} for those that failed."""

    def query(self, query_id: str, path: str) -> dict[str, float]:
        """Similarity of one query to every indexed video."""


def index_videos(
    name: str,
    database: Mapping[str, str],
    add: Callable[..., str | None],
    progress: bool = True,
    prepare: Callable[[tuple[str, str]], Any] | None = None,
    workers: int = 1,
) -> dict[str, str]:
    """Call `add(video id, path)` for every database video, in order; return {video id: reason} for the
    videos left out: those that cannot be decoded (AudioError) and those `add` refuses by returning a
    reason. One loop for every method, so a bad video is reported, not fatal, whichever method runs.

    With `prepare` (a picklable function of (video id, path): the per-file work, such as a fingerprint),
    it runs in `workers` processes and `add(video id, path, prepared)` gets its result, still in order.
    """
    failures: dict[str, str] = {}
    items = list(database.items())
    videos = tqdm(items, desc=f"{name} index", unit="video", disable=not progress, file=sys.stderr)
    prepared = ordered_map(prepare, items, workers) if prepare is not None else None
    try:
        for vid, path in videos:
            try:
                reason = add(vid, path) if prepared is None else add(vid, path, next(prepared)())
            except AudioError as exc:
                reason = exc.reason
            if reason is not None:
                failures[vid] = reason
    finally:
        if prepared is not None:
            prepared.close()  # stops the worker processes, also when `add` raised
    return failures
