"""What a stored result depends on beside its inputs and settings: code, numerics pins, libraries.

Resumable steps keep a stored result only under the same digest. DVC re-runs a stage when its code
changes, but a stage that resumes would otherwise keep every result the old code made and DVC would
record them as new.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .numerics import PINNED_ENV

PACKAGE = Path(__file__).resolve().parents[1]


def package_modules() -> list[str]:
    """Every module of ausil_lib, named as `code_digest` takes them: for results whose code is not one
    module's imports (a retrieval run calls whichever method it is given)."""
    return sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py"))


def code_digest(modules: Iterable[str], packages: Iterable[str] = (), extra: Iterable[str] = ()) -> str:
    """sha256 of the named ausil_lib modules' source (paths under the package), the pinned numerics
    environment, the named distributions' versions and `extra` lines (such as the ffmpeg build)."""
    h = hashlib.sha256()
    for name in modules:
        h.update(name.encode() + b"\0" + (PACKAGE / name).read_bytes())
    for name in PINNED_ENV:
        h.update(f"{name}={os.environ.get(name)}\0".encode())
    for name in packages:
        try:
            h.update(f"{name}=={version(name)}\0".encode())
        except PackageNotFoundError:
            h.update(f"{name} absent\0".encode())
    for line in extra:
        h.update(f"{line}\0".encode())
    return h.hexdigest()
