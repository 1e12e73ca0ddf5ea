"""Duplicate segments from a segment-to-segment similarity map: diagonal bands whose slope is the speed.

Row i of the map is the query segment starting at i * step, column j the video segment starting at
j * step, both `window` long. A copy of query [a, b) at video [c, d) played `speed` times faster lights
a band from about (a, c) to (b, d) with slope dj/di = 1 / speed. Steps, repeated for each match:
  1. standardise the map by its own median and MAD (robust: most cells are not duplicates); cells more
     than VOTE_Z above it vote, by that excess, in a Hough transform over log-spaced slopes in the speed
     range, and the best line is taken (its voters are then spent, so the next round finds another);
  2. along the line, the z-scores smoothed over half a window are walked from their peak while they
     stay above half of it: a segment half inside the copy is where the half-height crossing lies, so
     the run's ends plus half a window are the copy's ends (a run reaching the map's edge reaches the
     clip's edge); the slope and offset are then refined on the run's own cells and the run walked again;
  3. a band counts when its mean z times sqrt(its length in windows) reaches `threshold_z` (cells a
     window apart are about independent); bands are taken strongest first, each unless it shares time
     on both axes with one taken before (then it is the same copy again).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.config import LocalisationConfig
from .segments import Segment

MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation
MIN_SCALE = 1e-6  # a constant map has no band
GAP_S = 1.0  # a run along the line may dip below half height this long (a quiet note) and go on
CANDIDATES_PER_SEGMENT = 4  # lines tried per segment asked for (max_segments)
VOTE_Z = 1.0  # cells this far above the typical cell vote for lines, by how much more
REFINE_SPAN = 0.25  # log-slope range searched around the Hough line (about +-28 %)
REFINE_STEPS = 41


@dataclass(frozen=True)
class MapGeometry:
    """Where the map's rows and columns lie in time."""

    step_s: float  # between segment starts
    window_s: float  # segment length
    query_s: float  # clip durations: ends are clipped to them
    video_s: float


def robust_z(sim: np.ndarray) -> np.ndarray:
    """(sim - median) / (1.4826 MAD): how far each cell stands above the map's typical cell."""
    med = float(np.median(sim))
    scale = max(MAD_TO_SIGMA * float(np.median(np.abs(sim - med))), MIN_SCALE)
    return (sim - med) / scale


def hough_line(ii: np.ndarray, jj: np.ndarray, w: np.ndarray, slopes: np.ndarray) -> tuple[float, float, float]:
    """(slope, intercept, votes) of the line j = intercept + slope * i that the weighted cells vote for most.

    Each slope's intercepts are binned one cell wide and summed over three neighbouring bins, so a band
    one or two cells wide votes as a whole."""
    best = (float(slopes[0]), 0.0, -np.inf)
    for s in slopes:
        c = jj - s * ii
        lo = np.floor(c.min())
        bins = np.bincount(np.round(c - lo).astype(int), weights=w)
        votes = np.convolve(bins, np.ones(3), mode="same")
        k = int(votes.argmax())
        if votes[k] > best[2]:
            near = np.abs(c - lo - k) <= 1.5
            best = (float(s), float(np.average(c[near], weights=w[near])), float(votes[k]))
    return best


def refine_line(
    z: np.ndarray, slope: float, intercept: float, first: float, last: float, cfg: LocalisationConfig
) -> tuple[float, float]:
    """The line through the run's middle whose mean z over the run's rows is highest: the Hough vote
    counts cells, so a wide or blotchy band can tilt it; the band's own cells decide the slope here."""
    rows = np.arange(int(np.ceil(first)), int(np.floor(last)) + 1)
    if rows.size < 3:
        return slope, intercept
    mid = 0.5 * (first + last)
    j_mid = intercept + slope * mid
    lo, hi = 1.0 / cfg.speed_max, 1.0 / cfg.speed_min
    # every (slope, offset) candidate at once, slope-major as the search order: the first best wins
    s = np.clip(slope * np.exp(np.linspace(-REFINE_SPAN, REFINE_SPAN, REFINE_STEPS)), lo, hi)[:, None]
    c = j_mid + np.arange(-2.0, 2.01, 0.25)[None, :] - s * mid
    s, c = np.broadcast_arrays(s, c)
    values = _sample(z, rows, c.reshape(-1, 1) + s.reshape(-1, 1) * rows)
    finite = np.isfinite(values)
    with np.errstate(invalid="ignore"):  # a candidate wholly off the map scores -inf, never NaN
        scores = np.where(finite, values, 0.0).sum(axis=1) / finite.sum(axis=1)
    scores[~finite.any(axis=1)] = -np.inf
    best = int(np.argmax(scores))
    if not scores[best] > -np.inf:
        return slope, intercept
    return float(s.flat[best]), float(c.flat[best])


def _along(z: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """z sampled on the line j = intercept + slope * i for every row i (linear in j; NaN off the map)."""
    rows = np.arange(z.shape[0])
    return _sample(z, rows, intercept + slope * rows)


def _sample(z: np.ndarray, rows: np.ndarray, j: np.ndarray) -> np.ndarray:
    """z at fractional columns j of `rows` (j's last axis runs along rows), linear in j; NaN off the map."""
    inside = (j >= 0) & (j <= z.shape[1] - 1)
    j0 = np.clip(np.floor(j).astype(int), 0, z.shape[1] - 1)
    j1 = np.minimum(j0 + 1, z.shape[1] - 1)
    f = np.clip(j - j0, 0.0, 1.0)
    out = (1 - f) * z[rows, j0] + f * z[rows, j1]
    return np.where(inside, out, np.nan)


def _run(values: np.ndarray, seed: int, level: float, gap: int) -> tuple[float, float]:
    """Fractional first and last row of the run around `seed` that stays >= level (gaps up to `gap`
    rows bridged); each end is moved to where the values cross `level` between two rows."""

    def walk(direction: int) -> float:
        last, i, misses = seed, seed, 0
        while 0 <= i + direction < values.size:
            i += direction
            if np.isfinite(values[i]) and values[i] >= level:
                last, misses = i, 0
            else:
                misses += 1
                if misses > gap:
                    break
        nxt = last + direction
        if 0 <= nxt < values.size and np.isfinite(values[nxt]) and values[last] > values[nxt]:
            return last + direction * (values[last] - level) / (values[last] - values[nxt])
        return float(last)

    return walk(-1), walk(1)


def _ends(
    first: float, last: float, slope: float, intercept: float, shape: tuple[int, int], geo: MapGeometry
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Rows first..last of the line -> (query span, video span) in seconds: half a window past each row
    start. A run that reaches the map's edge on one side reaches that clip's edge, and the other side is
    carried along the line by as much (the map cannot see past a clip's first or last window)."""
    speed = 1.0 / slope
    half = geo.window_s / 2
    q0, q1 = first * geo.step_s + half, last * geo.step_s + half
    v0, v1 = (intercept + slope * first) * geo.step_s + half, (intercept + slope * last) * geo.step_s + half
    if first <= 0 or intercept + slope * first <= 0:
        d = q0 if first <= 0 else v0 * speed  # query seconds from the run's start back to the edge hit
        q0, v0 = q0 - d, v0 - d / speed
    if last >= shape[0] - 1 or intercept + slope * last >= shape[1] - 1:
        d = geo.query_s - q1 if last >= shape[0] - 1 else (geo.video_s - v1) * speed
        q1, v1 = q1 + d, v1 + d / speed
    return (max(0.0, q0), min(geo.query_s, q1)), (max(0.0, v0), min(geo.video_s, v1))


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def _smooth(values: np.ndarray, cells: int) -> np.ndarray:
    """Moving average over `cells` rows, NaN (off the map) left out of each mean."""
    ok = np.isfinite(values)
    kernel = np.ones(max(1, cells))
    total = np.convolve(np.where(ok, values, 0.0), kernel, mode="same")
    count = np.convolve(ok.astype(float), kernel, mode="same")
    return np.where(ok, total / np.maximum(count, 1), np.nan)


def detect_segments(sim: np.ndarray, geo: MapGeometry, cfg: LocalisationConfig) -> list[Segment]:
    """The separate matches of one query-video similarity map (module docstring), best first."""
    sim = np.asarray(sim, dtype=np.float64)
    if sim.ndim != 2 or min(sim.shape) < 2:
        return []
    z = robust_z(sim)
    votes = np.clip(z - VOTE_Z, 0.0, None)
    slopes = np.exp(np.linspace(-np.log(cfg.speed_min), -np.log(cfg.speed_max), cfg.speed_steps))
    gap = int(round(GAP_S / geo.step_s))
    per_window = geo.window_s / geo.step_s  # cells per independent (non-overlapping) segment
    found: list[tuple[float, Segment]] = []
    for _ in range(CANDIDATES_PER_SEGMENT * cfg.max_segments):
        ii, jj = np.nonzero(votes > 0)
        if ii.size < 2:
            break
        slope, intercept, _ = hough_line(ii.astype(float), jj.astype(float), votes[ii, jj], slopes)
        # the cells that voted for this line vote no more, whatever comes of it
        voted = np.abs(jj - slope * ii - intercept) <= 2.0
        votes[ii[voted], jj[voted]] = 0.0
        line = _smooth(_along(z, slope, intercept), int(round(per_window / 2)))
        if not np.isfinite(line).any():
            continue
        seed = int(np.nanargmax(line))
        first, last = _run(line, seed, 0.5 * float(line[seed]), gap)
        slope, intercept = refine_line(z, slope, intercept, first, last, cfg)
        line = _smooth(_along(z, slope, intercept), int(round(per_window / 2)))
        if not np.isfinite(line).any():
            continue
        seed = int(np.nanargmax(line))
        first, last = _run(line, seed, 0.5 * float(line[seed]), gap)
        run = np.arange(int(np.ceil(first)), int(np.floor(last)) + 1)
        on_line = _along(z, slope, intercept)[run]
        if not np.isfinite(on_line).any():  # a run between two rows (or off the map) is no band
            continue
        j = intercept + slope * run
        significance = float(np.nanmean(on_line)) * np.sqrt(max(run.size / per_window, 1.0))
        q, v = _ends(first, last, slope, intercept, sim.shape, geo)
        if significance < cfg.threshold_z or q[1] - q[0] < cfg.min_duration_s or v[1] <= v[0]:
            continue
        cols = np.clip(np.round(j).astype(int), 0, sim.shape[1] - 1)
        seg = Segment(q[0], q[1], v[0], v[1], score=float(sim[run, cols].mean()), speed=1.0 / slope)
        found.append((significance, seg))
    kept: list[Segment] = []
    for _, seg in sorted(found, key=lambda x: -x[0]):
        # a band overlapping a stronger one on both axes is the same copy seen again (a wide band holds
        # several lines); two separate copies never share time on both sides
        if not any(
            min(_overlap(seg.query_span, s.query_span), _overlap(seg.video_span, s.video_span)) > 0 for s in kept
        ):
            kept.append(seg)
    return kept[: cfg.max_segments]
