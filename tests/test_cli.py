"""Help texts are complete and `ausil evaluate` works from files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from ausil_lib import cli
from ausil_lib.cli import build_parser, main
from ausil_lib.core.formats import write_annotations, write_ids, write_results

SUBCOMMAND_OPTIONS = {
    "extract": ["--videos", "--output-dir", "--time-step-ms", "--workers", "--fail-on-error"],
    "evaluate": ["--results", "--annotations", "--dataset-ids", "--relevant-labels", "--metrics", "--pr"],
    "fetch-weights": ["--no-progress"],
    "benchmark-speed": ["--output"],
    "readme": ["--readme"],
    "report": ["--root", "--out", "--no-html"],
    "similarity": ["--queries", "--database", "--output", "--model", "--variant", "--features-dir"],
    "baseline-similarity": ["--method", "--queries", "--database", "--output", "--features-dir"],
    "train": ["--features-dir", "--output", "--curve", "--backbone"],
    "train-backbone": ["--sources", "--corpus", "--output", "--max-steps", "--extra-sources"],
    "fetch-sources": ["--output-dir", "--cross-output-dir", "--backbone-output-dir", "--verify", "--accept"],
    "build-corpus": ["--sources", "--output-dir", "--summary", "--workers"],
}


def test_top_level_help_lists_every_subcommand(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for name in SUBCOMMAND_OPTIONS:
        assert name in text


@pytest.mark.parametrize("name", sorted(SUBCOMMAND_OPTIONS))
def test_subcommand_help_is_complete(name: str, capsys) -> None:
    with pytest.raises(SystemExit):
        main([name, "--help"])
    text = capsys.readouterr().out
    for option in SUBCOMMAND_OPTIONS[name]:
        assert option in text
    # every option carries a help string
    sub = build_parser()._subparsers._group_actions[0].choices[name]
    assert all(action.help for action in sub._actions)


def test_evaluate_cli(tmp_path: Path, capsys) -> None:
    write_results(tmp_path / "sims.json", {"q": {"a": 0.9, "x": 0.8, "b": 0.7, "q": 1.0}})
    write_annotations(tmp_path / "ann.json", {"q": {"DA": ["a", "b", "c"]}})
    write_ids(tmp_path / "ids.txt", ["q", "a", "b", "c", "x"])
    assert (
        main(
            [
                "evaluate",
                "--results",
                str(tmp_path / "sims.json"),
                "--annotations",
                str(tmp_path / "ann.json"),
                "--dataset-ids",
                str(tmp_path / "ids.txt"),
                "--relevant-labels",
                "DA",
            ]
        )
        == 0
    )
    # ranking a, x, b (query excluded); relevant a, b, c: AP = (1/1 + 2/3) / 3 = 5/9
    assert "mAP=0.5556" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "sims.metrics.json").read_text())
    assert metrics["mAP"] == 0.556  # 5/9, at the metrics files' 3 decimals
    assert len(json.loads((tmp_path / "sims.pr.json").read_text())) == 21


def test_errors_are_reported_not_raised(tmp_path: Path, capsys) -> None:
    write_annotations(tmp_path / "ann.json", {"q": {"DA": ["a"]}})
    write_ids(tmp_path / "ids.txt", ["q", "a"])
    assert (
        main(
            [
                "evaluate",
                "--results",
                str(tmp_path / "none.json"),
                "--annotations",
                str(tmp_path / "ann.json"),
                "--dataset-ids",
                str(tmp_path / "ids.txt"),
            ]
        )
        == 2
    )
    assert "none.json" in capsys.readouterr().err


def test_a_command_that_outlived_an_edit_of_its_params_fails(tmp_path: Path, monkeypatch, capsys) -> None:
    """DVC would record the outputs of the old settings under the new ones: the command exits 3 instead."""
    params = tmp_path / "params.yaml"
    params.write_text("seed: 1\n")

    def edit_mid_run(args: argparse.Namespace) -> int:
        Path(args.params).write_text("seed: 2\n")
        return 0

    parser = argparse.ArgumentParser()
    parser.add_argument("--params")
    parser.set_defaults(func=edit_mid_run, command="edit")
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert main(["--params", str(params)]) == 3
    assert "changed while this command ran" in capsys.readouterr().err
