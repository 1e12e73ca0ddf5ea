"""Band detection on similarity maps whose bands are drawn by hand: ends, speed, several matches."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ausil_lib.core.config import LocalisationConfig
from ausil_lib.localisation.detection import MapGeometry, detect_segments, robust_z

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
