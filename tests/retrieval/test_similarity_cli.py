"""`ausil similarity` gives every baseline the same interface and output format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ausil_lib.cli import main
from ausil_lib.core.formats import read_results, write_video_list

from ..helpers import SR, chords

pytestmark = pytest.mark.slow


@pytest.fixture
def lists(tmp_path: Path, make_media) -> tuple[Path, Path]:
    sources = {f"r{i}": chords(25.0, seed=40 + i) for i in range(3)}
    db = {k: str(make_media(f"{k}.ogg", v)) for k, v in sources.items()}
    db["broken"] = str(tmp_path / "broken.mp4")
    Path(db["broken"]).write_bytes(b"\x00" * 4000)
    excerpt = sources["r1"][int(7.3 * SR) : int(17.3 * SR)]
    queries = {"q": str(make_media("q.mp4", excerpt))}
    write_video_list(tmp_path / "q.txt", queries)
    write_video_list(tmp_path / "db.txt", db)
    return tmp_path / "q.txt", tmp_path / "db.txt"


@pytest.mark.parametrize("method", ["spectro-slides", "spectro-tiles", "dejavu"])
def test_baselines_rank_the_source_first(method: str, lists, tmp_path: Path) -> None:
    q, db = lists
    out = tmp_path / "out" / f"{method}.json"
    assert (
        main(
            [
                "baseline-similarity",
                "--method",
                method,
                "--queries",
                str(q),
                "--database",
                str(db),
                "--output",
                str(out),
                "--features-dir",
                str(tmp_path / "fp"),
                "--no-progress",
            ]
        )
        == 0
    )
    scores = read_results(out)["q"]
    assert set(scores) == {"r0", "r1", "r2"}  # the broken file is reported, not scored
    assert scores["r1"] > 3 * max(scores["r0"], scores["r2"], 1.0)
    assert "broken" in out.with_name(f"{method}.failures.tsv").read_text()
    timing = json.loads(out.with_name(f"{method}.timing.json").read_text())
    assert timing["method"] == method and timing["index_s"] > 0 and timing["failed"] == 1
