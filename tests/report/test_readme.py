"""The README: the renderer replaces exactly the marked section and refuses a README without it; the
layout section lists every module of the package."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ausil_lib.report.readme import render

REPORT = {
    "date": "2026-01-01 00:00 UTC",
    "audio_seconds": 100.0,
    "repeats": 3,
    "decode_s_per_100s": 0.2,
    "machine": {"cpu": "X", "cpu_cores": 2, "torch_threads": 2, "device": "cpu", "torch": "2.11.0"},
    "time_steps": {
        "1000": {
            "segments": 99,
            "logmel_s_per_100s": 0.05,
            "backbone_s_per_100s": 0.75,
            "backbone_segments_per_s": 132.0,
            "end_to_end_s_per_100s": 1.0,
            "end_to_end_x_real_time": 100.0,
        }
    },
}


def test_render_fills_the_speed_section(tmp_path: Path) -> None:
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "speed.json").write_text(json.dumps(REPORT))
    text = "intro\n<!-- speed:begin -->\nold\n<!-- speed:end -->\noutro\n"
    out = render(text, tmp_path)
    assert "old" not in out and out.startswith("intro\n") and out.endswith("outro\n")
    assert "| 1000 ms | 99 | 0.200 | 0.050 | 0.750 | 132 | 1.000 | 100x |" in out
    assert render(out, tmp_path) == out  # idempotent


def test_sections_without_their_inputs_are_left_as_they_are(tmp_path: Path) -> None:
    """Without the corpus (DVC data) the localisation section would lose its intervals and findings: it is
    left as it was, like the hard-case section, and `update_readme` names both."""
    from ausil_lib.report.readme import missing_inputs, update_readme

    kept = "".join(f"<!-- {name}:begin -->\nkept\n<!-- {name}:end -->\n" for name in ("localisation", "hardcases"))
    assert render(kept, tmp_path) == kept
    assert missing_inputs(tmp_path)["localisation"] == ["metrics/localisation", "data/corpus"]
    (tmp_path / "data" / "corpus").mkdir(parents=True)
    assert missing_inputs(tmp_path)["localisation"] == ["metrics/localisation"]  # both are needed
    (tmp_path / "data" / "corpus").rmdir()
    readme = tmp_path / "README.md"
    readme.write_text(kept, encoding="utf-8")
    with pytest.warns(
        UserWarning, match=r"hardcases \(no data/corpus\).*localisation \(no metrics/localisation, data/corpus\)"
    ):
        assert not update_readme(readme, tmp_path)


def test_render_needs_the_markers(tmp_path: Path) -> None:
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "speed.json").write_text(json.dumps(REPORT))
    with pytest.raises(ValueError, match="speed:begin"):
        render("no markers here", tmp_path)


def test_committed_readme_matches_the_committed_reports() -> None:
    """Every generated table of README.md (speed, corpus, results, GPU, dataset budgets) equals what
    `ausil readme` renders from the committed reports and params.yaml: no stale or hand-edited number."""
    root = Path(__file__).resolve().parents[2]
    text = (root / "README.md").read_text(encoding="utf-8")
    rendered = render(text, root)
    if not (root / "data" / "corpus").is_dir():
        # a clone without the DVC data: `ausil readme` leaves the localisation section as it is (its
        # intervals and findings need the corpus's true segments); its table's point values are checked here
        from ausil_lib.report.readme import localisation_section

        section = re.compile(r"<!-- localisation:begin -->.*?<!-- localisation:end -->", re.S)
        strip_ci = re.compile(r" \[[0-9.]+–[0-9.]+\]")
        rows = [strip_ci.sub("", line) for line in section.search(text).group(0).splitlines() if line.startswith("|")]
        assert rows == [line for line in localisation_section(root).splitlines() if line.startswith("|")]
    assert rendered == text, "README.md is stale: run `ausil readme`"


def test_readme_layout_lists_every_module() -> None:
    """One row per module in "Library layout" (a package's `__init__.py` is its `dir/` row), and no
    row for a module that does not exist."""
    root = Path(__file__).resolve().parents[2]
    text = (root / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Library layout\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    listed = [name.removeprefix("ausil_lib/") for row in rows[1:] for name in re.findall(r"`([^`]+)`", row)]
    package = root / "ausil_lib"
    modules = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        modules.append(rel.removesuffix("__init__.py") if rel.endswith("/__init__.py") else rel)
    assert sorted(listed) == sorted(modules), (
        f"README layout misses {sorted(set(modules) - set(listed))}, lists unknown {sorted(set(listed) - set(modules))}"
    )


def test_render_fills_the_data_curve_section(tmp_path: Path) -> None:
    """The gap column is signed, the mAP columns are not (a column named "cross-corpus" is no gap)."""
    row = {
        "queries": 5,
        "positive_pairs": 40,
        "triplets": {"positive_pairs_kept": 12, "triplets": 100},
        "best_step": 10,
        "val_map": 0.95,
        "cross_val_map": 0.75,
        "val_mac_w": 0.9,
        "cross_val_mac_w": 0.8,
        "stopped_by": "max_steps",
        "commit": "abc1234",
    }
    recipe = dict(row, recipe="cnn-init identity", cross_val_speed_map=0.7, cross_val_speed_mac_w=0.72)
    (tmp_path / "reports" / "ablations").mkdir(parents=True)
    (tmp_path / "reports" / "ablations" / "ausil_data_curve.json").write_text(
        json.dumps({"q5": row, "q5 cnn-init identity": recipe})
    )
    markers = "".join(f"<!-- {name}:begin -->\n<!-- {name}:end -->\n" for name in ("probe", "datacurve", "taps"))
    out = render(markers, tmp_path)
    # a row written before the speed columns existed shows "–" there, not a made-up number
    assert "| 5 | default | 12 / 40 | 100 | 10 | 0.950 | 0.900 | 0.750 | 0.800 | -0.050 | – | – | max_steps |" in out
    identity = "| 5 | cnn-init identity | 12 / 40 | 100 | 10 | 0.950 | 0.900 | 0.750 | 0.800 | -0.050 | 0.700 | 0.720 |"
    assert identity in out
    assert "abc1234" not in out  # the commit stays in the notebook's table


def _write_map(root: Path, run: str, set_name: str, value: float, collection: str = "") -> None:
    path = root / "metrics" / collection / run / f"{set_name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"mAP": value, "n": 10}))


def test_render_fills_the_targets_section(tmp_path: Path) -> None:
    """Each target compares the run's own numbers (Dejavu's minus the margin, the speed floor, the control, MAC + W);
    a target whose runs are missing says so instead of a verdict."""
    for run, test, speed in (("ausil-full-main", 0.90, 0.86), ("ausil-full-random", 0.91, 0.5), ("dejavu", 0.92, 0.1)):
        _write_map(tmp_path, run, "test", test)
        _write_map(tmp_path, run, "test_speed", speed)
    _write_map(tmp_path, "ausil-mac_w-main", "test", 0.95)
    _write_map(tmp_path, "ausil-mac_w-main", "test_speed", 0.80)
    markers = "".join(f"<!-- {name}:begin -->\n<!-- {name}:end -->\n" for name in ("results", "findings", "targets"))
    out = render(markers, tmp_path)
    assert "| trained backbone ≥ untrained control, `test` | 0.900 vs 0.910 | no |" in out
    assert "| trained backbone ≥ untrained control, `test_speed` | 0.860 vs 0.500 | yes |" in out
    assert "| AuSiL `test` ≥ Dejavu − 0.03 | 0.900 vs 0.890 (Dejavu 0.920) | yes |" in out
    assert "| AuSiL `test_speed` ≥ 0.85 | 0.860 | yes |" in out
    assert "| full AuSiL ≥ its MAC + W, `test` | 0.900 vs 0.950 | no |" in out
    assert "| full AuSiL ≥ its MAC + W, `test_speed` | 0.860 vs 0.800 | yes |" in out
    assert "| full AuSiL ≥ its MAC + W, cross-corpus `val` | not run | – |" in out
