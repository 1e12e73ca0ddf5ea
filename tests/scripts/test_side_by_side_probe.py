"""scripts/side_by_side_probe.py joins two probes' feature directories, video by video, and resumes."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from ausil_lib.features.extraction import feature_path, load_features, save_features

from . import load_script

_probe = partial(load_script, "side_by_side_probe")


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
