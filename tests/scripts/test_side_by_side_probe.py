"""scripts/side_by_side_probe.py joins two backbones' descriptors segment by segment."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest

from ausil_lib.features.extraction import feature_path, load_features, save_features

from . import load_script

_probe = partial(load_script, "side_by_side_probe")


@pytest.mark.parametrize(("n_first", "n_second"), [(3, 3), (4, 3), (3, 4), (6, 3)])
def test_each_half_is_its_backbones_unit_vector_on_the_common_segments(n_first: int, n_second: int) -> None:
    rng = np.random.default_rng(0)
    first, second = rng.normal(size=(n_first, 5)) * 7, rng.normal(size=(n_second, 2))
    joined = _probe().join(first, second, "v", 1000)
    assert joined.shape == (3, 7)
    np.testing.assert_allclose(np.linalg.norm(joined[:, :5], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(joined[:, 5:], second[:3] / np.linalg.norm(second[:3], axis=1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(joined[:, :5] * np.linalg.norm(first[:3], axis=1, keepdims=True), first[:3], rtol=1e-4)


@pytest.mark.parametrize(("n_first", "step_ms"), [(8, 1000), (17, 250)])
def test_a_count_gap_beyond_the_padded_end_is_refused_by_name(n_first: int, step_ms: int) -> None:
    """The released padding's 3.05 s allow 4 windows more at 1 s, 13 at 250 ms, and no more."""
    probe = _probe()
    assert probe.join(np.ones((n_first - 1, 2)), np.ones((3, 2)), "ok", step_ms).shape == (3, 4)
    with pytest.raises(SystemExit, match=f"clip_7: {n_first} segments .* 3 in"):
        probe.join(np.ones((n_first, 2)), np.ones((3, 2)), "clip_7", step_ms)


def test_dirs_join_the_videos_both_hold_and_keep_files_already_there(tmp_path: Path) -> None:
    probe = _probe()
    for sub, videos in (("a", ["x", "y"]), ("b", ["y", "z"])):
        for v in videos:
            save_features(feature_path(tmp_path / sub, v), np.ones((2, 3)), {"video_id": v})
    out = tmp_path / "joined"
    assert probe.join_dirs(tmp_path / "a", tmp_path / "b", out, 1000) == 1
    joined = load_features(feature_path(out, "y"))
    assert joined.descriptors.shape == (2, 6) and joined.meta["signature"]["time_step_ms"] == 1000
    save_features(feature_path(out, "y"), np.zeros((1, 6)), {"video_id": "y"})  # a file from an earlier run
    probe.join_dirs(tmp_path / "a", tmp_path / "b", out, 1000)
    assert load_features(feature_path(out, "y")).descriptors.shape == (1, 6)
    assert sorted(p.name for p in out.iterdir()) == ["y.npz"]
