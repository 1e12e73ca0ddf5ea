"""True segments from a construction log (speed copies scaled) and the VCDB-style scores, by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ausil_lib.localisation.metrics import localisation_metrics, segment_iou
from ausil_lib.localisation.segments import Segment, read_segments, write_segments
from ausil_lib.localisation.truth import clip_truth, corpus_truth, span_pair_truth


def piece(rec: str, a: float, b: float, speed: float = 1.0, role: str = "content") -> dict:
    return {"rec": rec, "src_start": a, "src_end": b, "role": role, "speed": speed}


QUERY = {"clip_id": "q", "pieces": [piece("R", 100.0, 120.0)]}
EMBEDDED = {"clip_id": "e", "pieces": [piece("X", 0.0, 4.0), piece("R", 105.0, 113.0), piece("Y", 3.0, 9.0)]}
SPEED = {"clip_id": "s", "pieces": [piece("R", 100.0, 120.0, 1.5), piece("M", 0.0, 20.0, 1.5, "mix")]}


def test_embedded_piece() -> None:
    assert clip_truth(QUERY, EMBEDDED) == [Segment(5.0, 13.0, 4.0, 12.0, 1.0, 1.0)]


def test_speed_copy_is_scaled() -> None:
    (s,) = clip_truth(QUERY, SPEED)  # the mix piece is background, not content
    assert (s.query_start, s.query_end, s.video_start, s.speed) == (0.0, 20.0, 0.0, 1.5)
    assert s.video_end == pytest.approx(20.0 / 1.5)


def test_corpus_truth_lists_da_pairs(tmp_path: Path) -> None:
    log = tmp_path / "log.json"
    log.write_text(json.dumps({"clips": [QUERY, EMBEDDED, SPEED]}))
    truth = corpus_truth(log, {"q": {"DA": ["e"], "JUNK": ["s"]}})
    assert list(truth["q"]) == ["e"]


def test_metrics_by_hand() -> None:
    true = {"q": {"e": [Segment(5.0, 13.0, 4.0, 12.0)], "s": [Segment(0.0, 20.0, 0.0, 10.0, speed=2.0)]}}
    detected = {
        "q": {
            "e": [Segment(6.0, 13.0, 4.0, 12.0, speed=1.1), Segment(15.0, 18.0, 4.0, 8.0)],  # hit; query misses
            "n": [Segment(0.0, 5.0, 0.0, 5.0)],  # a video without a true pair
        }
    }
    m = localisation_metrics(detected, true)
    assert m["P"] == pytest.approx(1 / 3) and m["R"] == pytest.approx(1 / 2)
    assert m["F1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    # query IoU 7/8, video IoU 1 -> 15/16 for the hit, 0 for the missed speed copy
    assert m["tIoU"] == pytest.approx(15 / 32)
    assert m["dspd"] == pytest.approx(0.1)
    assert segment_iou(detected["q"]["e"][0], true["q"]["e"][0]) == pytest.approx(15 / 16)


def test_segments_round_trip(tmp_path: Path) -> None:
    located = {"q": {"v": [Segment(1.0, 2.5, 3.0, 4.0, 0.7, 1.5)], "w": []}}
    write_segments(tmp_path / "s.json", located)
    assert read_segments(tmp_path / "s.json") == located


def test_span_pairs_both_ways_round() -> None:
    truth = span_pair_truth([("a", "b", (2.0, 10.0), (60.0, 64.0)), ("b", "b", (0.0, 1.0), (5.0, 6.0))])
    assert truth == {
        "a": {"b": [Segment(2.0, 10.0, 60.0, 64.0, 1.0, 2.0)]},  # the query's 8 s play in 4 s of the video
        "b": {"a": [Segment(60.0, 64.0, 2.0, 10.0, 1.0, 0.5)]},  # a video paired with itself is left out
    }
    (instant,) = span_pair_truth([("a", "b", (3.0, 3.0), (7.0, 9.0))])["a"]["b"]
    assert instant.speed == 1.0
