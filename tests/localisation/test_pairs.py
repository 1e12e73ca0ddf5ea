"""localisation/pairs.py: the pairs a ranking sends to localisation, and every listed pair located."""

from __future__ import annotations

from ausil_lib.localisation.pairs import locate_pairs, top_k_pairs
from ausil_lib.localisation.segments import Segment

RANKING = {"q1": {"a": 0.9, "q1": 1.0, "b": 0.5, "c": 0.5, "gone": 0.99}, "q2": {"b": 0.2}}


def test_the_k_best_ranked_videos_of_the_database_ties_by_id_never_the_query_itself() -> None:
    pairs = top_k_pairs(RANKING, ["q1", "q2", "q3"], ["q1", "a", "b", "c"], k=3)
    assert pairs == {"q1": ["a", "b", "c"], "q2": ["b"], "q3": []}
    assert top_k_pairs(RANKING, ["q1"], ["q1", "a", "b", "c"], k=2) == {"q1": ["a", "b"]}


def test_without_a_ranking_every_other_database_video_is_located() -> None:
    assert top_k_pairs(None, ["q1"], ["q1", "a", "b"], k=1) == {"q1": ["a", "b"]}


def test_each_listed_pair_gets_its_locators_segments_and_an_unmatched_pair_an_empty_list() -> None:
    seen = []

    def segments(qid: str, qpath: str, vid: str, vpath: str) -> list[Segment]:
        seen.append((qid, qpath, vid, vpath))
        return [Segment(1.0, 2.0, 3.0, 4.0, 0.5)] if vid == "a" else []

    located = locate_pairs(segments, {"q": "q.wav"}, {"a": "a.wav", "b": "b.wav"}, {"q": ["a", "b"]}, progress=False)
    assert located == {"q": {"a": [Segment(1.0, 2.0, 3.0, 4.0, 0.5)], "b": []}}
    assert seen == [("q", "q.wav", "a", "a.wav"), ("q", "q.wav", "b", "b.wav")]
