"""Every dvc.yaml stage depends on all the code its `ausil` calls can import, so no edit leaves a stale result."""

from __future__ import annotations

import pytest
import yaml

from .dvc_deps import ROOT, stage_code, subcommand_handlers

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def _body(stage: dict) -> dict:
    return stage.get("do", stage)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_cover_the_code_it_imports(name: str) -> None:
    body = _body(STAGES[name])
    needed = stage_code(body["cmd"])
    declared = {d for d in body.get("deps", []) if isinstance(d, str)}
    assert needed, f"{name}: runs no ausil command?"
    missing = sorted(needed - declared)
    assert not missing, f"dvc.yaml stage {name} imports {missing} but does not depend on them"
    stale = sorted(d for d in declared if d.startswith("ausil_lib/") and d not in needed)
    assert not stale, f"dvc.yaml stage {name} depends on {stale}, which its command never imports"


def test_the_closure_follows_lazy_imports() -> None:
    """The analysis itself: `similarity` reaches the TF reader only through a function-level import."""
    assert "ausil_lib/models/tf_checkpoint.py" in stage_code("ausil similarity --model m.pt")
    assert "ausil_lib/baselines/spectro.py" in stage_code("ausil baseline-similarity --method spectro-slides")
    evaluate = stage_code("ausil evaluate --results r.json")
    assert "ausil_lib/report/tables.py" not in evaluate
    # a module's packages run their __init__.py when it is imported
    assert {"ausil_lib/__init__.py", "ausil_lib/retrieval/__init__.py", "ausil_lib/retrieval/evaluation.py"} <= evaluate
    assert set(subcommand_handlers()) >= {"extract", "similarity", "evaluate", "train", "report", "fetch-weights"}


def test_ausils_own_stages_do_not_depend_on_the_baselines() -> None:
    """An edit of Dejavu or the Spectro methods re-runs their stages, not AuSiL's extraction and training."""
    for name in (
        "features",
        "cross_features",
        "train",
        "train_backbone",
        "benchmark_speed",
        "report",
        "ausil",
        "locate",
    ):
        body = _body(STAGES[name])
        assert not [d for d in stage_code(body["cmd"]) if d.startswith("ausil_lib/baselines/")], name
    assert "ausil_lib/baselines/dejavu.py" in stage_code(_body(STAGES["dejavu"])["cmd"])
    assert "ausil_lib/baselines/spectro.py" in stage_code(_body(STAGES["spectro"])["cmd"])
    assert "ausil_lib/baselines/spectro.py" in stage_code(_body(STAGES["locate_spectro"])["cmd"])
    assert "ausil_lib/models/ausil.py" not in stage_code(_body(STAGES["locate_dejavu"])["cmd"])


def test_every_params_reading_stage_lists_params() -> None:
    for name, stage in STAGES.items():
        body = _body(stage)
        if "ausil " in body["cmd"] and not body["cmd"].strip().startswith("ausil dataset "):
            assert body.get("params"), f"dvc.yaml stage {name} reads params.yaml but lists no params"


def test_modules_exist() -> None:
    for name, stage in STAGES.items():
        for dep in _body(stage).get("deps", []):
            if isinstance(dep, str) and dep.startswith("ausil_lib/"):
                assert (ROOT / dep).is_file(), f"{name}: {dep} does not exist"
