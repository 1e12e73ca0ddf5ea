"""The id rule of speed copies, shared by the corpus, the real datasets and the reports."""

from __future__ import annotations

import pytest

from ausil_lib.core.labels import speed_copy_id, speed_copy_of


@pytest.mark.parametrize("factor", [0.5, 0.75, 1.25, 2.0])
def test_speed_copy_ids_read_back(factor: float) -> None:
    copy_id = speed_copy_id("q_x7", factor)  # the mark may occur in the id itself: the last one counts
    assert copy_id == f"q_x7_x{factor:g}"
    assert speed_copy_of(copy_id) == ("q_x7", factor)


@pytest.mark.parametrize("video_id", ["q001", "q_x", "_x2", "q_xfast", "q_x-1"])
def test_other_ids_are_not_speed_copies(video_id: str) -> None:
    assert speed_copy_of(video_id) is None
