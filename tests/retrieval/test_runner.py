"""The runner resumes an interrupted run from its partial file only when the same method, weights, database
and code made it; anything else scores every query again."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest

from ausil_lib.core import provenance
from ausil_lib.retrieval.runner import resume_key, run_similarity

QUERIES = {"q0": "/q0.wav", "q1": "/q1.wav", "q2": "/q2.wav"}
DATABASE = {"d0": "/d0.wav", "d1": "/d1.wav"}


class Counting:
    """A method that records which queries it was asked, scoring each by its position."""

    name = "counting"

    def __init__(self, label: str = "counting v1", weights: str | None = "w1") -> None:
        self.label, self.weights, self.asked = label, weights, []

    def index(self, database: Mapping[str, str], progress: bool = True) -> dict[str, str]:
        return {}

    def query(self, query_id: str, path: str) -> dict[str, float]:
        self.asked.append(query_id)
        return {d: float(i) for i, d in enumerate(DATABASE)}


def _interrupted(out: Path, method: Counting, done: list[str]) -> None:
    """The partial file a run killed after `done` leaves behind."""
    out.parent.mkdir(parents=True, exist_ok=True)
    stale = {q: {"d0": -1.0, "d1": -1.0} for q in done}
    out.with_name(out.name + ".partial").write_text(json.dumps({**resume_key(method, DATABASE), "results": stale}))


def test_a_matching_partial_file_is_resumed(tmp_path: Path) -> None:
    out = tmp_path / "sims.json"
    _interrupted(out, Counting(), ["q0", "q1"])
    method = Counting()
    timing = run_similarity(method, QUERIES, DATABASE, out, progress=False)
    assert method.asked == ["q2"] and timing["queries_timed"] == 1
    assert json.loads(out.read_text())["q0"]["d0"] == -1.0  # kept from the partial file
    assert not out.with_name("sims.json.partial").exists()


@pytest.mark.parametrize("change", ["label", "weights", "code"])
def test_a_partial_file_of_other_makers_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    out = tmp_path / "sims.json"
    _interrupted(out, Counting(), ["q0", "q1"])
    method = Counting()
    if change == "label":
        method.label = "counting v2"
    elif change == "weights":
        method.weights = "w2"  # a retrained network behind the same model file name
    else:
        copy = tmp_path / "package"
        shutil.copytree(provenance.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
        (copy / "retrieval" / "runner.py").write_text((copy / "retrieval" / "runner.py").read_text() + "\n")
        monkeypatch.setattr(provenance, "PACKAGE", copy)
    run_similarity(method, QUERIES, DATABASE, out, progress=False)
    assert method.asked == list(QUERIES)
    assert json.loads(out.read_text())["q0"]["d0"] == 0.0
