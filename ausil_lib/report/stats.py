"""The report's intervals from the committed per-query AP files (the bootstrap: :mod:`ausil_lib.core.bootstrap`).

Per-query AP is read by :func:`load_ap` only, so moving it to another file changes one function.
"""

from __future__ import annotations

from pathlib import Path

from ausil_lib.core.bootstrap import (
    LEVEL,
    N_RESAMPLES,
    SEED,
    Interval,
    bootstrap_map,
    bootstrap_pooled,
    paired_difference,
)
from ausil_lib.core.formats import PathLike
from ausil_lib.retrieval.evaluation import query_ap_path, read_query_ap

__all__ = [
    "LEVEL",
    "N_RESAMPLES",
    "SEED",
    "Interval",
    "bootstrap_map",
    "bootstrap_pooled",
    "load_ap",
    "map_interval",
    "paired_difference",
]


def load_ap(root: PathLike, run: str, set_name: str) -> dict[str, float] | None:
    """Per-query AP of a run on a set (``results/<run>/<set>.ap.json``, written beside the results by
    the evaluation); None when the run was not made or recorded no AP (e.g. the released model, not
    fetched)."""
    path = query_ap_path(Path(root, "results", run, f"{set_name}.json"))
    if not path.is_file():
        return None
    return read_query_ap(path) or None


def map_interval(root: PathLike, run: str, set_name: str) -> Interval:
    """:func:`bootstrap_map` of a run's committed per-query AP (NaN interval when not run)."""
    return bootstrap_map(load_ap(root, run, set_name))
