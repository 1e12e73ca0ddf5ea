"""Seeded percentile bootstrap over queries: the one definition of every interval the project prints.

A benchmark of a few dozen queries gives mAP values whose gaps may be noise. The evaluation stages
write mAP's interval into the metrics files and the report puts one beside every number it shows; an
ordering of two methods is only stated when the interval of their paired difference (the same
resampled queries for both) excludes 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

__all__ = [
    "LEVEL",
    "N_RESAMPLES",
    "SEED",
    "Interval",
    "bootstrap_map",
    "bootstrap_pooled",
    "paired_difference",
]

SEED = 0  # fixed, so a re-render of the same results shows the same intervals
N_RESAMPLES = 10_000
LEVEL = 0.95
_CHUNK = 1_000  # resamples drawn at once, so thousands of queries need no huge index array


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval over ``n`` queries (NaN when there are none)."""

    estimate: float
    low: float
    high: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        """True when the interval lies wholly above or below 0 (an ordering the data support)."""
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        if math.isnan(self.estimate):
            return "n/a"
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


_EMPTY = Interval(math.nan, math.nan, math.nan, 0)


def _bootstrap_mean(values: np.ndarray, seed: int, n_resamples: int) -> Interval:
    """Mean of ``values`` and the percentile interval of the means of queries drawn with replacement."""
    n = len(values)
    if n == 0:
        return _EMPTY
    rng = np.random.default_rng(seed)
    means = np.concatenate(
        [
            values[rng.integers(0, n, size=(min(_CHUNK, n_resamples - start), n))].mean(axis=1)
            for start in range(0, n_resamples, _CHUNK)
        ]
    )
    alpha = (1 - LEVEL) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return Interval(float(values.mean()), float(low), float(high), n)


def bootstrap_pooled(
    counts: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray],
    seed: int = SEED,
    n_resamples: int = N_RESAMPLES,
) -> Interval:
    """A statistic of pooled per-query counts (e.g. precision = sum of correct / sum of detections) with its
    percentile bootstrap interval over queries.

    ``counts`` holds one row per query and one column per count; ``statistic`` maps an array of column
    sums, shape (m, columns), to m values. The queries are drawn with replacement as for mAP (same seed,
    resamples and level), and the statistic is taken of each draw's summed counts. A statistic may be
    NaN where it is undefined (a speed error without hits): such draws are left out of the percentiles.
    """
    counts = np.asarray(counts, dtype=float)
    n = len(counts)
    if n == 0:
        return _EMPTY
    rng = np.random.default_rng(seed)
    sums = np.concatenate(
        [
            counts[rng.integers(0, n, size=(min(_CHUNK, n_resamples - start), n))].sum(axis=1)
            for start in range(0, n_resamples, _CHUNK)
        ]
    )
    alpha = (1 - LEVEL) / 2
    values = statistic(sums)
    values = values[~np.isnan(values)]  # a draw where the statistic is undefined (e.g. no hits) is left out
    low, high = np.quantile(values, [alpha, 1 - alpha]) if values.size else (math.nan, math.nan)
    return Interval(float(statistic(counts.sum(axis=0)[None, :])[0]), float(low), float(high), n)


def bootstrap_map(ap: Mapping[str, float] | None, seed: int = SEED, n_resamples: int = N_RESAMPLES) -> Interval:
    """mAP (mean of the per-query APs) with its 95 % percentile bootstrap interval over queries."""
    if not ap:
        return _EMPTY
    return _bootstrap_mean(np.array([ap[q] for q in sorted(ap)], dtype=float), seed, n_resamples)


def paired_difference(
    a: Mapping[str, float] | None,
    b: Mapping[str, float] | None,
    seed: int = SEED,
    n_resamples: int = N_RESAMPLES,
) -> Interval:
    """mAP(a) - mAP(b) over the queries both have, with a bootstrap interval that resamples the same
    queries for both methods (so a per-query gap counts, not the spread of each mAP)."""
    common = sorted(set(a or {}) & set(b or {}))
    if not common:
        return _EMPTY
    assert a is not None and b is not None
    diffs = np.array([a[q] - b[q] for q in common], dtype=float)
    return _bootstrap_mean(diffs, seed, n_resamples)
