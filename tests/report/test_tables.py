"""Tests of the report module on a small fake pipeline output tree, and of the notebooks run on it."""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from ausil_lib.core.formats import atomic_write_json, write_annotations, write_ids, write_results, write_unavailable
from ausil_lib.core.labels import NOT_AVAILABLE, RELEASED_LABEL
from ausil_lib.report import tables as report
from ausil_lib.retrieval.evaluation import evaluate_files, write_unavailable_metrics

# test: 3 queries; a0/a1 duplicate q0, b0 duplicates q1, c0 duplicates q2; j0 is JUNK for q0.
TEST_IDS = ["q0", "q1", "q2", "a0", "a1", "b0", "c0", "d0", "d1", "j0"]
TEST_ANN = {
    "q0": {"DA": ["a0", "a1"], "JUNK": ["j0"]},
    "q1": {"DA": ["b0"], "JUNK": []},
    "q2": {"DA": ["c0"], "JUNK": []},
}
# test_speed: copies at x0.5 and x2 only; q1's x0.5 copy is JUNK for q0 (as for queries of one recording).
SPEED_IDS = ["q0", "q1", "q0_x0.5", "q0_x2", "q1_x0.5", "q1_x2", "d0", "d1"]
SPEED_ANN = {"q0": {"DA": ["q0_x0.5", "q0_x2"], "JUNK": ["q1_x0.5"]}, "q1": {"DA": ["q1_x0.5", "q1_x2"], "JUNK": []}}
# Hand-made scores of ausil-full-main on test_speed, with the ranking each factor gives:
#   q0, x0.5 (q0_x2 and junk q1_x0.5 ignored): q0_x0.5 first                 -> AP 1
#   q0, x2   (q0_x0.5, q1_x0.5 ignored):       d0, d1, q0_x2                  -> AP 1/3
#   q1, x0.5 (q1_x2 ignored):                  d0, q0_x0.5, q1_x0.5           -> AP 1/3
#   q1, x2   (q1_x0.5 ignored):                d0, q1_x2                      -> AP 1/2
SPEED_SCORES = {
    "q0": {"q0_x0.5": 0.9, "q1_x0.5": 0.95, "d0": 0.8, "d1": 0.6, "q0_x2": 0.5, "q1_x2": 0.2, "q1": 0.1},
    "q1": {"d0": 0.9, "q1_x2": 0.7, "q0_x0.5": 0.5, "q1_x0.5": 0.4, "d1": 0.3, "q0": 0.2, "q0_x2": 0.1},
}
MISSING_RUN = "spectro-tiles"
UNAVAILABLE_RUN = "ausil-released"
RUNS = [
    "dejavu",
    "spectro-slides",
    *(f"ausil-{v}-{b}" for b in ("main", "random") for v in ("full", "mac_w_a", "mac_w", "mac")),
]


def _write_set(root: Path, name: str, ids: list[str], annotations: dict) -> None:
    write_ids(root / "data" / "corpus" / name / "dataset_ids.txt", ids)
    write_annotations(root / "data" / "corpus" / name / "annotation.json", annotations)


def _write_run(root: Path, run: str, set_name: str, scores: dict, timing_extra: dict) -> None:
    """Results, timing, metrics and PR files of one run on one set, as the pipeline writes them."""
    corpus = root / "data" / "corpus" / set_name
    results = root / "results" / run / f"{set_name}.json"
    write_results(results, scores)
    pairs = sum(len(s) for s in scores.values())
    atomic_write_json(
        results.with_name(f"{set_name}.timing.json"),
        {
            "method": run.split("-")[0],
            "label": f"{run} made by a test",
            "queries": len(scores),
            "database": 8,
            "failed": 0,
            "index_s": 1.0,
            "query_s": 0.5,
            "queries_timed": len(scores),
            "pairs": pairs,
            "ms_per_pair": 500 / pairs,
            **timing_extra,
        },
    )
    evaluate_files(
        results,
        corpus / "annotation.json",
        corpus / "dataset_ids.txt",
        ["DA"],
        metrics_path=root / "metrics" / run / f"{set_name}.json",
        pr_path=root / "plots" / run / f"{set_name}.json",
        ignore_labels=["JUNK"],
    )


def _random_scores(rng: random.Random, queries: list[str], ids: list[str]) -> dict:
    return {q: {v: rng.random() for v in ids if v != q} for q in queries}


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    """Pipeline outputs for every run and both sets, except MISSING_RUN; plus reports/ files."""
    root = tmp_path / "root"
    _write_set(root, "test", TEST_IDS, TEST_ANN)
    _write_set(root, "test_speed", SPEED_IDS, SPEED_ANN)
    rng = random.Random(0)
    for run in RUNS:
        extra = {}
        if run == "dejavu":
            extra = {
                "fingerprint_insert_s_per_audio_min": 0.8,
                "index_s_per_video": {"d0": 0.2, "d1": 0.4},
                "hashes_stored": 1234,
                "query_audio_s": 30.0,
            }
        elif run.startswith("spectro"):
            extra = {"fingerprint_s": 2.0, "match_s": 3.0}
        _write_run(root, run, "test", _random_scores(rng, list(TEST_ANN), TEST_IDS), extra)
        speed_scores = SPEED_SCORES if run == "ausil-full-main" else _random_scores(rng, list(SPEED_ANN), SPEED_IDS)
        _write_run(root, run, "test_speed", speed_scores, extra)
    for set_name in ("test", "test_speed"):  # the released model, not fetched: recorded as not available
        results = root / "results" / UNAVAILABLE_RUN / f"{set_name}.json"
        write_unavailable(results, "ausil", RELEASED_LABEL, NOT_AVAILABLE)
        write_unavailable_metrics(
            root / "metrics" / UNAVAILABLE_RUN / f"{set_name}.json",
            root / "plots" / UNAVAILABLE_RUN / f"{set_name}.json",
            NOT_AVAILABLE,
            ["DA"],
        )
    reports = root / "reports"
    atomic_write_json(
        reports / "speed.json",
        {
            "date": "2026-01-01 00:00 UTC",
            "decode_s_per_100s": 0.1,
            "machine": {"cpu": "Test CPU", "cpu_cores": 2, "torch_threads": 2, "device": "cpu", "torch": "2.x"},
            "time_steps": {
                "1000": {
                    "segments": 99,
                    "logmel_s_per_100s": 0.05,
                    "backbone_s_per_100s": 0.7,
                    "backbone_segments_per_s": 140.0,
                    "end_to_end_s_per_100s": 0.85,
                    "end_to_end_x_real_time": 117.6,
                }
            },
        },
    )
    atomic_write_json(
        reports / "corpus_summary.json",
        {"benchmarks": {"test": {"queries": 3, "database": 9}, "test_speed": {"queries": 2, "database": 7}}},
    )
    atomic_write_json(
        reports / "training_main.json",
        [
            {"step": 0, "loss": None, "val_map": 0.5, "seconds": 0.0},
            {"step": 1, "loss": 0.9, "seconds": 1.0},
            {"step": 2, "loss": 0.7, "val_map": 0.6, "seconds": 2.0},
        ],
    )
    atomic_write_json(
        reports / "training_main.meta.json",
        {
            "backbone": "trained backbone models/backbone.pt",
            "steps": 2,
            "seconds": 2.0,
            "best_step": 2,
            "val_map": 0.6,
            "triplets": {"triplets": 10, "positive_pairs": 4},
            "config": {"gamma": 1.0},
        },
    )
    atomic_write_json(
        reports / "backbone_training.json",
        [{"step": 1, "loss": 3.0, "seconds": 1.0}, {"step": 2, "loss": 2.5, "seconds": 2.0}],
    )
    (root / "params.yaml").write_text("features:\n  time_step_ms: 1000\ntraining:\n  gamma: 1.0\n", encoding="utf-8")
    return root


def _metric(root: Path, run: str, set_name: str) -> float:
    return json.loads((root / "metrics" / run / f"{set_name}.json").read_text(encoding="utf-8"))["mAP"]


def test_main_table_equals_metrics_files_and_marks_missing_run(fake_root: Path) -> None:
    table = report.main_table(fake_root)
    assert list(table.index) == list(report.MAIN_ROWS)
    for method, run in report.MAIN_ROWS.items():
        for set_name in ("test", "test_speed"):
            value = table.loc[method, f"this run, {set_name} mAP"]
            if run in (MISSING_RUN, UNAVAILABLE_RUN):
                assert math.isnan(value)
            else:
                assert value == pytest.approx(_metric(fake_root, run, set_name), abs=0)
    shown = report.formatted(table)
    assert shown.loc["Spectro Tiles", "this run, test mAP"] == report.NOT_RUN
    assert shown.loc["AuSiL, random backbone (control)", "paper, SVD_a (different dataset)"] == "–"
    assert table.loc[RELEASED_LABEL, "note"] == NOT_AVAILABLE and table.loc["AuSiL", "note"] == ""


def test_paper_numbers_present_and_labelled(fake_root: Path) -> None:
    table = report.main_table(fake_root)
    fivr, svd = "paper, FIVR-200K_a (different dataset)", "paper, SVD_a (different dataset)"
    assert table.loc["Dejavu", fivr] == 0.726 and table.loc["AuSiL", svd] == 0.940
    assert table.loc["Spectro Tiles", fivr] == 0.510  # paper numbers stay when the run is missing
    speed = report.speed_table(fake_root)
    assert speed.loc["AuSiL", "paper, FIVR-200K_a speed (different dataset)"] == 0.865
    assert speed.loc["Dejavu", "paper, SVD_a speed (different dataset)"] == 0.741
    assert speed.loc["Spectro Slides", "paper, SVD_a speed (different dataset)"] == "≈ 0"  # no number published
    assert "near-zero" in speed.loc["Spectro Slides", "paper note"]
    components = report.components_table(fake_root)
    assert list(components.index) == ["MAC", "MAC + W", "MAC + W + A", "AuSiL"]
    assert components.loc["MAC", "paper, FIVR-5K_a (different dataset)"] == 0.656
    assert components.loc["MAC", "this run, random backbone, test mAP"] == _metric(
        fake_root, "ausil-mac-random", "test"
    )
    assert report.PAPER_TIMING["similarity_ms_per_pair"] == 3.0


def test_per_factor_map_hand_made_case(fake_root: Path) -> None:
    assert report.speed_factors(fake_root) == [0.5, 2.0]
    table = report.per_factor_map(fake_root, "ausil-full-main", [0.5, 2.0, 1.5])
    assert table.loc[0.5, "mAP"] == pytest.approx((1 + 1 / 3) / 2)
    assert table.loc[2.0, "mAP"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert table.loc[0.5, "n_queries"] == 2
    assert math.isnan(table.loc[1.5, "mAP"])  # no copy at x1.5 in the corpus
    assert report.per_factor_map(fake_root, MISSING_RUN)["mAP"].isna().all()
    wide = report.per_factor_table(fake_root)
    assert wide.loc[2.0, "AuSiL"] == pytest.approx(5 / 12)
    assert wide["Spectro Tiles"].isna().all()
    assert list(wide[report.PER_FACTOR_N]) == [2, 2]


def test_sweeps_timings_and_curves(fake_root: Path) -> None:
    steps = report.time_step_table(fake_root)
    assert list(steps.index) == [1000, 500, 250, 125]
    assert steps.loc[1000, "run"] == "ausil-full-main"  # the default run, at its params.yaml value
    assert math.isnan(steps.loc[500, "this run, test mAP"])
    assert "this run, test_speed mAP" not in steps.columns  # the sweeps score test only
    assert "dvc repro time_step_sweep" in report.ablation_note(fake_root, "time_step")
    assert "No time step (ms) sweep was run" in report.ablation_note(fake_root, "time_step")
    gamma = report.gamma_table(fake_root)
    assert gamma.loc[1.0, "this run, test mAP"] == _metric(fake_root, "ausil-full-main", "test")
    timing = report.timing_table(fake_root)
    assert timing.loc["Dejavu", "per query (s)"] == pytest.approx(0.5 / 3)
    assert timing.loc["Spectro Slides", "decode + features / fingerprints (s)"] == 2.0
    ausil = timing.loc["AuSiL"]
    assert ausil["all queries (s)"] == 0.5 and math.isnan(ausil["decode + features / fingerprints (s)"])
    pairs = sum(len(v) for v in json.loads((fake_root / "results/ausil-full-main/test.json").read_text()).values())
    paper = timing.loc["AuSiL, the paper's GTX 1070 figures (paper machine)"]
    assert paper["all queries (s)"] == pytest.approx(3 * pairs / 1000)
    assert RELEASED_LABEL not in timing.index and "Spectro Tiles" not in timing.index
    assert report.cost_findings(fake_root)[0].startswith("Total cost of the test set")
    assert "2 values" in report.timing_details(fake_root, "dejavu").loc["index_s_per_video", "test"]
    curves = report.training_curves(fake_root)
    assert set(curves["curve"]) == {
        "AuSiL similarity network (main backbone)",
        "backbone training (no AudioSet weights)",
    }
    assert "trained backbone" not in report.backbone_note(fake_root)  # the run's own label comes first
    assert "ausil-full-main made by a test" in report.backbone_note(fake_root)


def test_tables_on_an_empty_root(tmp_path: Path) -> None:
    assert report.main_table(tmp_path)["this run, test mAP"].isna().all()
    assert report.findings(tmp_path) == [] and report.comparison_table(tmp_path).empty
    assert report.per_factor_table(tmp_path).empty
    assert report.pr_curves(tmp_path, "test").empty
    report.plot_training(report.training_curves(tmp_path))
    report.plot_pr_curves(report.pr_curves(tmp_path, "test"), "empty")
    assert report.timing_table(tmp_path).empty and report.cost_findings(tmp_path) == []
    report.plot_accuracy_cost(tmp_path)


@pytest.mark.slow
def test_run_notebooks_writes_executed_notebooks_and_html(fake_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "rendered"
    written = report.run_notebooks(fake_root, out)
    names = sorted(p.name for p in written)
    stems = [
        "ablations",
        "breakdowns",
        "index",
        "localisation",
        "main_comparison",
        "real_datasets",
        "speed_transformations",
        "timings",
    ]
    assert names == sorted([f"{s}.ipynb" for s in stems] + [f"{s}.html" for s in stems])
    assert all(p.is_file() for p in written)
    main = nbformat.read(out / "main_comparison.ipynb", as_version=4)
    images = [
        o for c in main.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})
    ]
    assert len(images) == 2  # one figure per PR cell, not duplicated by pyplot
    html = (out / "main_comparison.html").read_text(encoding="utf-8")
    assert "data:image/png;base64" in html and report.NOT_RUN in html
    assert "<title>Main comparison (paper Table VIII, Fig. 2)</title>" in html
    assert "Key findings" in html and "params.yaml sha256" in html
    assert "import tables as report" not in html and "report.formatted" not in html  # code hidden
    index = (out / "index.html").read_text(encoding="utf-8")
    assert all(f'href="{s}.html"' in index for s in stems if s != "index")
    timings = nbformat.read(out / "timings.ipynb", as_version=4)
    injected = [c for c in timings.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and 'root = "."' in injected[0].source
    for path in written:  # no directory of this machine in a rendering that gets committed
        text = path.read_text(encoding="utf-8")
        assert str(fake_root.resolve()) not in text and str(tmp_path) not in text, path.name


def test_real_dataset_table(tmp_path: Path) -> None:
    assert report.real_dataset_table(tmp_path).empty  # nothing run: an empty table, not an error
    for task, labels, value in (("isvr", ["ND", "DS", "CS", "IS"], 0.2), ("audio", ["DA"], 0.7)):
        atomic_write_json(
            tmp_path / "metrics" / "real" / "fivr200k" / "ausil" / f"{task}.json",
            {"mAP": value, "n": 3, "relevant_labels": labels},
        )
    table = report.real_dataset_table(tmp_path)
    assert list(table.index) == [("fivr200k", "audio", "ausil"), ("fivr200k", "isvr", "ausil")]
    assert table.loc[("fivr200k", "audio", "ausil"), "paper AuSiL"] == report.PAPER_METHODS["AuSiL"]["FIVR-200K_a"]
    assert table.loc[("fivr200k", "isvr", "ausil"), "relevant labels"] == "ND,DS,CS,IS"
    lines = report.real_findings(tmp_path)
    assert lines == [
        "fivr200k, audio: ausil mAP 0.700 (3 queries); the paper's AuSiL: 0.701.",
        "fivr200k, isvr: ausil mAP 0.200 (3 queries); the paper's AuSiL: 0.232.",
    ]
    assert "not evaluated" in report.real_findings(tmp_path / "empty")[0]


def test_cross_corpus_table_reads_its_own_collection(tmp_path: Path) -> None:
    assert report.cross_corpus_table(tmp_path).empty
    for run, value in (("ausil-full-main", 0.5), ("ausil-mac_w-main", 0.25)):
        for set_name in report.CROSS_SETS:
            atomic_write_json(tmp_path / "metrics" / report.CROSS / run / f"{set_name}.json", {"mAP": value, "n": 2})
    atomic_write_json(tmp_path / "metrics" / "dejavu" / "test.json", {"mAP": 0.9, "n": 3})
    table = report.cross_corpus_table(tmp_path)
    assert table["run"].tolist() == ["ausil-full-main", "ausil-mac_w-main"]
    assert table[report.run_column("val_speed", "cross-corpus")].tolist() == [0.5, 0.25]
    assert report.CROSS not in report.discover_runs(tmp_path)  # a collection, not a run of the main tables
    assert report.main_table(tmp_path).loc["Dejavu", report.run_column("test")] == 0.9


def test_backbone_probe_table(tmp_path: Path) -> None:
    assert report.backbone_probe_table(tmp_path).empty
    row = {"backbone": "trained", "overrides": {}, "commit": "abc1234", "val_mac_w": 0.8}
    rows = {
        "steps@200": {**row, "name": "steps", "steps": 200},
        "steps@100": {**row, "name": "steps", "steps": 100, "val_mac_w": 0.7},
        "untrained@0": {**row, "name": "untrained", "steps": 0, "backbone": "untrained", "overrides": {"x": 1}},
        "reset@0": {**row, "name": "reset", "steps": 0, "weights": "models/b.pt", "bn_identity": True},
    }
    atomic_write_json(tmp_path / report.PROBE_FILE, rows)
    table = report.backbone_probe_table(tmp_path)
    assert table[["recipe", "steps"]].values.tolist() == [
        ["reset", 0],
        ["steps", 100],
        ["steps", 200],
        ["untrained", 0],
    ]
    assert table["val, MAC + W"].tolist() == [0.8, 0.7, 0.8, 0.8]
    reset = "weights models/b.pt as of commit abc1234, BatchNorm running statistics reset to mean 0, variance 1"
    assert table[report.PROBE_RECIPE].tolist() == [reset, "-", "-", "x=1"]  # no params.yaml: the overrides
    assert math.isnan(table["cross-corpus val, MAC + W"].iloc[0])  # a column the script did not fill


@pytest.mark.parametrize(
    ("temperature", "expected"),
    [
        (0.05, ["-", "temperature=0.1", "features.time_step_ms=250"]),
        (0.1, ["temperature=0.05", "-", "temperature=0.05, features.time_step_ms=250"]),
    ],
)
def test_backbone_probe_recipe_against_todays_params(tmp_path: Path, temperature: float, expected: list[str]) -> None:
    """A trained row's stored recipe is compared with params.yaml as it is now, so that a probe of an
    older default says what it differs in after the default moved (budget_s, a safety cap, is ignored);
    overrides of other sections are named as well."""
    (tmp_path / "params.yaml").write_text(f"backbone_training:\n  temperature: {temperature}\n", encoding="utf-8")
    config = {"temperature": 0.05, "learning_rate": 0.001, "budget_s": 99}
    row = {"backbone": "trained", "commit": "abc1234", "steps": 200}
    rows = {
        "low@200": {**row, "name": "low", "overrides": {"temperature": 0.05}, "config": config},
        "old@200": {**row, "name": "old", "overrides": {}, "config": {**config, "temperature": 0.1}},
        # another section's override is not in the stored backbone_training recipe: named from the overrides
        "step@200": {**row, "name": "step", "overrides": {"features.time_step_ms": 250}, "config": config},
    }
    atomic_write_json(tmp_path / report.PROBE_FILE, rows)
    assert report.backbone_probe_table(tmp_path)[report.PROBE_RECIPE].tolist() == expected


def _write_ap(root: Path, run: str, set_name: str, ap: dict[str, float]) -> None:
    summary = {"mAP": sum(ap.values()) / len(ap), "n": len(ap)}
    atomic_write_json(root / "metrics" / run / f"{set_name}.json", summary)
    atomic_write_json(
        root / "results" / run / f"{set_name}.ap.json", {"queries": {q: {"ap": a} for q, a in ap.items()}}
    )


def test_main_table_ci_and_findings_from_synthetic_metrics(tmp_path: Path) -> None:
    ausil = {"q0": 0.5, "q1": 0.7, "q2": 0.6, "q3": 0.4}
    _write_ap(tmp_path, "ausil-full-main", "test", ausil)
    _write_ap(tmp_path, "dejavu", "test", {q: v + 0.2 for q, v in ausil.items()})  # better on every query
    _write_ap(tmp_path, "ausil-mac_w-main", "test", ausil)
    _write_ap(tmp_path, "ausil-mac-main", "test", {"q0": 0.4, "q1": 0.8, "q2": 0.6, "q3": 0.4})  # mixed
    table = report.main_table(tmp_path)
    assert table.loc["AuSiL", "this run, test mAP"] == pytest.approx(0.55)
    low, high = (float(x) for x in table.loc["AuSiL", "this run, test 95 % CI"].split("–"))
    assert low < 0.55 < high
    assert report.formatted(table).loc["Spectro Tiles", "this run, test 95 % CI"] == report.NOT_RUN
    assert not any("_" in str(c) for c in report.corpus_table(report.NOTEBOOKS_DIR.parent).columns)

    comparisons = report.comparison_table(tmp_path)
    dejavu = comparisons[(comparisons["a"] == "Dejavu") & (comparisons["set"] == "test")]
    assert dejavu["mAP(a) − mAP(b)"].item() == pytest.approx(0.2)
    assert dejavu["verdict"].item() == "Dejavu better"
    assert len(comparisons) == 2  # only comparisons whose two runs were made

    lines = report.findings(tmp_path)
    assert lines[0].startswith("Highest test mAP: Dejavu, 0.750")
    assert lines[0].endswith("4 queries); ahead of every other row (each paired CI excludes 0).")
    assert "On test, Dejavu beats AuSiL by 0.20 (95 % CI 0.20–0.20, 4 queries)." in lines
    step = [line for line in lines if "MAC + W (main backbone)" in line]
    assert len(step) == 1 and "no significant difference" in step[0]  # mean 0 difference, CI spans 0
    assert report.findings(tmp_path, groups=["ablation"]) == step
    assert "- On test, Dejavu beats" in report.findings_markdown(lines)
    assert report.NOT_RUN in report.findings_markdown(report.findings(tmp_path / "empty"))


def test_provenance_and_page_title(fake_root: Path) -> None:
    line = report.provenance(fake_root)
    digest = hashlib.sha256((fake_root / "params.yaml").read_bytes()).hexdigest()[:12]
    assert f"params.yaml sha256 `{digest}`" in line
    assert "machine: Test CPU, 2 cores, device cpu" in line
    assert "backbone: " in line and "ausil-full-main made by a test" in line  # the run's own label
    assert "not a git checkout" in line  # fake_root is no repository: said, not guessed
    assert str(fake_root) not in line
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("text\n\n# Title (x)\nmore")])
    assert report.page_title(notebook) == "Title (x)"


@pytest.mark.parametrize("labelled", [False, True])
def test_shown_hides_row_numbers_only(labelled: bool) -> None:
    frame = pd.DataFrame({"set": ["test", "test_speed"], "mAP": [0.5, float("nan")]})
    if labelled:
        frame = frame.set_index("set")
    html = report.shown(frame).to_html()
    cells = re.findall(r"<th[^>]*>([^<]*)</th>", html)
    assert ("0" in cells) is False  # pandas' row number never shows
    assert ("test_speed" in cells) is labelled  # a labelled index stays as row headers
    assert report.NOT_RUN in html


@pytest.mark.parametrize(
    ("cell", "held"),
    [
        ("0.939–0.990", ["0.939–0.990"]),
        ("difference +0.006 (95 % CI -0.031–0.045)", ["-0.031–0.045"]),
        ("x1.5–2 and 8–20 s queries", []),  # not intervals of two decimals: left to wrap
        ("0.1–0.2 then 0.3–0.4", ["0.1–0.2", "0.3–0.4"]),
    ],
)
def test_rendered_intervals_do_not_break_at_their_dash(cell: str, held: list[str]) -> None:
    page = report.unbroken_intervals(f"<td>{cell}</td>")
    assert re.findall(r'<span style="white-space: nowrap">([^<]*)</span>', page) == held
    assert re.sub(r"<[^>]+>", "", page) == cell  # the text a reader sees is unchanged


def test_ausil_data_curve_table(tmp_path: Path) -> None:
    assert report.ausil_data_curve_table(tmp_path).empty
    row = {"stopped_by": "max_steps", "commit": "abc1234", "val_mac_w": 0.9, "cross_val_mac_w": 0.8}
    rows = {
        "q19": {
            **row,
            "queries": 19,
            "positive_pairs": 150,
            "triplets": {"positive_pairs_kept": 60, "triplets": 900},
            "best_step": 10,
            "val_map": 0.95,
            "cross_val_map": 0.75,
        },
        "q5": {
            **row,
            "queries": 5,
            "positive_pairs": 40,
            "triplets": {"positive_pairs_kept": 12, "triplets": 100},
            "best_step": 20,
            "val_map": 0.85,
            "cross_val_map": 0.85,
        },
    }
    speed = {"cross_val_speed_map": 0.7, "cross_val_speed_mac_w": 0.75}
    rows["q19 cnn_init=identity"] = {**rows["q19"], **speed, "recipe": "cnn_init=identity", "cross_val_map": 0.9}
    atomic_write_json(tmp_path / report.DATA_CURVE_FILE, rows)
    table = report.ausil_data_curve_table(tmp_path)
    assert table["training queries"].tolist() == [5, 19, 19]  # sorted by K, not by the file's order
    assert table["recipe"].tolist() == ["default", "default", "cnn_init=identity"]  # rows without one: default
    assert table["positive pairs kept / annotated"].tolist() == ["12 / 40", "60 / 150", "60 / 150"]
    assert table[report.DATA_CURVE_GAP].tolist() == pytest.approx([0.05, -0.05, 0.1])
    # rows written before the speed set was scored show it as missing, not as zero
    assert table["cross-corpus val_speed, full"].isna().tolist() == [True, True, False]
    assert table["cross-corpus val_speed, MAC + W"].iloc[2] == pytest.approx(0.75)


def test_selected_on_test_table_compares_with_the_pipelines_row_only(tmp_path: Path) -> None:
    """Without the file the table is empty; a row is differenced against the row checked against the
    committed metrics, and with no such row the difference column stays blank."""
    assert report.selected_on_test_table(tmp_path).empty
    ap = {"q0": 1.0, "q1": 0.5, "q2": 0.0}

    def row(scale: float, **extra: object) -> dict:
        scores = {"ap": {q: a * scale for q, a in ap.items()}}
        sets = {s: {v: scores for v in ("mac", "mac_w", "full")} for s in ("test", "test_speed")}
        return {"commit": "abc1234", "sets": sets, **extra}

    path = tmp_path / report.SELECTED_FILE
    atomic_write_json(path, {"other": row(0.5)})
    assert set(report.selected_on_test_table(tmp_path)["test, − pipeline's row"]) == {""}
    hard = {"test": {"hard cases only": 0.25, "others ranked first": 0.9}}
    hard_cases = {"full": hard, "mac_w": {"test": {"hard cases only": None}}}  # null: no query had one
    atomic_write_json(path, {"other": row(0.5), "pipe": row(1.0, pipeline_check={}, hard_cases=hard_cases)})
    table = report.selected_on_test_table(tmp_path).set_index(["descriptors", "similarity"])
    assert table.loc[("other", "AuSiL"), "test mAP"] == pytest.approx(0.25)
    assert table.loc[("other", "AuSiL"), "test, − pipeline's row"].startswith("-0.250 (")
    assert table.loc[("pipe", "AuSiL"), "test, − pipeline's row"] == ""
    assert table.loc[("pipe", "AuSiL"), "test, others ranked first"] == 0.9
    assert math.isnan(table.loc[("pipe", "MAC + W"), "test, hard cases only"])


def test_mac_taps_table(tmp_path: Path) -> None:
    assert report.mac_taps_table(tmp_path).empty
    scores = {"val_mac": 0.7, "val_mac_w": 0.9, "cross_val_mac_w": 0.8, "cross_val_speed_mac_w": 0.4}
    row = {"backbone": "main", "dims": 2528, "commit": "abc1234", **scores}
    rows = {
        "main:zz": {**row, "taps": "zz", "order": 0},  # the file's keys are sorted; the script's order is kept
        "main:aa": {**row, "taps": "aa", "order": 1, "val_mac_w": 0.6},
        "random:zz": {**row, "taps": "zz", "order": 0, "backbone": "random"},
    }
    atomic_write_json(tmp_path / report.TAPS_FILE, rows)
    table = report.mac_taps_table(tmp_path)
    assert table[["backbone", "taps"]].values.tolist() == [["main", "zz"], ["main", "aa"], ["random", "zz"]]
    assert table[report.TAPS_MEAN].tolist() == pytest.approx([0.7, 0.6, 0.7])


def test_training_summary_rounds_wall_time(tmp_path: Path) -> None:
    meta = {"best_step": 10, "seconds": 360.4, "val_map": 0.95983, "triplets": {"triplets": 5}, "config": {"r": 0.1}}
    atomic_write_json(tmp_path / "reports" / "training_main.meta.json", meta)
    shown = report.formatted(report.training_summary(tmp_path))
    assert shown.loc["main", ["seconds", "val map", "triplets: triplets"]].tolist() == ["360", "0.960", "5"]
    assert "config" not in shown.columns
