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
