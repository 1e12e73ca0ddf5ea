"""Verification of the materialised sources against the pins in a .dvc file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ausil_lib.datasets.embedded.sources import SourceError, verify_against_dvc


@pytest.fixture
def pinned_repo(tmp_path: Path, monkeypatch) -> Path:
    """A git + DVC repository whose data.dvc pins data/sources (two small files)."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    dvc = str(Path(sys.executable).parent / "dvc")
    (tmp_path / "data" / "sources").mkdir(parents=True)
    (tmp_path / "data" / "sources" / "a.txt").write_text("alpha")
    (tmp_path / "data" / "sources" / "b.txt").write_text("beta")
    for cmd in (["git", "init", "-q"], [dvc, "init", "-q"], [dvc, "add", "-q", "data/sources"]):
        subprocess.run(cmd, cwd=tmp_path, env=env, check=True)
    text = (tmp_path / "data" / "sources.dvc").read_text().replace("path: sources", "path: data/sources")
    (tmp_path / "data.dvc").write_text(text)
    (tmp_path / "data" / "sources.dvc").unlink()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    return tmp_path


def test_matching_sources_pass_even_without_a_cache(pinned_repo: Path) -> None:
    shutil.rmtree(pinned_repo / ".dvc" / "cache", ignore_errors=True)  # as in a fresh clone
    before = (pinned_repo / "data.dvc").read_text()
    verify_against_dvc("data.dvc")
    assert (pinned_repo / "data.dvc").read_text() == before


def test_different_sources_are_refused_and_the_pin_kept(pinned_repo: Path) -> None:
    before = (pinned_repo / "data.dvc").read_text()
    (pinned_repo / "data" / "sources" / "b.txt").write_text("other bytes")
    with pytest.raises(SourceError, match="differ from the pins"):
        verify_against_dvc("data.dvc")
    assert (pinned_repo / "data.dvc").read_text() == before


def test_accept_re_pins_on_purpose(pinned_repo: Path) -> None:
    before = (pinned_repo / "data.dvc").read_text()
    (pinned_repo / "data" / "sources" / "b.txt").write_text("my own music")
    verify_against_dvc("data.dvc", strict=False)
    assert (pinned_repo / "data.dvc").read_text() != before
    verify_against_dvc("data.dvc")  # the new pin now holds
