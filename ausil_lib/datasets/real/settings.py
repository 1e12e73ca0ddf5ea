"""A named dataset's settings and folder, and the error a stage raises when they do not fit.

Apart from the stages in `pipeline`, so that `ausil extract --dataset NAME` and the README's budgets
read a dataset's settings without importing every stage's code (and so depending on it in dvc.yaml).
"""

from __future__ import annotations

from pathlib import Path

from ...core.config import DatasetConfig, Params


class StageError(RuntimeError):
    """A stage cannot run as configured; the message says which setting to change."""


def dataset_config(params: Params, name: str) -> DatasetConfig:
    named = params.datasets.named
    if name not in named:
        raise StageError(f"dataset {name!r} is not defined in params.yaml `datasets` (defined: {sorted(named)})")
    return named[name]


def dataset_dir(params: Params, name: str) -> Path:
    return Path(params.datasets.root) / name
