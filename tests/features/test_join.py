"""features/join.py: two backbones' descriptors side by side, and the time step stored files record."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ausil_lib.features.extraction import save_features, stored_time_step_ms
from ausil_lib.features.join import join_descriptors


@pytest.mark.parametrize(("n_first", "n_second"), [(3, 3), (4, 3), (3, 4), (6, 3)])
def test_each_half_is_its_backbones_unit_vector_on_the_common_segments(n_first: int, n_second: int) -> None:
    rng = np.random.default_rng(0)
    first, second = rng.normal(size=(n_first, 5)) * 7, rng.normal(size=(n_second, 2))
    joined = join_descriptors(first, second, "v", 1000)
    assert joined.shape == (3, 7) and joined.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(joined[:, :5], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(joined[:, 5:], second[:3] / np.linalg.norm(second[:3], axis=1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(joined[:, :5] * np.linalg.norm(first[:3], axis=1, keepdims=True), first[:3], rtol=1e-4)


@pytest.mark.parametrize(("n_first", "step_ms"), [(8, 1000), (17, 250)])
def test_a_count_gap_beyond_the_padded_end_is_refused_by_name(n_first: int, step_ms: int) -> None:
    """The released padding's 3.05 s allow 4 windows more at 1 s, 13 at 250 ms, and no more."""
    assert join_descriptors(np.ones((n_first - 1, 2)), np.ones((3, 2)), "ok", step_ms).shape == (3, 4)
    with pytest.raises(ValueError, match=f"clip_7: {n_first} segments .* 3 in"):
        join_descriptors(np.ones((n_first, 2)), np.ones((3, 2)), "clip_7", step_ms)


@pytest.mark.parametrize("step_ms", [250, 1000])
def test_the_time_step_is_read_from_the_stored_file(tmp_path: Path, step_ms: int) -> None:
    """Descriptors say what step they were cut at, so a probe's row cannot name the wrong one."""
    save_features(tmp_path / "a.npz", np.zeros((3, 4)), {"video_id": "a", "signature": {"time_step_ms": step_ms}})
    assert stored_time_step_ms(tmp_path) == step_ms
    assert stored_time_step_ms(tmp_path, default=500) == step_ms  # the file wins over the default


def test_files_without_a_step_take_the_default_or_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"{tmp_path}: no feature files"):
        stored_time_step_ms(tmp_path)
    assert stored_time_step_ms(tmp_path, default=1000) == 1000
    save_features(tmp_path / "a.npz", np.zeros((3, 4)), {"video_id": "a"})  # musicnn's probe records none
    assert stored_time_step_ms(tmp_path, default=250) == 250
    with pytest.raises(ValueError, match="a.npz records no time step"):
        stored_time_step_ms(tmp_path)
