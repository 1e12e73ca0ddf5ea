"""params.yaml access and device choice: the one place configuration is read."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
import yaml

from .numerics import apply_torch_settings

apply_torch_settings()  # torch's threads and cuDNN settings, before any tensor work (core/numerics.py)

DEFAULT_PARAMS = Path("params.yaml")


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """The parsed params.yaml; a missing or malformed file is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: parameter file not found (run from the repository root or pass --params)")
    with path.open(encoding="utf-8") as fh:
        params = yaml.safe_load(fh)
    if not isinstance(params, dict):
        raise ValueError(f"{path}: expected a mapping of sections at the top level")
    return params


def resolve_device(spec: str | None = "auto") -> torch.device:
    """`auto` picks CUDA when present, else CPU; an explicit CUDA request without a GPU fails."""
    apply_torch_settings()  # idempotent: the torch side of the pinning holds wherever a device is chosen
    spec = (spec or "auto").lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} requested in params.yaml but no CUDA device is available")
    return device


def from_section(cls: type, section: Mapping[str, Any], name: str) -> Any:
    """A config dataclass from a params.yaml section; a misspelt key is an error, never silently ignored."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(section) - names)
    if unknown:
        raise ValueError(f"unknown {name} setting(s) {unknown}; valid keys: {sorted(names)}")
    return cls(**dict(section))


@contextmanager
def full_float32() -> Iterator[None]:
    """cuDNN runs float32 convolutions as TF32 (10-bit mantissa) on Ampere and later GPUs by default;
    measured on an H100 that moved MAC descriptors by up to 2.9e-4 from the CPU's. Float32 work runs
    with TF32 off, so a GPU gives the CPU's numbers; mixed precision is the explicit speed option."""
    cudnn = torch.backends.cudnn
    with cudnn.flags(
        enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic, allow_tf32=False
    ):
        yield
