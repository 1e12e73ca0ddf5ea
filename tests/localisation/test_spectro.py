"""Spectro localisation: the best offset's agreeing frames span the embedded piece, at speed 1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ausil_lib.baselines.spectro import SpectroMethod, fingerprint
from ausil_lib.core.config import LocalisationConfig, SpectroConfig
from ausil_lib.localisation.spectro import spectro_segment

from ..helpers import chords, textures

SR = SpectroConfig().sample_rate


def test_piece_at_ten_seconds(tmp_path: Path) -> None:
    query = textures(20.0, seed=1, sr=SR)
    piece = query[5 * SR : 13 * SR]
    video = np.concatenate([chords(10.0, seed=2, sr=SR), piece, chords(12.0, seed=3, sr=SR)])
    method = SpectroMethod("slides", SpectroConfig(), tmp_path)
    fq, fv = (fingerprint(x, method.cfg, "slides") for x in (query, video))
    (s,) = spectro_segment(fq, fv, method, LocalisationConfig())
    assert s.speed == 1.0
    assert s.query_start == pytest.approx(5.0, abs=1.5) and s.query_end == pytest.approx(13.0, abs=1.5)
    assert s.video_start - s.query_start == pytest.approx(5.0, abs=0.1)  # the offset: 10 s - 5 s
