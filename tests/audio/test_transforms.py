"""Each transformation does what its construction-log entry says, deterministically and within [-1, 1]."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from ausil_lib.audio.transforms import TRANSFORM_NAMES, apply_chain, describe, validate_chain

SR = 44100
N = 3 * SR


def _tones(freqs: tuple[float, ...], amp: float = 0.2, seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return sum(amp * np.sin(2 * np.pi * f * t) for f in freqs)


@pytest.fixture(scope="module")
def signal() -> np.ndarray:
    """Tones at 300, 1500 and 6000 Hz plus faint seeded noise."""
    noise = 0.002 * np.random.default_rng(0).standard_normal(N)
    return (_tones((300.0, 1500.0, 6000.0)) + noise).astype(np.float32)


@pytest.fixture(scope="module")
def quiet(signal: np.ndarray) -> np.ndarray:
    """The test signal at a quarter of the level, so added noise or background never triggers peak limiting."""
    return signal * np.float32(0.25)


def _background(seconds: float, seed: int = 1) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


BACKGROUNDS = {"speech:en_3": _background(3.0), "short": _background(0.5, seed=2), "silent": np.zeros(SR, np.float32)}

ONE_STEP: dict[str, dict[str, Any]] = {
    "mp3": {"name": "mp3", "bitrate_kbps": 32},
    "lowpass": {"name": "lowpass", "cutoff_hz": 1000.0},
    "highpass": {"name": "highpass", "cutoff_hz": 3000.0},
    "bandpass": {"name": "bandpass", "low_hz": 1000.0, "high_hz": 2500.0},
    "gain": {"name": "gain", "db": -6.0},
    "noise": {"name": "noise", "snr_db": 10.0},
    "reverb": {"name": "reverb", "room_m": [8.0, 6.0, 3.0], "absorption": 0.3},
    "eq": {"name": "eq", "gains_db": [6.0, -6.0, 3.0, 0.0, -3.0, 6.0, -12.0]},
    "mix": {"name": "mix", "snr_db": 0.0, "source": "speech:en_3"},
    "speed": {"name": "speed", "factor": 2.0},
}


def _apply(x: np.ndarray, *steps: dict[str, Any], seed: int = 7) -> np.ndarray:
    return apply_chain(x, SR, list(steps), seed=seed, backgrounds=BACKGROUNDS)


def _band_db(x: np.ndarray, freq: float, half_width_hz: float = 20.0) -> float:
    """Energy (dB) within +-half_width_hz of freq, Hann-windowed to keep the other tones out."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / SR)
    return float(10 * np.log10(spectrum[np.abs(freqs - freq) <= half_width_hz].sum() + 1e-20))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def _dominant_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / SR)[np.argmax(spectrum)])


def _best_correlation(a: np.ndarray, b: np.ndarray, max_lag: int) -> tuple[float, int]:
    """Highest Pearson correlation of a and b over lags of b in [-max_lag, max_lag], and that lag."""
    best = (-1.0, 0)
    for lag in range(-max_lag, max_lag + 1):
        x, y = (a[lag:], b[: b.size - lag]) if lag >= 0 else (a[:lag], b[-lag:])
        best = max(best, (float(np.corrcoef(x, y)[0, 1]), lag))
    return best


def test_every_name_has_a_test_step() -> None:
    assert set(ONE_STEP) == set(TRANSFORM_NAMES)


@pytest.mark.parametrize("name", TRANSFORM_NAMES)
def test_output_is_finite_float32_bounded_and_deterministic(name: str, signal: np.ndarray) -> None:
    first = _apply(signal, ONE_STEP[name])
    random.seed(12345)
    np.random.seed(54321)
    random.random()
    np.random.standard_normal(17)
    second = _apply(signal, ONE_STEP[name])

    assert first.dtype == np.float32 and first.ndim == 1
    assert np.all(np.isfinite(first))
    assert np.max(np.abs(first)) <= 1.0
    assert np.array_equal(first, second)
    if name != "speed":
        assert first.size == signal.size
    assert not np.array_equal(first, signal)


def test_seed_changes_random_transforms(signal: np.ndarray) -> None:
    step = ONE_STEP["noise"]
    assert not np.array_equal(_apply(signal, step, seed=1), _apply(signal, step, seed=2))


def test_lowpass_removes_high_band(signal: np.ndarray) -> None:
    out = _apply(signal, ONE_STEP["lowpass"])
    assert _band_db(signal, 6000) - _band_db(out, 6000) > 20
    assert abs(_band_db(signal, 300) - _band_db(out, 300)) < 1


def test_highpass_removes_low_band(signal: np.ndarray) -> None:
    out = _apply(signal, ONE_STEP["highpass"])
    assert _band_db(signal, 300) - _band_db(out, 300) > 20
    assert abs(_band_db(signal, 6000) - _band_db(out, 6000)) < 2.5  # one octave above a 12 dB/oct cutoff


def test_bandpass_keeps_its_band(signal: np.ndarray) -> None:
    out = _apply(signal, ONE_STEP["bandpass"])
    assert abs(_band_db(signal, 1500) - _band_db(out, 1500)) < 3
    assert _band_db(signal, 300) - _band_db(out, 300) > 10
    assert _band_db(signal, 6000) - _band_db(out, 6000) > 10


def test_gain_minus_6_db_halves_rms(signal: np.ndarray) -> None:
    ratio = _rms(_apply(signal, ONE_STEP["gain"])) / _rms(signal)
    assert ratio == pytest.approx(0.5, rel=0.01)


def test_loud_result_is_scaled_not_clipped(signal: np.ndarray) -> None:
    out = _apply(signal, {"name": "gain", "db": 20.0})
    assert np.max(np.abs(out)) == pytest.approx(0.99, abs=1e-6)
    assert np.corrcoef(out, signal)[0, 1] > 0.99999


@pytest.mark.parametrize("snr_db", [10.0, 0.0])
def test_noise_has_requested_snr(quiet: np.ndarray, snr_db: float) -> None:
    out = _apply(quiet, {"name": "noise", "snr_db": snr_db})
    measured = 20 * np.log10(_rms(quiet) / _rms(out - quiet))
    assert measured == pytest.approx(snr_db, abs=1.5)


@pytest.mark.parametrize("snr_db", [0.0, -5.0, 10.0])
def test_mix_adds_background_at_requested_snr(quiet: np.ndarray, snr_db: float) -> None:
    out = _apply(quiet, {"name": "mix", "snr_db": snr_db, "source": "speech:en_3"})
    assert np.max(np.abs(out)) < 0.99  # no peak limiting, so the added part is exactly the scaled background
    added = out.astype(np.float64) - quiet
    assert _rms(added) == pytest.approx(_rms(quiet) / 10 ** (snr_db / 20), rel=0.01)
    assert np.corrcoef(added, BACKGROUNDS["speech:en_3"])[0, 1] > 0.999


def test_mix_tiles_a_shorter_background(quiet: np.ndarray) -> None:
    out = _apply(quiet, {"name": "mix", "snr_db": 0.0, "source": "short"})
    added = out.astype(np.float64) - quiet
    period = BACKGROUNDS["short"].size
    assert _rms(added[-period:]) > 0.5 * _rms(quiet)
    np.testing.assert_allclose(added[period : 2 * period], added[:period], atol=1e-6)
    np.testing.assert_allclose(added[-period:], added[-2 * period : -period], atol=1e-6)


def test_mix_with_silent_background_adds_silence(signal: np.ndarray) -> None:
    out = _apply(signal, {"name": "mix", "snr_db": 0.0, "source": "silent"})
    assert np.array_equal(out, signal)


def test_mix_without_its_background_is_rejected(signal: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"step 1 \(mix\).*'music:9'"):
        apply_chain(signal, SR, [ONE_STEP["gain"], {"name": "mix", "snr_db": 0.0, "source": "music:9"}], seed=0)


def test_mp3_is_close_but_lossy(signal: np.ndarray) -> None:
    out = _apply(signal, ONE_STEP["mp3"])
    correlation, _ = _best_correlation(signal, out, max_lag=int(0.005 * SR))
    assert correlation > 0.8
    assert np.max(np.abs(out - signal)) > 1e-3


def test_reverb_is_correlated_and_time_aligned(signal: np.ndarray) -> None:
    out = _apply(signal, ONE_STEP["reverb"])
    assert np.max(np.abs(out - signal)) > 0.01
    assert np.corrcoef(out, signal)[0, 1] > 0.5
    # on white noise the direct path dominates the cross-correlation, so its lag is the alignment error
    noise = (0.1 * np.random.default_rng(3).standard_normal(SR)).astype(np.float32)
    wet = _apply(noise, ONE_STEP["reverb"])
    _, lag = _best_correlation(noise, wet, max_lag=int(0.05 * SR))
    assert abs(lag) <= int(0.001 * SR)


def test_eq_changes_bands_by_their_gains(signal: np.ndarray) -> None:
    out = _apply(signal, {"name": "eq", "gains_db": [0.0, 0.0, 0.0, 0.0, 6.0, 0.0, -12.0]})
    assert _band_db(signal, 6000) - _band_db(out, 6000) > 4  # high shelf centred at 6324 Hz: -6 dB there
    assert _band_db(out, 1500) - _band_db(signal, 1500) > 4  # peak at 1363 Hz
    assert abs(_band_db(signal, 300) - _band_db(out, 300)) < 1
    flat = _apply(signal, {"name": "eq", "gains_db": [0.0] * 7})
    np.testing.assert_allclose(flat, signal, atol=1e-5)


@pytest.mark.parametrize("factor", [2.0, 0.5, 0.25])
def test_speed_scales_length_and_pitch(factor: float) -> None:
    tone = _tones((1000.0,), amp=0.5).astype(np.float32)
    out = _apply(tone, {"name": "speed", "factor": factor})
    assert out.size == pytest.approx(tone.size / factor, rel=0.01)
    assert _dominant_hz(out) == pytest.approx(1000.0 * factor, abs=2.0)


def test_chain_applies_steps_in_order(signal: np.ndarray) -> None:
    chain = [ONE_STEP["lowpass"], ONE_STEP["gain"]]
    out = apply_chain(signal, SR, chain, seed=0)
    step_by_step = apply_chain(apply_chain(signal, SR, chain[:1], seed=0), SR, chain[1:], seed=0)
    np.testing.assert_array_equal(out, step_by_step)
    assert _band_db(signal, 6000) - _band_db(out, 6000) > 20


def test_describe() -> None:
    chain = [ONE_STEP["mp3"], {"name": "mix", "snr_db": -5, "source": "speech:en_3"}]
    assert describe(chain) == "mp3 32 kbps + mix speech:en_3 at -5 dB"
    assert describe([]) == "identity"
    for name, step in ONE_STEP.items():
        assert describe([step]).startswith(name)


@pytest.mark.parametrize(
    ("chain", "message"),
    [
        ([ONE_STEP["gain"], {"name": "echo", "delay": 1}], r"step 1: unknown transform name 'echo'"),
        ([{"name": "gain"}], r"step 0 \(gain\): missing parameter\(s\) \['db'\]"),
        ([{"name": "gain", "db": 1.0, "gain_db": 2.0}], r"step 0 \(gain\): unexpected parameter\(s\) \['gain_db'\]"),
        ([ONE_STEP["mp3"], {"name": "mp3", "bitrate_kbps": 33}], r"step 1 \(mp3\): bitrate_kbps must be one of"),
        ([{"name": "speed", "factor": 0}], r"step 0 \(speed\): factor must be a positive number"),
        ([{"name": "eq", "gains_db": [0.0] * 6}], r"step 0 \(eq\): gains_db must be a list of seven"),
        ([{"name": "reverb", "room_m": [5, 4], "absorption": 0.2}], r"step 0 \(reverb\): room_m must be three"),
        ([{"name": "bandpass", "low_hz": 3000, "high_hz": 1000}], r"step 0 \(bandpass\): low_hz must be below high_hz"),
        ([{"name": "noise", "snr_db": float("nan")}], r"step 0 \(noise\): snr_db must be a finite number"),
        ([{"db": 1.0}], r"step 0: unknown transform name None"),
        ({"name": "gain", "db": 1.0}, r"chain must be a list of steps"),
    ],
)
def test_validate_chain_names_index_and_problem(chain: Any, message: str, signal: np.ndarray) -> None:
    with pytest.raises(ValueError, match=message):
        validate_chain(chain)
    with pytest.raises(ValueError, match=message):
        apply_chain(signal, SR, chain, seed=0)


def test_valid_chain_passes() -> None:
    validate_chain(list(ONE_STEP.values()))
