"""What a stored result depends on beside its inputs and settings: code, numerics pins, libraries.

Resumable steps keep a stored result only under the same digest. DVC re-runs a stage when its code
changes, but a stage that resumes would otherwise keep every result the old code made and DVC would
record them as new.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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


class SourceChanged(RuntimeError):
    """The code or settings a command read at its start were edited before it finished."""


@contextmanager
def unchanged_source(files: Iterable[str | os.PathLike[str]] = ()) -> Iterator[None]:
    """Raise SourceChanged when the block ends normally but ausil_lib's source, or one of `files` (the
    params file), differs from what it was when the block began.

    DVC hashes a stage's dependencies after its command returns: a command that ran the old code (its
    modules were imported at the start) and exits 0 would have its outputs recorded under the new code.
    Failing instead leaves the stage to run again.
    """
    paths = [Path(f) for f in files]

    def digest() -> str:
        return code_digest(package_modules(), extra=[p.read_text(encoding="utf-8") for p in paths if p.is_file()])

    before = digest()
    yield
    if digest() != before:
        raise SourceChanged(
            "ausil_lib's source or the params file changed while this command ran; its outputs are the old "
            "version's, so it exits with an error for DVC not to record them under the new one: run it again"
        )
