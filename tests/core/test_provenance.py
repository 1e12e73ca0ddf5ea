"""code_digest: one value for the same code, pins and libraries; another when any of them differs."""

from __future__ import annotations

from pathlib import Path

import pytest

from ausil_lib.core import provenance
from ausil_lib.core.numerics import PINNED_ENV


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.py").write_text("X = 1\n")
    (tmp_path / "b.py").write_text("Y = 2\n")
    monkeypatch.setattr(provenance, "PACKAGE", tmp_path)
    return tmp_path


def test_same_inputs_same_digest(package: Path) -> None:
    first = provenance.code_digest(["sub/a.py", "b.py"], ["numpy"], ["ffmpeg x"])
    assert first == provenance.code_digest(["sub/a.py", "b.py"], ["numpy"], ["ffmpeg x"])


@pytest.mark.parametrize(
    "change",
    ["module bytes", "module order", "numerics pin", "package version", "extra line"],
)
def test_any_change_moves_the_digest(package: Path, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    modules, packages, extra = ["sub/a.py", "b.py"], ["numpy"], ["ffmpeg x"]
    before = provenance.code_digest(modules, packages, extra)
    if change == "module bytes":
        (package / "b.py").write_text("Y = 3\n")
    elif change == "module order":
        modules.reverse()
    elif change == "numerics pin":
        monkeypatch.setenv(PINNED_ENV[0], "something-else")
    elif change == "package version":
        packages = ["ausil-no-such-distribution"]
    else:
        extra = ["ffmpeg y"]
    assert provenance.code_digest(modules, packages, extra) != before


def test_a_missing_module_is_an_error_not_a_silent_digest(package: Path) -> None:
    with pytest.raises(FileNotFoundError):
        provenance.code_digest(["gone.py"])


@pytest.mark.parametrize("edit", ["module", "new module", "params file", "nothing"])
def test_unchanged_source_fails_a_block_that_outlived_an_edit(package: Path, tmp_path: Path, edit: str) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("seed: 1\n")

    def run() -> None:
        with provenance.unchanged_source([params]):
            if edit == "module":
                (package / "b.py").write_text("Y = 3\n")
            elif edit == "new module":
                (package / "sub" / "c.py").write_text("Z = 0\n")
            elif edit == "params file":
                params.write_text("seed: 2\n")

    if edit == "nothing":
        run()
    else:
        with pytest.raises(provenance.SourceChanged, match="run it again"):
            run()


def test_unchanged_source_lets_the_block_own_error_through(package: Path) -> None:
    with pytest.raises(KeyError), provenance.unchanged_source():
        (package / "b.py").write_text("Y = 3\n")
        raise KeyError("the command's own failure")
