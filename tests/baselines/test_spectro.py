"""Spectro Slides / Spectro Tiles: the properties of spec section 5 (docs/spectro-baselines.md).

Test audio follows the spec: seeded random three-tone chords of 40-120 ms plus white noise 30 dB down,
generated at 16 kHz and cut at sample level, so that fingerprint windows never repeat.  References are
60 s (long enough for the spec's 20 s excerpt at 37.00 s); the unrelated set is 20 clips of 20 s, all of
them used where the spec asks for at least 20 (check 5), the first six elsewhere, as in the spec's prototype.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.signal

from ausil_lib.audio.decode import AudioError, encode
from ausil_lib.baselines import spectro
from ausil_lib.baselines.spectro import (
    METHODS,
    Fingerprints,
    SpectroMethod,
    binary_images,
    cached_fingerprints,
    fingerprint,
    fingerprint_key,
    load_audio_16k,
    match,
    nearest_labels,
    silent_windows,
    slides,
    spectrogram,
    tile_sums,
    tiles,
)
from ausil_lib.core.config import DIRECTIONS, SpectroConfig, from_section

CFG = SpectroConfig(ref_stride=1)  # the spec's exhaustive search (params.yaml labels every 4th frame)
SR = CFG.sample_rate
W = CFG.frames_per_fp

# test audio (spec section 5)
CHORD_S = (0.04, 0.12)
CHORD_HZ = (200.0, 4000.0)
NOISE_DB_DOWN = 30.0
PEAK = 0.5
REF_S, UNRELATED_S, N_UNRELATED, N_LEVEL = 60.0, 20.0, 20, 6

# spec numbers
EXCERPT_S, EXCERPT_START = 20.0, 37 * SR  # 37.00 s -> d* = 1850, N = 948
EXCERPT_D, EXCERPT_N = 1850, 948
HALF_FRAME_START = EXCERPT_START + CFG.hop // 2  # 37.01 s
PREFIX_S, PREFIX_SHIFT = 7.0, 350
DISTORT_S, DISTORT_START, DISTORT_D = 10.0, 23 * SR, 1150


def chords(seconds: float, seed: int) -> np.ndarray:
    """Three-tone chords of random 40-120 ms with white noise 30 dB below the chords, peak PEAK."""
    rng = np.random.default_rng(seed)
    total = round(seconds * SR)
    out = np.zeros(total)
    pos = 0
    while pos < total:
        length = min(int(rng.uniform(*CHORD_S) * SR), total - pos)
        t = np.arange(length) / SR
        out[pos : pos + length] = np.sin(2 * np.pi * rng.uniform(*CHORD_HZ, 3)[:, None] * t).mean(axis=0)
        pos += length
    out += rng.standard_normal(total) * np.sqrt(np.mean(out**2)) * 10 ** (-NOISE_DB_DOWN / 20)
    return (PEAK * out / np.abs(out).max()).astype(np.float32)


def excerpt(audio: np.ndarray, start: int, seconds: float) -> np.ndarray:
    return audio[start : start + round(seconds * SR)]


def cfg_for(direction: str, **changes) -> SpectroConfig:
    return replace(CFG, direction=direction, **changes)


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return chords(REF_S, seed=1)


@pytest.fixture(scope="module")
def unrelated_audio() -> list[np.ndarray]:
    return [chords(UNRELATED_S, seed=100 + i) for i in range(N_UNRELATED)]


@pytest.fixture(scope="module")
def ref_fp(reference) -> dict[str, Fingerprints]:
    return {m: fingerprint(reference, CFG, m) for m in METHODS}


@pytest.fixture(scope="module")
def unrelated_fp(unrelated_audio) -> dict[str, list[Fingerprints]]:
    return {m: [fingerprint(a, CFG, m) for a in unrelated_audio] for m in METHODS}


def best_unrelated(query: Fingerprints, unrelated: list[Fingerprints], cfg: SpectroConfig, count: int = N_LEVEL) -> int:
    """The unrelated level: the best score of the query against the first `count` unrelated clips."""
    return max(match(query, u, cfg).score for u in unrelated[:count])


# ---------------------------------------------------------------- 1. identity


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("method", METHODS)
def test_identity(ref_fp, method: str, direction: str) -> None:
    fp = ref_fp[method]
    res = match(fp, fp, cfg_for(direction))
    assert res.offset == 0
    assert res.n_query == fp.n_nonempty and res.score >= 0.9 * res.n_query
    if method == "slides":
        rows = fp.values[fp.nonempty]
        assert np.unique(rows, axis=0).shape[0] == rows.shape[0]  # no duplicates on this audio ...
        assert res.score == res.n_query  # ... so S = N exactly


# ---------------------------------------------------------------- 2. excerpt, 3. time shift, 9. directions


@pytest.fixture(scope="module")
def aligned(reference, ref_fp, unrelated_fp) -> dict[tuple[str, str, str], tuple[int, int | None, int]]:
    """(case, method, direction) -> (S, d*, N) for the excerpt, half-frame and time-shift queries."""
    prefix = chords(PREFIX_S, seed=999)
    queries = {
        "excerpt": excerpt(reference, EXCERPT_START, EXCERPT_S),
        "half": excerpt(reference, HALF_FRAME_START, EXCERPT_S),
    }
    queries["shifted"] = np.concatenate([prefix, queries["excerpt"]])
    out = {}
    for method in METHODS:
        for case, audio in queries.items():
            q = fingerprint(audio, CFG, method)
            for direction in DIRECTIONS:
                res = match(q, ref_fp[method], cfg_for(direction))
                out[case, method, direction] = (res.score, res.offset, res.n_query)
                if case == "half":
                    out["half_unrelated", method, direction] = (
                        best_unrelated(q, unrelated_fp[method], cfg_for(direction)),
                        None,
                        res.n_query,
                    )
    return out


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("method", METHODS)
def test_excerpt_at_frame_start(aligned, method: str, direction: str) -> None:
    score, offset, n = aligned["excerpt", method, direction]
    assert n == EXCERPT_N and offset == EXCERPT_D and score >= 0.9 * n


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("method", METHODS)
def test_excerpt_at_half_frame(aligned, method: str, direction: str) -> None:
    """Votes split over the two neighbouring offsets: S near N / 2, still far above unrelated audio."""
    score, offset, n = aligned["half", method, direction]
    unrelated, _, _ = aligned["half_unrelated", method, direction]
    assert abs(offset - (EXCERPT_D + 0.5)) <= 1
    assert 0.3 * n <= score <= 0.75 * n
    assert score >= 10 * unrelated


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("method", METHODS)
def test_time_shift(aligned, method: str, direction: str) -> None:
    base, base_offset, _ = aligned["excerpt", method, direction]
    score, offset, _ = aligned["shifted", method, direction]
    assert offset == base_offset - PREFIX_SHIFT
    assert abs(score - base) <= W - 1  # only fingerprints straddling the junction may change


@pytest.mark.parametrize("method", METHODS)
def test_directions_agree(aligned, method: str) -> None:
    """Same d* and scores within a few percent of N on checks 1-3.

    At the half-frame start the tie rule (smaller index) pulls QUERY->REF to 1850 and REF->QUERY to 1851,
    so there d* may differ by one frame and the split of the votes differs more (Tiles ties often).
    """
    for case, d_tol, s_tol in (("excerpt", 0, 0.05), ("shifted", 0, 0.05), ("half", 1, 0.15)):
        (s_a, d_a, n), (s_b, d_b, _) = (aligned[case, method, d] for d in DIRECTIONS)
        assert abs(d_a - d_b) <= d_tol, case
        assert abs(s_a - s_b) <= s_tol * n, case


# ---------------------------------------------------------------- 4. gain


@pytest.mark.parametrize("gain", [0.25, 2.0])
@pytest.mark.parametrize("method", METHODS)
def test_gain_gives_identical_fingerprints(reference, ref_fp, method: str, gain: float) -> None:
    audio = excerpt(reference, DISTORT_START, DISTORT_S)
    plain, scaled = fingerprint(audio, CFG, method), fingerprint(audio * np.float32(gain), CFG, method)
    assert plain.nonempty.all()
    np.testing.assert_array_equal(scaled.values, plain.values)
    np.testing.assert_array_equal(scaled.nonempty, plain.nonempty)
    assert match(scaled, ref_fp[method], CFG) == match(plain, ref_fp[method], CFG)


# ---------------------------------------------------------------- 5. mild distortion, 6. unrelated


def add_noise(audio: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(audio.size) * np.sqrt(np.mean(audio.astype(float) ** 2))
    return (audio + noise * 10 ** (-snr_db / 20)).astype(np.float32)


NOISE_SNR_DB, LOWPASS_HZ, LOWPASS_ORDER = 20.0, 4000.0, 8
MP3_ARGS = ["-c:a", "libmp3lame", "-b:a", "64k"]


@pytest.fixture(scope="module")
def distorted(reference, tmp_path_factory) -> dict[str, np.ndarray]:
    clip = excerpt(reference, DISTORT_START, DISTORT_S)
    sos = scipy.signal.butter(LOWPASS_ORDER, LOWPASS_HZ, fs=SR, output="sos")
    mp3 = tmp_path_factory.mktemp("spectro") / "query.mp3"
    encode(mp3, clip, SR, MP3_ARGS)
    return {
        "noise": add_noise(clip, NOISE_SNR_DB, seed=7),
        "lowpass": scipy.signal.sosfiltfilt(sos, clip).astype(np.float32),
        "mp3": load_audio_16k(mp3),
    }


@pytest.mark.parametrize("kind", ["noise", "lowpass", "mp3"])
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("method", METHODS)
def test_mild_distortion_ranks_source_first(
    distorted, ref_fp, unrelated_fp, method: str, direction: str, kind: str
) -> None:
    cfg = cfg_for(direction)
    q = fingerprint(distorted[kind], CFG, method)
    source = match(q, ref_fp[method], cfg)
    assert len(unrelated_fp[method]) >= N_UNRELATED
    assert source.score > best_unrelated(q, unrelated_fp[method], cfg, count=N_UNRELATED)
    assert abs(source.offset - DISTORT_D) <= 1


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("method", METHODS)
def test_unrelated_audio_scores_low(reference, unrelated_fp, method: str, direction: str) -> None:
    q = fingerprint(excerpt(reference, EXCERPT_START, EXCERPT_S), CFG, method)
    cfg = cfg_for(direction)
    assert best_unrelated(q, unrelated_fp[method], cfg, count=N_UNRELATED) < 0.1 * q.n_nonempty


# ---------------------------------------------------------------- 7. speed (an expected failure of the method)


def resample_speed(audio: np.ndarray, speed: float) -> np.ndarray:
    """Play `speed` times faster: pitch moves with tempo, as when a video's speed changes."""
    up, down = (1, round(speed)) if speed >= 1 else (round(1 / speed), 1)
    return scipy.signal.resample_poly(audio, up, down).astype(np.float32)


def atempo_speed(audio: np.ndarray, speed: float, tmp: Path) -> np.ndarray:
    """Tempo change that keeps the pitch (ffmpeg atempo)."""
    path = tmp / f"atempo{speed}.wav"
    encode(path, audio, SR, ["-af", f"atempo={speed}", "-c:a", "pcm_s16le"])
    return load_audio_16k(path)


SPEED_FACTORS = [2.0, 0.5]
SPEED_CLIP_S = 10.0
SPEED_LEVEL = 2  # "at most about twice the best unrelated score"
SPEED_LENGTH_TOL_S = 0.05


@pytest.mark.parametrize("render", ["resample", "atempo"])
@pytest.mark.parametrize("speed", SPEED_FACTORS)
@pytest.mark.parametrize("method", METHODS)
def test_speed_change_scores_at_unrelated_level(
    reference, ref_fp, unrelated_fp, tmp_path, method: str, speed: float, render: str
) -> None:
    clip = excerpt(reference, EXCERPT_START, SPEED_CLIP_S)
    audio = resample_speed(clip, speed) if render == "resample" else atempo_speed(clip, speed, tmp_path)
    assert abs(audio.size - clip.size / speed) < SPEED_LENGTH_TOL_S * SR  # really re-rendered at that speed
    q = fingerprint(audio, CFG, method)
    for direction in DIRECTIONS:
        cfg = cfg_for(direction)
        assert match(q, ref_fp[method], cfg).score <= SPEED_LEVEL * best_unrelated(q, unrelated_fp[method], cfg)


# ---------------------------------------------------------------- 8. invariants


def test_binary_images_follow_the_iterative_rule() -> None:
    window = np.random.default_rng(3).random((CFG.n_rows, W)) ** 3
    images = binary_images(window[None], CFG)[0]
    kept = np.ones_like(window, bool)
    for k in range(CFG.n_images):
        kept = window > window[kept].mean()
        np.testing.assert_array_equal(images[k], kept)
    assert images[0].sum() > images[1].sum() > images[2].sum() > 0


def test_binary_images_multiples_rule_and_flat_windows() -> None:
    window = np.random.default_rng(4).random((CFG.n_rows, W)) ** 3
    cfg = replace(CFG, threshold_rule="multiples")
    images = binary_images(np.stack([window, np.zeros_like(window)]), cfg)
    for k, c in enumerate(cfg.multiples):
        np.testing.assert_array_equal(images[0, k], window > c * window.mean())
    assert not images[1].any()  # a flat window gives empty images, not NaN thresholds


def test_slides_and_tiles_on_a_known_image() -> None:
    image = np.zeros((1, CFG.n_images, CFG.n_rows, W), bool)
    image[0, 0, 0:3, 0:7] = True  # 21 ones: rows 0-2 (slide 0), frames 0-4 (slide 0) and 5-6 (slide 1)
    image[0, 1, 155, 49] = True  # top-right cell: last horizontal and last vertical slide, last tile
    vec = slides(image, CFG)[0]
    per_image = CFG.h_slides + CFG.v_slides
    assert vec.shape == (CFG.n_images * per_image,) and vec.dtype == np.uint16
    assert vec[0] == 21 and vec[CFG.h_slides] == 15 and vec[CFG.h_slides + 1] == 6
    assert vec[per_image + CFG.h_slides - 1] == 1 and vec[2 * per_image - 1] == 1
    assert vec[2 * per_image :].sum() == 0
    sums = tile_sums(image, CFG)[0]
    assert sums[0, 0] == 15 and sums[0, 1] == 6 and sums[1, CFG.tiles_per_image - 1] == 1
    positions = np.flatnonzero(tiles(image, CFG)[0])
    np.testing.assert_array_equal(positions, [0, 1, 2 * CFG.tiles_per_image - 1])  # zero-sum tiles never kept


def test_tiles_keep_the_largest_sums_ties_to_smaller_index() -> None:
    image = np.zeros((1, CFG.n_images, CFG.n_rows, W), bool)
    image[0, :, :: CFG.tile, :: CFG.tile] = True  # every tile holds one 1 ...
    image[0, 0, -1, -1] = True  # ... the last tile of image 1 holds two
    kept = np.flatnonzero(tiles(image, CFG)[0].reshape(CFG.n_images, -1)[0])
    np.testing.assert_array_equal(kept, list(range(CFG.kept_tiles - 1)) + [CFG.tiles_per_image - 1])


@pytest.mark.parametrize("method", METHODS)
def test_fingerprint_invariants(reference, method: str) -> None:
    audio = excerpt(reference, 0, 8.0)
    spec = spectrogram(audio, CFG)
    assert spec.shape == (CFG.n_rows, 1 + (audio.size - CFG.n_fft) // CFG.hop)
    windows = np.lib.stride_tricks.sliding_window_view(spec, W, axis=1).transpose(1, 0, 2)[::W]
    images = binary_images(windows, CFG)
    assert (images[:, 1] <= images[:, 0]).all() and (images[:, 2] <= images[:, 1]).all()
    counts = slides(images, CFG).reshape(len(images), CFG.n_images, -1).astype(int)
    ones = images.sum(axis=(2, 3))
    np.testing.assert_array_equal(counts[:, :, : CFG.h_slides].sum(axis=2), ones)
    np.testing.assert_array_equal(counts[:, :, CFG.h_slides :].sum(axis=2), ones)
    fp = fingerprint(audio, CFG, method)
    assert len(fp) == spec.shape[1] - W + 1 and fp.nonempty.all()
    if method == "slides":
        assert fp.values.shape[1] == 78 and fp.values.dtype == np.uint16
    else:
        blocks = fp.values.reshape(len(fp), CFG.n_images, CFG.tiles_per_image)
        assert fp.values.shape[1] == 960 and set(np.unique(fp.values)) <= {0, 1}
        assert blocks.sum(axis=2).max() <= CFG.kept_tiles and blocks.sum(axis=2).min() > 0


@pytest.mark.parametrize("method", METHODS)
def test_silent_windows_give_empty_fingerprints(reference, method: str) -> None:
    gap = 3 * SR
    audio = np.concatenate([excerpt(reference, 0, 2.0), np.zeros(gap, np.float32), excerpt(reference, SR, 2.0)])
    fp = fingerprint(audio, CFG, method)
    span = (W - 1) * CFG.hop + CFG.n_fft
    starts = np.arange(len(fp)) * CFG.hop
    inside_gap = (starts >= 2 * SR) & (starts + span <= 2 * SR + gap)
    assert inside_gap.sum() > 0
    assert not fp.nonempty[inside_gap].any() and not fp.values[inside_gap].any()
    assert fp.nonempty[starts + span <= 2 * SR].all()
    assert silent_windows(audio, len(fp), replace(CFG, silence_dbfs=None)).sum() == 0
    assert fingerprint(audio, replace(CFG, silence_dbfs=None), method).nonempty.all()
    silent = fingerprint(np.zeros(5 * SR, np.float32), CFG, method)
    assert silent.n_nonempty == 0
    res = match(silent, fp, CFG)
    assert res.score == 0 and res.offset is None and res.n_query == 0


@pytest.mark.parametrize("method", METHODS)
def test_short_clips_give_one_fingerprint(reference, method: str) -> None:
    for samples in (CFG.n_fft // 2, CFG.n_fft, SR // 2):
        fp = fingerprint(reference[:samples], CFG, method)
        assert len(fp) == 1 and fp.nonempty.all()


@pytest.mark.parametrize("tie_votes", ["first", "all"])
@pytest.mark.parametrize("method", METHODS)
def test_score_bounds_and_determinism(reference, unrelated_audio, method: str, tie_votes: str) -> None:
    query_audio = excerpt(reference, EXCERPT_START, 5.0)
    q1, q2 = fingerprint(query_audio, CFG, method), fingerprint(query_audio.copy(), CFG, method)
    np.testing.assert_array_equal(q1.values, q2.values)
    refs = [fingerprint(a[: 10 * SR], CFG, method) for a in (reference, unrelated_audio[0])]
    for direction in DIRECTIONS:
        cfg = cfg_for(direction, tie_votes=tie_votes)
        for r in refs:
            res = match(q1, r, cfg)
            assert 0 <= res.score <= min(q1.n_nonempty, r.n_nonempty) and 0.0 <= res.tie_share <= 1.0
            assert match(q2, r, cfg) == res
            a, b = nearest_labels(q1, r, cfg), nearest_labels(q2, r, cfg)
            np.testing.assert_array_equal(a.query_frames, b.query_frames)
            np.testing.assert_array_equal(a.ref_frames, b.ref_frames)


@pytest.mark.parametrize("method", METHODS)
def test_tolerance_and_reference_stride(aligned, reference, ref_fp, method: str) -> None:
    q = fingerprint(excerpt(reference, HALF_FRAME_START, EXCERPT_S), CFG, method)
    half, _, n = aligned["half", method, "query_to_ref"]
    tolerant = match(q, ref_fp[method], replace(CFG, tau=1))
    assert tolerant.score >= 0.9 * n > half and abs(tolerant.offset - (EXCERPT_D + 0.5)) <= 1
    q = fingerprint(excerpt(reference, EXCERPT_START, EXCERPT_S), CFG, method)
    for direction in DIRECTIONS:
        strided = match(q, ref_fp[method], cfg_for(direction, ref_stride=2))
        assert strided.offset == EXCERPT_D and 0.4 * n <= strided.score <= 0.55 * n


# ---------------------------------------------------------------- 10. exactness of the vectorised search


def naive_labels(query: Fingerprints, ref: Fingerprints, cfg: SpectroConfig) -> tuple[set[tuple[int, int]], int]:
    """Per-fingerprint Python loop: (query frame, reference frame) votes and the number of tied labels."""
    ref_ok = [i for i in range(len(ref)) if ref.nonempty[i] and i % cfg.ref_stride == 0]
    q_ok = [j for j in range(len(query)) if query.nonempty[j]]
    forward = cfg.direction == "query_to_ref"
    src, tgt, src_fp, tgt_fp = (q_ok, ref_ok, query, ref) if forward else (ref_ok, q_ok, ref, query)
    votes, tied = set(), 0
    for s in src:
        a = src_fp.values[s].astype(int)
        if query.method == "slides":
            close = [-int(np.abs(a - tgt_fp.values[t].astype(int)).sum()) for t in tgt]
        else:
            close = [int((a & tgt_fp.values[t].astype(int)).sum()) for t in tgt]
        best = max(close)
        if query.method == "tiles" and best == 0:
            continue
        winners = [t for t, c in zip(tgt, close) if c == best]
        tied += len(winners) > 1
        for t in winners[:1] if cfg.tie_votes == "first" else winners:
            votes.add((s, t) if forward else (t, s))
    return votes, tied


def synthetic(method: str, n: int, seed: int) -> Fingerprints:
    """Small random fingerprints with few distinct values, so that ties are frequent."""
    rng = np.random.default_rng(seed)
    if method == "slides":
        values = rng.integers(0, 3, (n, 78)).astype(np.uint16)
    else:
        values = (rng.random((n, 960)) < 0.01).astype(np.uint8)
    nonempty = rng.random(n) > 0.2
    values[~nonempty] = 0
    return Fingerprints(method, values, nonempty, fingerprint_key(CFG, method))


@pytest.mark.parametrize("source", ["synthetic", "audio"])
@pytest.mark.parametrize("tie_votes", ["first", "all"])
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("method", METHODS)
def test_vectorised_labels_equal_naive_loop(
    reference, unrelated_audio, method: str, direction: str, tie_votes: str, source: str
) -> None:
    if source == "synthetic":
        query, ref = synthetic(method, 70, seed=1), synthetic(method, 90, seed=2)
    else:
        query = fingerprint(excerpt(reference, SR, 1.5), CFG, method)
        ref = fingerprint(np.concatenate([reference[: SR * 2], unrelated_audio[1][:SR]]), CFG, method)
    saw_tie = False
    for stride in (1, 2):
        cfg = cfg_for(direction, tie_votes=tie_votes, ref_stride=stride, batch_size=16)
        labels = nearest_labels(query, ref, cfg)
        votes, tied = naive_labels(query, ref, cfg)
        assert set(zip(labels.query_frames.tolist(), labels.ref_frames.tolist())) == votes
        assert labels.query_frames.size == len(votes) and labels.n_tied == tied
        saw_tie |= tied > 0
    assert saw_tie or source == "audio"


@pytest.mark.gpu
@pytest.mark.parametrize("method", METHODS)
def test_gpu_labels_equal_cpu(reference, unrelated_audio, method: str) -> None:
    query = fingerprint(excerpt(reference, EXCERPT_START, EXCERPT_S), CFG, method)
    ref = fingerprint(np.concatenate([reference, unrelated_audio[0]]), CFG, method)
    for direction in DIRECTIONS:
        for tie_votes in ("first", "all"):
            cpu = nearest_labels(query, ref, cfg_for(direction, tie_votes=tie_votes))
            gpu = nearest_labels(query, ref, cfg_for(direction, tie_votes=tie_votes, device="cuda"))
            np.testing.assert_array_equal(gpu.query_frames, cpu.query_frames)
            np.testing.assert_array_equal(gpu.ref_frames, cpu.ref_frames)
            assert gpu.n_tied == cpu.n_tied


# ---------------------------------------------------------------- configuration, storage, decoding


def test_config_from_params() -> None:
    cfg = from_section(
        SpectroConfig,
        {"tau": 1, "multiples": [1, 2, 4], "threshold_rule": "multiples", "silence_dbfs": None},
        "spectro",
    )
    assert cfg.tau == 1 and cfg.multiples == (1.0, 2.0, 4.0) and cfg.silence_dbfs is None
    assert from_section(SpectroConfig, {}, "spectro") == SpectroConfig()
    with pytest.raises(ValueError, match="unknown setting 'spectro.hop_size'"):
        from_section(SpectroConfig, {"hop_size": 320}, "spectro")
    for bad in (
        {"direction": "both"},
        {"tie_votes": "none"},
        {"tile": 7},
        {"band_hi": 600},
        {"kept_tiles": 400},
        {"threshold_rule": "multiples", "multiples": (1, 2)},
        {"ref_stride": 0},
    ):
        with pytest.raises(ValueError):
            from_section(SpectroConfig, bad, "spectro")


@pytest.mark.parametrize("method", METHODS)
def test_npz_round_trip(reference, tmp_path: Path, method: str) -> None:
    fp = fingerprint(excerpt(reference, 0, 3.0), CFG, method)
    path = tmp_path / "db" / "video.npz"
    fp.to_npz(path)
    back = Fingerprints.from_npz(path)
    assert back.method == method and back.settings == fp.settings
    np.testing.assert_array_equal(back.values, fp.values)
    np.testing.assert_array_equal(back.nonempty, fp.nonempty)
    assert back.values.dtype == fp.values.dtype
    assert [p.name for p in path.parent.iterdir()] == ["video.npz"]  # no temp file left behind
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        Fingerprints.from_npz(tmp_path / "bad.npz")


def test_mixed_settings_are_refused(reference) -> None:
    audio = excerpt(reference, 0, 2.0)
    with pytest.raises(ValueError, match="different methods or settings"):
        match(fingerprint(audio, CFG, "slides"), fingerprint(audio, replace(CFG, h_slides=8), "slides"), CFG)


def test_load_audio_16k(reference, tmp_path: Path) -> None:
    path = tmp_path / "clip.wav"
    encode(path, excerpt(reference, 0, 2.0), SR, ["-c:a", "pcm_s16le"])
    audio = load_audio_16k(path)
    assert audio.dtype == np.float32 and audio.size == 2 * SR
    with pytest.raises(AudioError):
        load_audio_16k(tmp_path / "missing.mp4")


def test_workers_index_what_one_process_indexes_and_the_cache_is_reused(reference, tmp_path: Path) -> None:
    database = {}
    for i, start in enumerate((0, 3, 6)):
        database[f"v{i}"] = str(tmp_path / f"v{i}.wav")
        encode(database[f"v{i}"], excerpt(reference, start * SR, 3.0), SR, ["-c:a", "pcm_s16le"])
    database["silent"] = str(tmp_path / "silent.wav")
    encode(database["silent"], np.zeros(2 * SR, np.float32), SR, ["-c:a", "pcm_s16le"])
    (tmp_path / "bad.wav").write_bytes(b"RIFF, but no audio")
    database["bad"] = str(tmp_path / "bad.wav")
    runs = {}
    for workers in (1, 2):
        method = SpectroMethod("tiles", replace(CFG, workers=workers), tmp_path / f"cache{workers}")
        failures = method.index(database, progress=False)
        assert set(failures) == {"silent", "bad"} and "non-empty" in failures["silent"]
        assert method.timings["fingerprint_s"] > 0
        runs[workers] = method
    assert list(runs[2].db) == list(runs[1].db) == ["v0", "v1", "v2"]
    for vid, fp in runs[1].db.items():
        np.testing.assert_array_equal(runs[2].db[vid].values, fp.values)
        np.testing.assert_array_equal(runs[2].db[vid].nonempty, fp.nonempty)
    again = SpectroMethod("tiles", replace(CFG, workers=2), tmp_path / "cache2")
    again.index(database, progress=False)
    assert again.timings["fingerprint_s"] == 0.0  # every fingerprint read back from the cache


def test_cached_fingerprints_are_reused_only_under_the_same_settings_and_code(
    make_media, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = ("clip", str(make_media("clip.wav", chords(4.0, seed=3))))
    cache = tmp_path / "cache"
    made, seconds = cached_fingerprints(item, "tiles", CFG, cache)
    assert seconds > 0 and made.settings == fingerprint_key(CFG, "tiles")
    again, seconds = cached_fingerprints(item, "tiles", CFG, cache)
    assert seconds == 0.0 and np.array_equal(again.values, made.values)
    monkeypatch.setattr(spectro, "FINGERPRINT_CODE", (*spectro.FINGERPRINT_CODE, "core/formats.py"))  # other code
    remade, seconds = cached_fingerprints(item, "tiles", CFG, cache)
    assert seconds > 0 and remade.settings != made.settings
