"""Shared fixtures: media files made on the fly with the project's own ffmpeg encoder."""

from __future__ import annotations

import json
import os
from dataclasses import replace
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

from ausil_lib.core.config import Params
# isort: on

from .helpers import MEDIA_FORMATS, SR, materialised_sources


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


@pytest.fixture
def backbone_material(tmp_path: Path) -> tuple[Params, Path, Path, Path]:
    """(tiny params, corpus sources, corpus dir with its split log, extra sources)."""
    sources = materialised_sources(tmp_path, "sources", {"one": 1, "two": 2, "three": 3})
    extra = materialised_sources(tmp_path, "extra", {"four": 4, "five": 5})
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    split = {"album/one": "train", "album/two": "train", "album/three": "test"}
    log = {"recordings": {rid: {"split": s} for rid, s in split.items()}}
    (corpus / "construction_log.json").write_text(json.dumps(log))
    params = Params()
    small = replace(params.backbone_training, max_steps=1, batch_pairs=2, checkpoint_every=1)
    return replace(params, device="cpu", backbone_training=small), sources, corpus, extra
