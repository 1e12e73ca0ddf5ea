"""The Dejavu baseline: full rankings from the published Dejavu, over a throwaway PostgreSQL cluster."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import generate_binary_structure, iterate_structure, maximum_filter

from ausil_lib.audio.decode import AudioError, encode
from ausil_lib.baselines.dejavu import (
    SAMPLE_RATE,
    DejavuIndex,
    DejavuMethod,
    dejavu_fingerprint,
    dejavu_hashes,
    dejavu_samples,
    diamond_maximum_filter,
    file_hashes,
)
from ausil_lib.baselines.postgres import PostgresCluster
from ausil_lib.core.config import DejavuConfig, from_section

from ..helpers import chords

RECORDING_S = 30.0
EXCERPT_START_S = 7.3  # deliberately not a whole number of Dejavu frames
EXCERPT_S = 10.0
CODECS = {"wav": ["-c:a", "pcm_s16le"], "flac": ["-c:a", "flac"], "ogg": ["-c:a", "libvorbis"]}


def _write(path: Path, audio: np.ndarray) -> Path:
    encode(path, audio, SAMPLE_RATE, CODECS[path.suffix[1:]])
    return path


@pytest.fixture(scope="module")
def cluster():
    with PostgresCluster() as running:
        yield running


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Five unrelated recordings (one lossy), a lossless copy of r1, and a 10 s lossy excerpt of r1."""
    folder = tmp_path_factory.mktemp("dejavu")
    recordings = {f"r{seed}": chords(RECORDING_S, seed) for seed in range(5)}
    files = {
        name: _write(folder / f"{name}.{'ogg' if name == 'r4' else 'wav'}", audio) for name, audio in recordings.items()
    }
    files["r1_copy"] = _write(folder / "r1_copy.flac", recordings["r1"])  # other bytes, same samples
    start = int(EXCERPT_START_S * SAMPLE_RATE)
    files["excerpt"] = _write(folder / "excerpt.ogg", recordings["r1"][start : start + int(EXCERPT_S * SAMPLE_RATE)])
    return files


@pytest.fixture(scope="module")
def index(cluster: PostgresCluster, media: dict[str, Path]) -> DejavuIndex:
    built = DejavuIndex(cluster, DejavuConfig())
    for name in ("r0", "r1", "r2", "r3", "r4", "r1_copy"):
        built.add(name, str(media[name]))
    return built


def test_excerpt_ranks_its_source_first_at_its_offset(index: DejavuIndex, media: dict[str, Path]) -> None:
    matches = index.query(str(media["excerpt"]))
    assert set(matches) == {"r0", "r1", "r2", "r3", "r4", "r1_copy"}  # every indexed video, hit or not
    unrelated = max(matches[name].score for name in ("r0", "r2", "r3", "r4"))
    assert matches["r1"].score >= 5 * max(unrelated, 1)
    frame_s = index.config.hop_samples / SAMPLE_RATE
    assert abs(matches["r1"].offset_s - EXCERPT_START_S) <= frame_s
    assert matches["r1"].offset_frames == round(matches["r1"].offset_s / frame_s)
    scores = index.scores(str(media["excerpt"]))
    assert scores == {name: float(match.score) for name, match in matches.items()}


def test_identical_audio_is_stored_once_and_both_videos_score(index: DejavuIndex, media: dict[str, Path]) -> None:
    matches = index.query(str(media["excerpt"]))
    assert matches["r1_copy"] == matches["r1"]
    timings = index.timings()
    assert (timings["videos_indexed"], timings["songs_stored"]) == (6, 5)
    assert timings["index_audio_s"] == pytest.approx(6 * RECORDING_S, abs=0.1)
    assert timings["queries"] >= 1 and timings["query_s"] > 0
    assert set(timings["index_s_per_video"]) == set(matches)


def test_a_recording_matches_itself_and_settings_are_restored(index: DejavuIndex, media: dict[str, Path]) -> None:
    matches = index.query(str(media["r3"]))
    assert max(matches, key=lambda name: matches[name].score) == "r3"
    assert matches["r3"].offset_frames == 0
    # the published module settings, and scipy's filter, are back once Dejavu has run
    assert (dejavu_fingerprint.PEAK_NEIGHBORHOOD_SIZE, dejavu_fingerprint.CONNECTIVITY_MASK) == (10, 2)
    assert dejavu_fingerprint.maximum_filter is maximum_filter


@pytest.mark.parametrize("radius", [1, 3, 20])
@pytest.mark.parametrize("shape", [(2049, 43), (2049, 300), (50, 2049), (60, 60), (2049, 20), (4, 300), (2049, 1)])
@pytest.mark.parametrize("values", ["continuous", "ties", "silence"])
def test_diamond_filter_equals_scipys(radius: int, shape: tuple[int, int], values: str) -> None:
    """The same array as scipy's maximum filter, borders and ties included; shapes no wider than the
    footprint (2049 x 20, 4 x 300) exercise the hand-over to scipy, whose border differs there."""
    rng = np.random.default_rng(radius * 1000 + shape[1])
    array = rng.normal(0.0, 10.0, shape)
    if values == "ties":
        array = np.round(array / 5.0)
    elif values == "silence":
        array[array < 5.0] = 0.0  # mostly zeros, as silent spectrogram regions after Dejavu's log
    footprint = iterate_structure(generate_binary_structure(2, 1), radius)
    expected = maximum_filter(array, footprint=footprint)
    assert np.array_equal(diamond_maximum_filter(array, footprint=footprint), expected)


def test_diamond_filter_leaves_other_footprints_to_scipy() -> None:
    array = np.random.default_rng(3).normal(size=(200, 200))
    square = iterate_structure(generate_binary_structure(2, 2), 4)
    assert np.array_equal(diamond_maximum_filter(array, footprint=square), maximum_filter(array, footprint=square))
    assert np.array_equal(
        diamond_maximum_filter(array, footprint=square, mode="constant"),
        maximum_filter(array, footprint=square, mode="constant"),
    )


@pytest.mark.parametrize("name", ["r1", "r4", "excerpt"])
def test_fast_peak_filter_gives_dejavus_hashes(media: dict[str, Path], name: str) -> None:
    samples = dejavu_samples(media[name])
    fast = dejavu_hashes(samples, DejavuConfig(fast_peak_filter=True))
    assert len(fast) > 1000 and fast == dejavu_hashes(samples, DejavuConfig(fast_peak_filter=False))


def test_workers_index_what_one_process_indexes(index: DejavuIndex, media: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(np.random.default_rng(1).bytes(4096))
    database = {name: str(media[name]) for name in ("r0", "r1")} | {"corrupt": str(bad)}
    database |= {name: str(media[name]) for name in ("r2", "r3", "r4", "r1_copy")}
    with PostgresCluster() as other:
        method = DejavuMethod(other, DejavuConfig(workers=2))
        failures = method.index(database, progress=False)
        assert set(failures) == {"corrupt"}
        assert method.query("excerpt", str(media["excerpt"])) == index.scores(str(media["excerpt"]))
        timings = method.timings
    assert (timings["videos_indexed"], timings["songs_stored"], timings["workers"]) == (6, 5, 2)
    assert timings["hashes_stored"] == index.timings()["hashes_stored"]


def test_the_digest_is_made_only_where_the_index_stores_it(media: dict[str, Path]) -> None:
    """Queries and the locator fingerprint through `file_hashes` too, without the SHA-1 only songs keep."""
    item, config = ("r1", str(media["r1"])), DejavuConfig()
    stored, bare = file_hashes(item, config, None, 60.0), file_hashes(item, config, None, 60.0, content=False)
    assert bare.content is None and stored.content is not None and len(stored.content) == 40
    assert bare.hashes == stored.hashes and bare.n_samples == stored.n_samples == int(RECORDING_S * SAMPLE_RATE)
    copy = file_hashes(("r1_copy", str(media["r1_copy"])), config, None, 60.0)
    assert copy.content == stored.content  # other bytes, same samples: Dejavu stores one song


def test_bad_file_raises_audio_error_naming_it(index: DejavuIndex, tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(AudioError, match="corrupt.mp4"):
        index.add("corrupt", str(bad))
    with pytest.raises(AudioError, match="corrupt.mp4"):
        index.query(str(bad))
    assert "corrupt" not in index.timings()["index_s_per_video"]


def test_config_defaults_are_the_original_dejavu() -> None:
    cfg = DejavuConfig()
    assert (cfg.fan_value, cfg.peak_neighborhood_size, cfg.connectivity_mask) == (15, 20, "diamond")
    assert (cfg.amp_min, cfg.window_size, cfg.overlap_ratio) == (10, 4096, 0.5)
    assert cfg.module_settings()["CONNECTIVITY_MASK"] == 1
    fork = from_section(
        DejavuConfig, {"fan_value": 5, "peak_neighborhood_size": 10, "connectivity_mask": "square"}, "dejavu"
    )
    assert fork.module_settings()["CONNECTIVITY_MASK"] == 2


def test_config_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValueError, match="dejavu.fan_vaule"):
        from_section(DejavuConfig, {"fan_vaule": 15}, "dejavu")
    with pytest.raises(ValueError, match="connectivity_mask"):
        DejavuConfig(connectivity_mask="round")
    with pytest.raises(ValueError, match="fingerprint_reduction"):
        DejavuConfig(fingerprint_reduction=19)
