"""Dejavu localisation: the aligned hashes of the best offset difference span the embedded piece, at speed 1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ausil_lib.audio.decode import AudioError
from ausil_lib.cli import main
from ausil_lib.core.config import DejavuConfig, LocalisationConfig
from ausil_lib.core.formats import write_video_list
from ausil_lib.localisation.dejavu import DejavuLocator, dejavu_segment, offset_differences
from ausil_lib.localisation.segments import read_segments

from ..helpers import SR, chords

TOLERANCE_S = 1.5


def _hashes(offsets: dict[str, list[int]]) -> set[tuple[str, int]]:
    return {(digest, at) for digest, ats in offsets.items() for at in ats}


# made-up fingerprints, 0.1 s frames: hashes h0..h5 at query frames 10-30 and h6, h7 at 100, 105 recur in
# the video 40 frames later; x also recurs, 10 frames later, and y's two video offsets give two differences
QUERY = _hashes({"h0": [10], "h1": [12], "h2": [15], "h3": [20], "h4": [25], "h5": [30], "h6": [100], "h7": [105]})
QUERY |= _hashes({"x": [50], "y": [60], "z": [70]})
VIDEO = _hashes({"h0": [50], "h1": [52], "h2": [55], "h3": [60], "h4": [65], "h5": [70], "h6": [140], "h7": [145]})
VIDEO |= _hashes({"x": [60], "y": [0, 90]})


def test_offset_differences_are_dejavus_matches() -> None:
    """Every video offset of a shared hash minus every query offset of it; unshared hashes give nothing."""
    assert sorted(offset_differences({("y", 60), ("z", 70)}, {("Y", 0), ("y", 90), ("x", 1)})) == [(-60, 60), (30, 60)]


def test_hand_checked_segment() -> None:
    """Difference 40 (8 hashes) wins; its offsets 10-30 and 100-105 are 7 s apart, so two clusters: the
    six hashes 1.0-3.0 s (+0.5 s window) are the copy, 4 s later in the video; score 6 of 11 query hashes."""
    (s,) = dejavu_segment(QUERY, VIDEO, 0.1, LocalisationConfig(), window_s=0.5)
    assert (s.query_start, s.query_end) == pytest.approx((1.0, 3.5))
    assert (s.video_start, s.video_end) == pytest.approx((5.0, 7.5))
    assert s.speed == 1.0 and s.score == pytest.approx(6 / 11)


def test_ties_go_to_the_smallest_difference_and_the_video_start_is_clamped() -> None:
    """The same eight hashes also 30 frames before the query's (difference -30 beside +40, 8 each): the tie
    goes to -30, as Dejavu's alignment does, and the video interval starts at 0, not at -2 s."""
    earlier = _hashes({f"h{i}": [q - 30] for i, q in enumerate((10, 12, 15, 20, 25, 30, 100, 105))})
    (s,) = dejavu_segment(QUERY, VIDEO | earlier, 0.1, LocalisationConfig(), window_s=0.5)
    assert (s.query_start, s.query_end, s.video_start) == pytest.approx((1.0, 3.5, 0.0))
    assert s.video_end == pytest.approx(0.5)


def test_too_few_or_too_short_gives_nothing() -> None:
    four = {h for h in VIDEO if h[0] in ("h0", "h1", "h2", "h3")}  # fewer than MIN_ALIGNED aligned hashes
    assert dejavu_segment(QUERY, four, 0.1, LocalisationConfig(), window_s=0.5) == []
    assert dejavu_segment(QUERY, VIDEO, 0.1, LocalisationConfig(min_duration_s=4.0), window_s=0.5) == []
    assert dejavu_segment(QUERY, set(), 0.1, LocalisationConfig()) == []


@pytest.fixture
def locator() -> DejavuLocator:
    return DejavuLocator(DejavuConfig(), LocalisationConfig())


def test_piece_at_ten_seconds(locator: DejavuLocator, make_media) -> None:
    query = chords(20.0, seed=1)
    video = np.concatenate([chords(10.0, seed=2), query[5 * SR : 13 * SR], chords(12.0, seed=3)])
    q, v = make_media("q.wav", query), make_media("v.wav", video)
    (s,) = locator.segments("q", str(q), "v", str(v))
    assert s.speed == 1.0 and 0.0 < s.score <= 1.0
    assert s.query_start == pytest.approx(5.0, abs=TOLERANCE_S) and s.query_end == pytest.approx(13.0, abs=TOLERANCE_S)
    assert s.video_start == pytest.approx(10.0, abs=TOLERANCE_S) and s.video_end == pytest.approx(18.0, abs=TOLERANCE_S)
    assert s.video_start - s.query_start == pytest.approx(5.0, abs=locator.hop_s)  # the offset: 10 s - 5 s


def test_unrelated_clip_gives_nothing(locator: DejavuLocator, make_media) -> None:
    q, v = make_media("q.wav", chords(20.0, seed=1)), make_media("v.wav", chords(30.0, seed=4))
    assert locator.segments("q", str(q), "v", str(v)) == []


def test_two_copies_the_larger_is_found(locator: DejavuLocator, make_media) -> None:
    """Query 2-6 s at 3 s and query 10-18 s at 15 s of one clip: one segment per pair, the larger copy."""
    query = chords(20.0, seed=1)
    video = np.concatenate(
        [chords(3.0, seed=5), query[2 * SR : 6 * SR], chords(8.0, seed=6), query[10 * SR : 18 * SR], chords(3, seed=7)]
    )
    q, v = make_media("q.wav", query), make_media("v.wav", video)
    (s,) = locator.segments("q", str(q), "v", str(v))
    ends = (s.query_start, s.query_end, s.video_start, s.video_end)
    assert ends == pytest.approx((10.0, 18.0, 15.0, 23.0), abs=TOLERANCE_S)


def test_locate_cli_dejavu(tmp_path: Path, make_media) -> None:
    """`ausil baseline-locate --method dejavu` with params.yaml's dejavu section: the piece, and nothing elsewhere."""
    query = chords(20.0, seed=1)
    plain = np.concatenate([chords(10.0, seed=2), query[5 * SR : 13 * SR], chords(12.0, seed=3)])
    write_video_list(tmp_path / "q.txt", {"q": str(make_media("q.wav", query))})
    media = {"plain": make_media("plain.wav", plain), "other": make_media("other.wav", chords(30.0, seed=4))}
    write_video_list(tmp_path / "db.txt", {k: str(p) for k, p in media.items()})
    out = tmp_path / "segments.json"
    argv = ["baseline-locate", "--method", "dejavu", "--queries", str(tmp_path / "q.txt"), "--database"]
    assert main([*argv, str(tmp_path / "db.txt"), "--output", str(out), "--no-progress"]) == 0
    located = read_segments(out)["q"]
    assert located["other"] == []
    (s,) = located["plain"]
    assert (s.query_start, s.query_end, s.video_start) == pytest.approx((5.0, 13.0, 10.0), abs=TOLERANCE_S)


def test_prefetch_in_workers_gives_the_lazy_hashes_and_leaves_bad_files_to_fail_by_name(
    locator: DejavuLocator, make_media, tmp_path: Path
) -> None:
    q, v = make_media("q.wav", chords(20.0, seed=1)), make_media("v.wav", chords(15.0, seed=2))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not media" * 100)
    ahead = DejavuLocator(DejavuConfig(), LocalisationConfig())
    ahead.prefetch({"q": str(q), "bad": str(bad), "v": str(v)}, workers=2)
    assert ahead.hashes("q", "unused: already made") == locator.hashes("q", str(q))
    assert ahead.hashes("v", "unused: already made") == locator.hashes("v", str(v))
    with pytest.raises(AudioError, match="bad.mp4"):
        ahead.hashes("bad", str(bad))
