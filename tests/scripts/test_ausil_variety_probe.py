"""scripts/ausil_variety_probe.py: which training corpus a probe builds, and how its row joins the table."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from ausil_lib.core.config import load_params

from . import SCRIPTS, load_script


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(SCRIPTS))  # as `python scripts/ausil_variety_probe.py` finds its neighbour
    return load_script("ausil_variety_probe")


@pytest.mark.parametrize(
    "seed_shift, queries_shift, same",
    [(None, None, True), (0, None, True), (None, 0, True), (1, None, False), (None, 1, False)],
    ids=["nothing asked", "params.yaml's seed", "params.yaml's queries", "another seed", "more queries"],
)
def test_only_a_changed_setting_leaves_the_pipelines_corpus(
    probe: ModuleType, seed_shift: int | None, queries_shift: int | None, same: bool
) -> None:
    shipped = load_params().train_corpus
    seed = None if seed_shift is None else shipped.seed + seed_shift
    queries = None if queries_shift is None else shipped.queries_per_recording + queries_shift
    chosen = probe.probe_corpus(shipped, seed, queries)
    # equal to params.yaml's: the probe reads the pipeline's data/train_corpus instead of building one
    assert (chosen == shipped) is same
    assert chosen.seed == shipped.seed + (seed_shift or 0)
    assert chosen.queries_per_recording == shipped.queries_per_recording + (queries_shift or 0)


def test_a_row_joins_the_others_and_replaces_its_own_recipe(probe: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "curve.json"
    curve = load_script("ausil_data_curve")
    curve.add_row(out, "38 queries", {"val_map": 0.9})
    curve.add_row(out, "5 queries", {"val_map": 0.8})
    probe.add_row(out, "train_corpus seed3_q1 + main", {"val_map": 0.97})
    probe.add_row(out, "5 queries", {"val_map": 0.85})  # the same recipe again replaces its row
    rows = json.loads(out.read_text())
    assert sorted(rows) == ["38 queries", "5 queries", "train_corpus seed3_q1 + main"]
    assert rows["5 queries"]["val_map"] == 0.85
    assert not [p for p in tmp_path.iterdir() if p != out]  # written atomically: no temporary file left
