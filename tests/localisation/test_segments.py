"""The cluster rule that Spectro and Dejavu localisation share."""

from __future__ import annotations

import numpy as np
import pytest

from ausil_lib.localisation.segments import largest_cluster


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        ([], []),
        ([3], [3]),
        ([0, 1, 2, 40, 41], [0, 1, 2]),  # 1 s frames: 38 s gap splits; the larger run wins
        ([0, 1, 40, 41], [0, 1]),  # equal sizes: the earliest
        ([0, 2, 4, 6], [0, 2, 4, 6]),  # 2 s gaps are not over CLUSTER_GAP_S
    ],
)
def test_largest_cluster(frames: list[int], expected: list[int]) -> None:
    got = largest_cluster(np.array(frames, dtype=np.int64), 1.0)
    assert got.tolist() == expected
