"""The AuSiL authors' released files: pinned, fetched, verified, and recorded.

The authors publish the AudioSet backbone (`mx-h64-1024_0d3-1.17.pkl`) and their VCDB-trained
similarity network (a TensorFlow checkpoint) in a public repository. params.yaml `release` pins the
commit and, for every file, the git blob id (SHA-1 over `b"blob <size>\\0" + bytes`): git's own
digest of the exact bytes at that commit, so a download is verified without git and without trusting
the server. Where this project has seen a file, its SHA-256 is pinned too.

`data/weights/manifest.json` records what is present and verified. It is rewritten by every
`ausil fetch-weights` (with or without network) and is what DVC stages depend on, so fetching the
weights later makes exactly the stages that use them stale. The files, their pins and what was seen
of them are in docs/ausil-reference-facts.md ("The released files and how they are verified").
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from ..core.config import ReleaseConfig, ReleaseFile
from ..core.formats import atomic_write_json

CHUNK = 1 << 20


class WeightsError(RuntimeError):
    """A released file is corrupt or does not match its pin; the message names the file and both digests."""


class WeightsUnreachable(RuntimeError):
    """The release could not be reached (offline, DNS, HTTP error); the message is one line."""


@dataclass(frozen=True)
class Digests:
    git_blob: str
    sha256: str
    size: int


def digests(path: str | os.PathLike[str]) -> Digests:
    """Git blob id, SHA-256 and size of a file in one read."""
    size = os.path.getsize(path)
    blob = hashlib.sha1(b"blob %d\0" % size)
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            blob.update(chunk)
            sha.update(chunk)
    return Digests(blob.hexdigest(), sha.hexdigest(), size)


def check(path: str | os.PathLike[str], pin: ReleaseFile) -> Digests:
    """Digests of `path` if they match every digest pinned for it, else WeightsError naming both."""
    got = digests(path)
    if got.git_blob != pin.git_blob.lower():
        raise WeightsError(
            f"{path}: git blob id {got.git_blob} does not match the pinned {pin.git_blob} "
            f"({pin.path} at the pinned commit)"
        )
    if pin.sha256 and got.sha256 != pin.sha256.lower():
        raise WeightsError(f"{path}: SHA-256 {got.sha256} does not match the pinned {pin.sha256}")
    return got


def _open(url: str, offset: int, timeout_s: float):
    req = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    return urllib.request.urlopen(req, timeout=timeout_s)  # noqa: S310 - URL comes from params.yaml


def download(
    url: str,
    dest: Path,
    pin: ReleaseFile,
    timeout_s: float = 60.0,
    progress: bool = True,
    opener: Callable[[str, int, float], Any] = _open,
) -> Digests:
    """Fetch `url` into `dest`, resuming an interrupted `.part`, and keep it only if it matches `pin`.

    A server that ignores the Range request sends the whole file again, which restarts the part file;
    a part that turns out corrupt is removed, so the next run starts clean.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    if pin.size is not None and offset > pin.size:
        part.unlink()
        offset = 0
    try:
        with opener(url, offset, timeout_s) as resp:
            status = getattr(resp, "status", 200)
            if offset and status != 206:
                offset = 0  # no resume support: start over
            length = resp.headers.get("Content-Length")
            total = offset + int(length) if length else pin.size
            with (
                open(part, "ab" if offset else "wb") as out,
                tqdm(
                    total=total,
                    initial=offset,
                    unit="B",
                    unit_scale=True,
                    desc=dest.name,
                    disable=not progress,
                    file=sys.stderr,
                ) as bar,
            ):
                for chunk in iter(lambda: resp.read(CHUNK), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # range past the end: the part may already be complete
            pass
        else:
            raise WeightsUnreachable(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WeightsUnreachable(f"{url}: {reason}") from exc
    try:
        got = check(part, pin)
    except WeightsError as exc:
        part.unlink(missing_ok=True)
        raise WeightsError(f"{dest.name}: downloaded file refused and removed: {exc}") from exc
    os.replace(part, dest)
    return got


@dataclass
class FetchReport:
    present: dict[str, Digests]  # role -> digests of verified files
    fetched: list[str]  # roles downloaded by this call
    missing: dict[str, str]  # role -> why it is not there
    unreachable: str | None = None  # the one-line reason, when the network was needed and failed

    @property
    def model_available(self) -> bool:
        return "model_index" in self.present and "model_data" in self.present


def fetch_release(
    cfg: ReleaseConfig,
    download_missing: bool = True,
    progress: bool = True,
    opener: Callable[[str, int, float], Any] = _open,
) -> FetchReport:
    """Verify what is present; download what is missing (unless told not to). Never keeps a bad file.

    A present file that fails its pin is an error (it would silently change every result); the first
    unreachable download stops further attempts and is reported, not raised.
    """
    report = FetchReport({}, [], {})
    for role, pin in cfg.files().items():
        dest = Path(pin.dest)
        if dest.is_file():
            report.present[role] = check(dest, pin)
            continue
        if not download_missing or report.unreachable:
            report.missing[role] = "not downloaded" if not report.unreachable else "release unreachable"
            continue
        try:
            report.present[role] = download(cfg.url_of(pin), dest, pin, cfg.timeout_s, progress, opener)
            report.fetched.append(role)
        except WeightsUnreachable as exc:
            report.unreachable = str(exc)
            report.missing[role] = "release unreachable"
    write_manifest(cfg, report)
    return report


def write_manifest(cfg: ReleaseConfig, report: FetchReport) -> None:
    """What is present and verified, without timestamps: the same files give the same manifest."""
    files = {
        role: (
            {
                "dest": pin.dest,
                "git_blob": report.present[role].git_blob,
                "sha256": report.present[role].sha256,
                "size": report.present[role].size,
            }
            if role in report.present
            else None
        )
        for role, pin in cfg.files().items()
    }
    atomic_write_json(
        cfg.manifest,
        {
            "repository": cfg.repository,
            "commit": cfg.commit,
            "files": files,
            "audioset_backbone_available": "backbone" in report.present,
            "released_model_available": report.model_available,
            "released_model_prefix": cfg.model_prefix if report.model_available else None,
        },
    )


def verified_backbone(cfg: ReleaseConfig) -> tuple[Path, Digests] | None:
    """The AudioSet weights file and its digests if present; WeightsError if present but not the pinned file."""
    pin = cfg.backbone
    path = Path(pin.dest)
    return (path, check(path, pin)) if path.is_file() else None


def verify_released_model(cfg: ReleaseConfig, prefix: str | os.PathLike[str]) -> bool:
    """Check the files of `prefix` against the release pins when `prefix` is the released checkpoint.

    Returns True when it is the pinned release (verified), False for any other checkpoint prefix
    (a user's own TensorFlow export, or a test's); a pinned file that does not match is an error.
    """
    if Path(prefix) != Path(cfg.model_prefix):
        return False
    for pin in (cfg.model_index, cfg.model_data):
        check(pin.dest, pin)
    return True
