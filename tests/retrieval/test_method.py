"""The index loop every method shares: bad videos are reported with their reason, the rest indexed."""

from __future__ import annotations

from pathlib import Path

import pytest

from ausil_lib.audio.decode import AudioError
from ausil_lib.retrieval.method import index_videos


def test_index_videos_reports_failures_and_keeps_going() -> None:
    indexed: list[str] = []

    def add(vid: str, path: str) -> str | None:
        if vid == "broken":
            raise AudioError(Path(path), "no audio stream")
        if vid == "silent":
            return "no non-empty fingerprint"
        indexed.append(vid)
        return None

    database = {"a": "/a.mp4", "broken": "/b.mp4", "silent": "/s.mp4", "c": "/c.mp4"}
    failures = index_videos("fake", database, add, progress=False)
    assert indexed == ["a", "c"]  # database order
    assert failures == {"broken": "no audio stream", "silent": "no non-empty fingerprint"}


def size_of(item: tuple[str, str]) -> int:
    """A stand-in for a fingerprint: the per-file work, here a file's size (AudioError when missing)."""
    vid, path = item
    if not Path(path).is_file():
        raise AudioError(path, "no such file")
    return Path(path).stat().st_size


@pytest.mark.parametrize("workers", [1, 2])
def test_prepared_work_reaches_add_in_order_and_failures_are_kept(tmp_path: Path, workers: int) -> None:
    database = {}
    for i in range(6):
        database[f"v{i}"] = str(tmp_path / f"v{i}.bin")
        if i != 2:
            Path(database[f"v{i}"]).write_bytes(b"x" * (i + 1))
    added: list[tuple[str, int]] = []

    def add(vid: str, path: str, size: int) -> str | None:
        added.append((vid, size))
        return "empty-ish" if size == 1 else None

    failures = index_videos("fake", database, add, progress=False, prepare=size_of, workers=workers)
    assert added == [(f"v{i}", i + 1) for i in range(6) if i != 2]
    assert failures == {"v0": "empty-ish", "v2": "no such file"}
