"""Tests of the FIVR evaluation protocol against hand-computed cases."""

from __future__ import annotations

import json
import random
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from ausil_lib.core.formats import write_annotations, write_ids, write_results
from ausil_lib.retrieval.evaluation import (
    RECALL_LEVELS,
    EvaluationResult,
    average_precision,
    evaluate,
    evaluate_files,
    interpolated_pr,
    micro_average_precision,
    query_ap_path,
    rank_videos,
    read_query_ap,
    restrict_relevant,
    speed_factor_results,
    write_unavailable_metrics,
)

# Shared small case. Dataset: q, a, b, c, d, e, f (7 ids). "zz" is not in the dataset.
# Relevant to q: a, c, d (d never appears in the results).
DATASET = {"q", "a", "b", "c", "d", "e", "f"}
RELEVANT = {"a", "c", "d"}
SIMS = {"q": 1.0, "zz": 0.95, "a": 0.9, "b": 0.8, "c": 0.7}
# Ranking after dropping q (self) and zz (not in dataset): a(R), b(N), c(R).
# AP = (1/1 + 2/3) / 3 = 5/9   (d missing -> contributes 0, but n = 3)
AP_SMALL = (Fraction(1, 1) + Fraction(2, 3)) / 3
# PR by hand. y_target = [1,0,1] + [1] (d missing) + [0,0,0] (pad to 7); scores [.9,.8,.7,0,0,0,0]
# thresholds .9: P=1,   R=1/3 | .8: P=1/2, R=1/3 | .7: P=2/3, R=2/3 | 0: P=3/7, R=1 | end: P=1, R=0
# max P over R >= r:  r in [0, 1/3] -> 1 ; r in (1/3, 2/3] -> 2/3 ; r in (2/3, 1] -> 3/7
# levels 0.00..0.30 (7 levels) -> 1, 0.35..0.65 (7) -> 2/3, 0.70..1.00 (7) -> 3/7
PR_SMALL = np.array([1.0] * 7 + [2 / 3] * 7 + [3 / 7] * 7)


def test_recall_levels() -> None:
    assert RECALL_LEVELS.shape == (21,)
    assert RECALL_LEVELS[0] == 0.0 and RECALL_LEVELS[-1] == 1.0
    np.testing.assert_allclose(np.diff(RECALL_LEVELS), 0.05)


def test_rank_excludes_query_even_with_highest_score_and_non_dataset_ids() -> None:
    ranked = rank_videos("q", SIMS, DATASET)
    assert ranked == [("a", 0.9), ("b", 0.8), ("c", 0.7)]


def test_ap_hand_computed_with_missing_relevant() -> None:
    ranked = [video for video, _ in rank_videos("q", SIMS, DATASET)]
    assert average_precision(ranked, RELEVANT) == pytest.approx(float(AP_SMALL))  # 5/9


def test_relevant_missing_from_results_counts_as_never_retrieved() -> None:
    # Same ranking a(R), b(N), c(R); with n = 2 (only a, c relevant): AP = (1/1 + 2/3)/2 = 5/6.
    # Adding d (relevant, never retrieved) makes n = 3 and AP = 5/9: the sum is unchanged.
    assert average_precision(["a", "b", "c"], {"a", "c"}) == pytest.approx(5 / 6)
    assert average_precision(["a", "b", "c"], {"a", "c", "d"}) == pytest.approx(5 / 9)


def test_self_match_does_not_count_as_a_hit() -> None:
    # If q were kept it would be rank 1 and push a to rank 2. With q removed, ranking a(R), b(N):
    # AP = (1/1) / 1 = 1. With q kept (wrongly) it would be (1/2)/1 = 1/2.
    result = evaluate({"q": {"DA": ["a"]}}, {"q": {"q": 1.0, "a": 0.5, "b": 0.4}}, ["DA"], DATASET)
    assert result.ap["q"] == pytest.approx(1.0)


def test_non_dataset_ids_are_ignored_in_ranking() -> None:
    # "x1", "x2" (not in dataset) outrank a. Ignored -> ranking a(R), b(N): AP = 1.
    # If they counted, a would be rank 3 -> AP = 1/3.
    sims = {"x1": 0.99, "x2": 0.98, "a": 0.5, "b": 0.4}
    result = evaluate({"q": {"DA": ["a", "x1"]}}, {"q": sims}, ["DA"], DATASET)
    assert result.ap["q"] == pytest.approx(1.0)


def test_ties_broken_by_id_independent_of_insertion_order() -> None:
    # a, b, c all at 0.5 -> ranking by id: a, b, c. Relevant {c}: AP = (1/3)/1 = 1/3.
    forward = {"a": 0.5, "b": 0.5, "c": 0.5}
    backward = {"c": 0.5, "b": 0.5, "a": 0.5}
    assert [v for v, _ in rank_videos("q", backward, DATASET)] == ["a", "b", "c"]
    ap_forward = evaluate({"q": {"DA": ["c"]}}, {"q": forward}, ["DA"], DATASET).ap["q"]
    ap_backward = evaluate({"q": {"DA": ["c"]}}, {"q": backward}, ["DA"], DATASET).ap["q"]
    assert ap_forward == ap_backward == pytest.approx(1 / 3)


def test_rank_refuses_non_finite_similarity() -> None:
    with pytest.raises(ValueError, match="not finite"):
        rank_videos("q", {"a": float("nan")}, DATASET)


def test_average_precision_empty_relevant_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        average_precision(["a"], set())


def test_ap_matches_sklearn_when_everything_relevant_is_retrieved() -> None:
    # Independent check: with distinct scores and every relevant video ranked, Eq. 7 equals
    # sklearn's step-wise average precision.
    rng = random.Random(0)
    for _ in range(20):
        ids = [f"v{i:02d}" for i in range(30)]
        sims = {video: rng.random() for video in ids}
        relevant = set(rng.sample(ids, rng.randint(1, 10)))
        ranked = rank_videos("q", sims, set(ids))
        expected = average_precision_score([video in relevant for video, _ in ranked], [sim for _, sim in ranked])
        assert average_precision([v for v, _ in ranked], relevant) == pytest.approx(expected)


def test_pr_curve_hand_computed() -> None:
    curve = interpolated_pr(rank_videos("q", SIMS, DATASET), RELEVANT, len(DATASET))
    assert curve.shape == (21,)
    np.testing.assert_allclose(curve, PR_SMALL)
    assert np.all(np.diff(curve) <= 0)  # interpolated precision never increases with recall


def test_pr_curve_uses_reference_recall_levels_quirk() -> None:
    # 20 relevant r00..r19, ranking: 3 relevant, 10 irrelevant, then 17 relevant; dataset also
    # holds the query (31 ids, one padded 0). Recall 3/20 == 0.15 is *below* the reference level
    # 3 * 0.05 = 0.15000000000000002, so at that level only points with recall >= 4/20 count:
    # precisions (3+j)/(13+j), j = 1..17, and 20/31 at the padding -> max = 20/30 = 2/3.
    # At level 0.10 (= 2/20 exactly) the top-3 points count -> precision 1.
    relevant = [f"r{i:02d}" for i in range(20)]
    irrelevant = [f"n{i:02d}" for i in range(10)]
    order = relevant[:3] + irrelevant + relevant[3:]
    sims = {video: 1.0 - rank / 100 for rank, video in enumerate(order)}
    dataset = set(order) | {"q"}
    curve = interpolated_pr(rank_videos("q", sims, dataset), set(relevant), len(dataset))
    assert curve[2] == pytest.approx(1.0)
    assert curve[3] == pytest.approx(2 / 3)


def test_pr_curve_pads_to_dataset_size() -> None:
    # One query, ranking a(R) only, relevant {a}; dataset size 4 -> y = [1, 0, 0, 0],
    # scores [.9, 0, 0, 0]: points (P=1, R=1), (P=1/4, R=1) -> curve is 1 everywhere.
    # With relevant {a, b} (b missing): y = [1, 1, 0, 0], scores [.9, 0, 0, 0]:
    # (.9: P=1, R=1/2), (0: P=2/4, R=1) -> 1 up to 0.50, 1/2 from 0.55.
    ranked = [("a", 0.9)]
    np.testing.assert_allclose(interpolated_pr(ranked, {"a"}, 4), np.ones(21))
    expected = np.array([1.0] * 11 + [0.5] * 10)
    np.testing.assert_allclose(interpolated_pr(ranked, {"a", "b"}, 4), expected)


def _two_query_case() -> tuple[dict, dict, set[str]]:
    """q is the shared small case (AP 5/9); q2 ranks e(N), f(R): AP = (1/2)/1 = 1/2."""
    annotations = {
        "q": {"DA": ["a", "c", "d"]},
        "e": {"DA": ["f"]},
    }
    results = {"q": dict(SIMS), "e": {"e": 2.0, "q": 0.9, "f": 0.3}}
    return annotations, results, DATASET


def test_map_averages_queries() -> None:
    annotations, results, dataset = _two_query_case()
    result = evaluate(annotations, results, ["DA"], dataset)
    # q: 5/9, e: ranking q(N), f(R) -> AP = (1/2)/1 = 1/2 ; mAP = (5/9 + 1/2) / 2 = 19/36
    assert result.ap == pytest.approx({"q": 5 / 9, "e": 1 / 2})
    assert result.map == pytest.approx(19 / 36)
    assert result.n_queries == 2
    assert result.warnings == []
    # e's curve by hand: y = [0, 1] + pad [0]*5, scores [.9, .3, 0...] (dataset size 7)
    # .9: P=0, R=0 | .3: P=1/2, R=1 | 0: P=1/7, R=1 | end: P=1, R=0 -> 1 at r=0, 1/2 after.
    curve_e = np.array([1.0] + [0.5] * 20)
    np.testing.assert_allclose(result.pr_curve, (PR_SMALL + curve_e) / 2)


def test_skipped_queries_produce_warnings() -> None:
    annotations, results, dataset = _two_query_case()
    annotations = {
        **annotations,
        "no_results": {"DA": ["a"]},  # absent from the results
        "outside": {"DA": ["a"]},  # not a dataset id
        "b": {"DA": ["zz"], "ND": ["a"]},  # DA list only holds a non-dataset id -> empty
    }
    results = {**results, "outside": {"a": 1.0}, "b": {"a": 1.0}}
    result = evaluate(annotations, results, ["DA"], dataset)
    assert result.n_queries == 2
    assert set(result.ap) == {"q", "e"}
    assert result.map == pytest.approx(19 / 36)  # unchanged by skipped queries
    assert len(result.warnings) == 3
    joined = "\n".join(result.warnings)
    assert "'no_results'" in joined and "missing from the results" in joined
    assert "'outside'" in joined and "not in the dataset" in joined
    assert "'b'" in joined and "no relevant video" in joined


def test_relevant_labels_union() -> None:
    # ND: a, DS: b, CS: c. Ranking c, a, b.
    # labels ND,DS -> relevant {a, b}: hits at ranks 2, 3 -> AP = (1/2 + 2/3)/2 = 7/12
    # label ND only -> relevant {a}: hit at rank 2 -> AP = 1/2
    annotations = {"q": {"ND": ["a"], "DS": ["b"], "CS": ["c"]}}
    results = {"q": {"c": 0.9, "a": 0.8, "b": 0.7}}
    assert evaluate(annotations, results, ["ND", "DS"], DATASET).map == pytest.approx(7 / 12)
    assert evaluate(annotations, results, ["ND"], DATASET).map == pytest.approx(1 / 2)


def test_no_evaluable_query_raises_with_reasons() -> None:
    with pytest.raises(ValueError, match="no query could be evaluated.*'q'.*missing"):
        evaluate({"q": {"DA": ["a"]}}, {}, ["DA"], DATASET)


def test_bare_string_labels_refused() -> None:
    with pytest.raises(TypeError, match="string"):
        evaluate({"q": {"DA": ["a"]}}, {"q": {"a": 1.0}}, "DA", DATASET)


def test_result_is_frozen_and_json_ready() -> None:
    annotations, results, dataset = _two_query_case()
    result = evaluate(annotations, results, ["DA"], dataset)
    assert isinstance(result, EvaluationResult)
    with pytest.raises(AttributeError):
        result.map = 0.0  # type: ignore[misc]
    summary = json.loads(json.dumps(result.to_dict()))
    assert summary["mAP"] == pytest.approx(19 / 36)
    assert summary["n"] == 2
    assert summary["ap"] == pytest.approx({"q": 5 / 9, "e": 1 / 2})
    assert len(summary["recall"]) == len(summary["precision"]) == 21
    assert summary["warnings"] == []


def test_evaluate_files_writes_summary_metrics_per_query_file_and_pr(tmp_path: Path) -> None:
    annotations, results, dataset = _two_query_case()
    annotations["missing"] = {"DA": ["a"]}
    write_annotations(tmp_path / "annotation.json", annotations)
    write_results(tmp_path / "results.json", results)
    write_ids(tmp_path / "ids.txt", sorted(dataset))
    metrics_path = tmp_path / "out" / "metrics.json"
    pr_path = tmp_path / "out" / "pr.json"

    result = evaluate_files(
        tmp_path / "results.json",
        tmp_path / "annotation.json",
        tmp_path / "ids.txt",
        ["DA"],
        metrics_path=metrics_path,
        pr_path=pr_path,
    )

    assert result.map == pytest.approx(19 / 36)
    metrics = json.loads(metrics_path.read_text())
    # summaries only: every value DVC would show is a number (lists are not shown), at 3 decimals
    assert set(metrics) == {"mAP", "mAP_lo", "mAP_hi", "n", "R@1", "R@10", "uAP", "relevant_labels", "ignore_labels"}
    assert metrics["mAP"] == 0.528  # 19/36 = 0.52777...
    # two queries (AP 5/9, 1/2): a resample's mean is 1/2 (p 1/4), 19/36 (p 1/2) or 5/9 (p 1/4)
    assert (metrics["mAP_lo"], metrics["mAP_hi"]) == (0.5, 0.556)
    assert metrics["n"] == 2
    assert metrics["R@1"] == 0.5 and metrics["R@10"] == 1.0
    assert metrics["uAP"] == 0.4
    assert metrics["relevant_labels"] == ["DA"]
    per_query_path = query_ap_path(tmp_path / "results.json")
    assert per_query_path == tmp_path / "results.ap.json"
    assert read_query_ap(per_query_path) == pytest.approx({"q": 5 / 9, "e": 1 / 2})
    per_query = json.loads(per_query_path.read_text())
    assert per_query["queries"]["e"] == {"ap": pytest.approx(0.5), "hit@1": False, "hit@10": True}
    assert per_query["speed_factors"] == {}
    assert len(per_query["warnings"]) == 1 and "'missing'" in per_query["warnings"][0]
    rows = json.loads(pr_path.read_text())
    assert len(rows) == 21
    assert all(set(row) == {"recall", "precision"} for row in rows)
    np.testing.assert_allclose([row["recall"] for row in rows], RECALL_LEVELS)
    np.testing.assert_allclose([row["precision"] for row in rows], result.pr_curve)
    assert sorted(p.name for p in metrics_path.parent.iterdir()) == ["metrics.json", "pr.json"]


def test_recall_at_k_is_a_hit_rate_and_micro_ap_pools_the_queries() -> None:
    annotations, results, dataset = _two_query_case()
    result = evaluate(annotations, results, ["DA"], dataset)
    # q ranks a(R) first; e ranks q(N) first and f(R) second
    assert result.hits == {"q": {1: True, 10: True}, "e": {1: False, 10: True}}
    assert result.recall_at(1) == pytest.approx(0.5)
    assert result.recall_at(10) == pytest.approx(1.0)
    # pooled, ties by query id: (e,q .9 N) (q,a .9 R) (q,b .8 N) (q,c .7 R) (e,f .3 R); 4 relevant (d unretrieved)
    # -> (1/2 + 2/4 + 3/5) / 4 = 0.4, below mAP 19/36: e's positive scores lower than q's negatives
    assert result.micro_ap == pytest.approx(0.4)


def test_micro_ap_hand_computed_and_refuses_no_relevant() -> None:
    pairs = [(0.5, "q1", "x", True), (0.9, "q2", "y", False), (0.7, "q1", "z", True)]
    # ranking y(N) z(R) x(R); 3 relevant in all (one never retrieved): (1/2 + 2/3) / 3
    assert micro_average_precision(pairs, 3) == pytest.approx((1 / 2 + 2 / 3) / 3)
    with pytest.raises(ValueError):
        micro_average_precision(pairs, 0)


def test_restrict_relevant_moves_other_positives_to_junk() -> None:
    annotations = {"q": {"DA": ["a", "b", "c"], "JUNK": ["j"]}}
    restricted = restrict_relevant(annotations, lambda q, v: v == "b", ["DA"])
    assert restricted == {"q": {"DA": ["b"], "JUNK": ["j", "a", "c"]}}
    assert annotations == {"q": {"DA": ["a", "b", "c"], "JUNK": ["j"]}}  # input untouched
    # ranking a .9, x .8, b .7: b alone relevant, a and c out of the ranking -> x, b -> AP 1/2
    results = {"q": {"a": 0.9, "x": 0.8, "b": 0.7}}
    result = evaluate(restricted, results, ["DA"], ["q", "a", "b", "c", "x", "j"], ignore_labels=["JUNK"])
    assert result.map == pytest.approx(0.5)


def test_speed_factor_results_one_copy_per_query() -> None:
    annotations = {
        "q1": {"DA": ["q1_x0.5", "q1_x2"], "JUNK": []},
        "q2": {"DA": ["q2_x0.5", "q2_x2"], "JUNK": []},
    }
    dataset = ["q1", "q2", "q1_x0.5", "q1_x2", "q2_x0.5", "q2_x2", "n"]
    results = {
        "q1": {"q1_x0.5": 0.9, "n": 0.8, "q1_x2": 0.7, "q2_x2": 0.1},
        "q2": {"n": 0.9, "q2_x2": 0.8, "q2_x0.5": 0.7},
    }
    factors = speed_factor_results(annotations, results, ["DA"], dataset, ["JUNK"])
    assert sorted(factors) == [0.5, 2.0]
    # x0.5: q1 rank 1 (q1_x2 out of the ranking), q2 rank 2 (q2_x2 out) -> (1 + 1/2) / 2
    assert factors[0.5].map == pytest.approx(0.75) and factors[0.5].n_queries == 2
    # x2: q1: q1_x0.5 out -> n, q1_x2: rank 2 ; q2: n, q2_x2: rank 2 -> 1/2
    assert factors[2.0].map == pytest.approx(0.5)
    assert speed_factor_results({"q": {"DA": ["a"]}}, {"q": {"a": 1.0}}, ["DA"], ["q", "a"]) == {}


def test_speed_set_metrics_hold_one_map_per_factor(tmp_path: Path) -> None:
    write_annotations(tmp_path / "annotation.json", {"q1": {"DA": ["q1_x0.5", "q1_x2"]}})
    write_results(tmp_path / "r.json", {"q1": {"q1_x2": 0.9, "q1_x0.5": 0.5, "n": 0.7}})
    write_ids(tmp_path / "ids.txt", ["q1", "q1_x0.5", "q1_x2", "n"])
    evaluate_files(tmp_path / "r.json", tmp_path / "annotation.json", tmp_path / "ids.txt", ["DA"], tmp_path / "m.json")
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["x2"] == pytest.approx(1.0) and metrics["x0.5"] == pytest.approx(0.5)
    per_query = json.loads((tmp_path / "r.ap.json").read_text())
    assert per_query["speed_factors"]["0.5"]["queries"]["q1"]["ap"] == pytest.approx(0.5)
    assert per_query["speed_factors"]["0.5"]["n"] == 1


def test_unavailable_run_has_an_empty_per_query_file(tmp_path: Path) -> None:
    write_unavailable_metrics(tmp_path / "m.json", tmp_path / "pr.json", "absent", ["DA"], ap_path=tmp_path / "a.json")
    assert read_query_ap(tmp_path / "a.json") == {}
    assert json.loads((tmp_path / "a.json").read_text())["note"] == "absent"
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["mAP"] is None and metrics["n"] == 0 and "note" not in metrics  # no string column in DVC


def test_evaluate_files_without_output_paths_writes_nothing(tmp_path: Path) -> None:
    annotations, results, dataset = _two_query_case()
    write_annotations(tmp_path / "annotation.json", annotations)
    write_results(tmp_path / "results.json", results)
    write_ids(tmp_path / "ids.txt", sorted(dataset))
    before = sorted(tmp_path.iterdir())
    result = evaluate_files(tmp_path / "results.json", tmp_path / "annotation.json", tmp_path / "ids.txt", ["DA"])
    assert result.n_queries == 2
    assert sorted(tmp_path.iterdir()) == before


def test_ignored_videos_leave_the_query_dataset() -> None:
    annotations = {"q": {"DA": ["a", "b"], "JUNK": ["j"]}}
    results = {"q": {"j": 0.99, "a": 0.9, "x": 0.8, "b": 0.7}}
    dataset = ["q", "a", "b", "j", "x"]
    # with j ranked: ranks a=2, b=4 -> AP = (1/2 + 2/4) / 2 = 1/2
    assert evaluate(annotations, results, ["DA"], dataset).map == pytest.approx(0.5)
    # j ignored: a=1, x=2, b=3 -> AP = (1/1 + 2/3) / 2 = 5/6
    assert evaluate(annotations, results, ["DA"], dataset, ignore_labels=["JUNK"]).map == pytest.approx(5 / 6)
