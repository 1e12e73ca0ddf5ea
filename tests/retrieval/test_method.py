"""The index loop every method shares: bad videos are reported with their reason, the rest indexed."""

from __future__ import annotations

from pathlib import Path

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
