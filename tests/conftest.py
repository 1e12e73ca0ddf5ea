"""Shared fixtures: media files made on the fly with the project's own ffmpeg encoder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

# librosa's numba cache would otherwise be written into site-packages.
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "numba"))

from .helpers import MEDIA_FORMATS, SR


@pytest.fixture
def make_media(tmp_path: Path) -> Callable[..., Path]:
    """make_media(name.ext, audio) writes `audio` in the container and codec the extension names."""
    from ausil_lib.audio import encode

    def _make(name: str, audio: np.ndarray, sr: int = SR) -> Path:
        codec_args, video = MEDIA_FORMATS[name.rsplit(".", 1)[1]]
        path = tmp_path / name
        encode(path, audio, sr, codec_args, still_image=video)
        return path

    return _make
