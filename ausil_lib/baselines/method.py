"""Each baseline by name, behind the retrieval runner's interface.

Kept here rather than in `retrieval.runner` so that AuSiL's stages (extraction, training, its similarity
runs) do not import the baselines, and an edit of Dejavu or the Spectro methods re-runs only the stages
that use them (dvc.yaml deps follow the imports; tests/test_dvc_deps.py).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from ..core.config import Params
from ..core.labels import BASELINES
from ..retrieval.method import Method


@contextmanager
def baseline_method(name: str, params: Params, cache_dir: str | os.PathLike[str]) -> Iterator[Method]:
    """A baseline for exactly as long as it is needed: Dejavu's throwaway PostgreSQL cluster is started
    here and stopped on leaving (errors included)."""
    if name == "dejavu":
        from .dejavu import DejavuMethod
        from .postgres import PostgresCluster

        config, audio = params.dejavu, params.audio
        with PostgresCluster(config.postgres_bindir, config.postgres_start_timeout_s) as cluster:
            yield DejavuMethod(cluster, config, audio.ffmpeg, audio.decode_timeout_s)
    elif name in ("spectro-slides", "spectro-tiles"):
        from .spectro import SpectroMethod

        yield SpectroMethod(name.split("-", 1)[1], params.spectro, cache_dir)
    else:
        raise ValueError(f"unknown baseline {name!r}; expected one of {BASELINES}")
