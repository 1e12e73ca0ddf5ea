"""Fetch a file over HTTP(S) or file:// with a progress bar, atomically, checking its SHA-256."""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .formats import atomic_path


class DownloadError(RuntimeError):
    """The file could not be fetched or did not match its checksum; the message says which and why."""


def fetch(
    url: str, dest: str | os.PathLike[str], sha256: str | None = None, timeout_s: float = 60.0, progress: bool = True
) -> str:
    """Download `url` to `dest` and return its SHA-256.

    An existing `dest` whose checksum matches is kept (no download).  With no expected checksum
    the file is kept but the caller gets the digest to record; a mismatch removes the download.
    """
    dest = Path(dest)
    if dest.is_file() and sha256 and sha256_file(dest) == sha256.lower():
        return sha256.lower()
    digest = hashlib.sha256()
    with atomic_path(dest) as tmp:  # a failed or refused download leaves nothing behind
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp, open(tmp, "wb") as out:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(
                    total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress, file=sys.stderr
                ) as bar:
                    for block in iter(lambda: resp.read(1 << 20), b""):
                        out.write(block)
                        digest.update(block)
                        bar.update(len(block))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DownloadError(f"{url}: download failed ({exc})") from exc
        got = digest.hexdigest()
        if sha256 and got != sha256.lower():
            raise DownloadError(
                f"{url}: SHA-256 {got} does not match the expected {sha256.lower()}; download discarded"
            )
    return got


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
