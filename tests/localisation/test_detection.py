"""Band detection on similarity maps whose bands are drawn by hand: ends, speed, several matches."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ausil_lib.core.config import LocalisationConfig
from ausil_lib.localisation.detection import (
    REFINE_SPAN,
    REFINE_STEPS,
    MapGeometry,
    _along,
    detect_segments,
    refine_line,
    robust_z,
)

STEP, WINDOW = 0.25, 2.0
CFG = LocalisationConfig()


def band_map(nq: int, nv: int, bands: list[tuple[float, float, float, float]], seed: int = 0) -> np.ndarray:
    """Noise (sd 0.05) plus, for each (query start, query end, video start, speed) in seconds, a band of
    height 0.5 whose cells fade linearly to 0 over the window's half either side of the copy's ends, as a
    2 s window sliding across a copy's edge sees it."""
    rng = np.random.default_rng(seed)
    sim = 0.05 * rng.standard_normal((nq, nv))
    centre_q = np.arange(nq) * STEP + WINDOW / 2
    centre_v = np.arange(nv) * STEP + WINDOW / 2
    for qs, qe, vs, speed in bands:
        for i, tq in enumerate(centre_q):
            inside = np.clip(0.5 + min(tq - qs, qe - tq) / WINDOW, 0.0, 1.0)  # share of the window in the copy
            tv = vs + (tq - qs) / speed
            width = np.clip(1.0 - np.abs(centre_v - tv) / (WINDOW / speed), 0.0, 1.0)
            sim[i] += 0.5 * inside * width
    return sim


def test_robust_z_is_median_and_mad() -> None:
    z = robust_z(np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 100.0]]))
    # median 2.5, |x - 2.5| = 2.5 1.5 0.5 0.5 1.5 97.5 -> MAD 1.5
    assert z[0, 0] == pytest.approx(-2.5 / (1.4826 * 1.5))


@pytest.mark.parametrize("speed", [1.0, 1.5, 0.75, 0.5, 2.0])  # 0.5 and 2: the ends of the searched range
def test_one_band_ends_and_speed(speed: float) -> None:
    sim = band_map(80, 120, [(5.0, 13.0, 10.0, speed)])
    segs = detect_segments(sim, MapGeometry(STEP, WINDOW, 22.0, 32.0), CFG)
    assert len(segs) == 1
    s = segs[0]
    assert s.query_start == pytest.approx(5.0, abs=0.6) and s.query_end == pytest.approx(13.0, abs=0.6)
    assert s.video_start == pytest.approx(10.0, abs=0.6)
    assert s.video_end == pytest.approx(10.0 + 8.0 / speed, abs=0.6)
    assert s.speed == pytest.approx(speed, rel=0.05)


def _refine_one_by_one(z: np.ndarray, slope: float, intercept: float, first: float, last: float) -> tuple[float, float]:
    """refine_line's search written out candidate by candidate: nanmean of z along each line over the
    run's rows, slopes outer and offsets inner, the first highest kept."""
    rows = np.arange(int(np.ceil(first)), int(np.floor(last)) + 1)
    mid = 0.5 * (first + last)
    j_mid = intercept + slope * mid
    best = (-np.inf, slope, intercept)
    slopes = np.clip(slope * np.exp(np.linspace(-REFINE_SPAN, REFINE_SPAN, REFINE_STEPS)), 0.5, 2.0)
    for s in slopes:
        for dj in np.arange(-2.0, 2.01, 0.25):
            c = j_mid + dj - s * mid
            values = _along(z, s, c)[rows]
            score = float(np.nanmean(values)) if np.isfinite(values).any() else -np.inf
            if score > best[0]:
                best = (score, float(s), float(c))
    return best[1], best[2]


@pytest.mark.parametrize(
    ("slope", "intercept", "first", "last"),
    [
        (0.75, 23.5, 16.0, 48.0),  # a tilted start along the 1.5x band: pulled onto it
        (0.6, 3.0, 0.0, 79.0),  # lines leaving the map on both sides (NaN cells left out of the means)
        (1.0, -60.0, 10.0, 30.0),  # part of the candidates wholly off the map
        (1.0, 500.0, 10.0, 30.0),  # all of them off the map: the line comes back unchanged
    ],
)
def test_refine_line_is_the_best_candidate_in_search_order(
    slope: float, intercept: float, first: float, last: float
) -> None:
    z = robust_z(band_map(80, 120, [(5.0, 13.0, 10.0, 1.5)], seed=3))
    refined = refine_line(z, slope, intercept, first, last, CFG)
    assert refined == _refine_one_by_one(z, slope, intercept, first, last)
    if intercept == 500.0:
        assert refined == (slope, intercept)
    if slope == 0.75:  # the band: video cell j = 36 + (i - 16) / 1.5 (query 5 s at row 16, video 10 s)
        assert refined[0] == pytest.approx(1 / 1.5, rel=0.05)
        assert refined[1] + refined[0] * 32 == pytest.approx(36 + 16 / 1.5, abs=0.5)


def test_two_separate_matches_best_first() -> None:
    sim = band_map(80, 120, [(2.0, 8.0, 20.0, 1.0), (11.0, 19.0, 3.0, 1.0)])
    segs = detect_segments(sim, MapGeometry(STEP, WINDOW, 22.0, 32.0), CFG)
    assert len(segs) == 2
    longer, shorter = segs  # the 8 s band is the more significant one
    assert longer.query_start == pytest.approx(11.0, abs=0.6) and longer.video_start == pytest.approx(3.0, abs=0.6)
    assert shorter.query_start == pytest.approx(2.0, abs=0.6) and shorter.video_start == pytest.approx(20.0, abs=0.6)


def test_noise_alone_gives_nothing() -> None:
    assert detect_segments(band_map(80, 120, []), MapGeometry(STEP, WINDOW, 22.0, 32.0), CFG) == []


def test_a_band_reaching_the_edge_reaches_the_clip_edge() -> None:
    sim = band_map(63, 120, [(0.0, 16.5, 10.0, 1.0)])  # 63 windows: a 16.5 s query
    s = detect_segments(sim, MapGeometry(STEP, WINDOW, 16.5, 32.0), CFG)[0]
    assert s.query_start == 0.0 and s.video_start == pytest.approx(10.0, abs=0.6)
    assert s.query_end == 16.5 and s.video_end == pytest.approx(26.5, abs=0.6)


@pytest.mark.parametrize("seed", range(16))
def test_isolated_spikes_give_no_nan_band(seed: int) -> None:
    """Small maps of noise with a few single hot cells: a run can fall between two rows, whose mean
    would be NaN and pass any threshold (seed 11 did, before runs without a cell were dropped)."""
    rng = np.random.default_rng(seed)
    nq, nv = int(rng.integers(8, 60)), int(rng.integers(8, 80))
    sim = 0.05 * rng.standard_normal((nq, nv))
    for _ in range(3):
        sim[rng.integers(0, nq), rng.integers(0, nv)] += rng.uniform(0.3, 1.0)
    geo = MapGeometry(STEP, WINDOW, (nq - 1) * STEP + WINDOW, (nv - 1) * STEP + WINDOW)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "Mean of empty slice" is how the NaN run showed
        segs = detect_segments(sim, geo, CFG)
    assert all(np.isfinite([s.score, s.speed, s.query_start, s.video_end]).all() for s in segs)
