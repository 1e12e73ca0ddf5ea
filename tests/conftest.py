"""Shared fixtures: media files made on the fly with the project's own ffmpeg encoder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

# librosa's numba cache would otherwise be written into site-packages.
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "numba"))

# Before numpy and before any test module imports torch: the package pins CPU code paths and thread
# counts (ausil_lib/core/numerics.py), which only takes effect ahead of torch's (and OpenBLAS's) first use.
# isort: off
import ausil_lib  # noqa: F401
import numpy as np
import pytest
# isort: on

from .helpers import MEDIA_FORMATS, SR


@pytest.fixture
def make_media(tmp_path: Path) -> Callable[..., Path]:
    """make_media(name.ext, audio) writes `audio` in the container and codec the extension names."""
    from ausil_lib.audio.decode import encode

    def _make(name: str, audio: np.ndarray, sr: int = SR) -> Path:
        codec_args, video = MEDIA_FORMATS[name.rsplit(".", 1)[1]]
        path = tmp_path / name
        encode(path, audio, sr, codec_args, still_image=video)
        return path

    return _make


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` need CUDA: skipped here, in one place, on machines without it."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
