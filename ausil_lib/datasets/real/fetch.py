"""Dataset acquisition: YouTube audio through yt-dlp, and checksummed archives.

FIVR-200K distributes only YouTube ids, so its videos are fetched with the yt-dlp command line
(audio only is enough for audio retrieval). Runs are resumable and polite: finished files are
skipped, requests are spaced by a minimum interval, and every id's last outcome is kept in
``<out_dir>/download_log.tsv`` (``video_id  status  reason``) so that videos known to be gone
are not requested again. A per-video failure is recorded, never fatal.

SVD, VCDB and EVVE come as archives: :func:`fetch_archives` downloads them with
:func:`ausil_lib.core.download.fetch` (SHA-256 checked), refuses members that would land outside
the extraction folder, and leaves a marker per archive so that a finished extraction is not
redone.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from tqdm import tqdm

from ...core import download
from ...core.config import YoutubeConfig
from ...core.download import DownloadError
from ...core.formats import PathLike, atomic_path, atomic_write_json, atomic_write_text

__all__ = [
    "ArchiveSpec",
    "DownloadReport",
    "download_youtube",
    "fetch_archives",
]

LOG_FILE = "download_log.tsv"
REPORT_FILE = "download_report.json"
_LOG_HEADER = "video_id\tstatus\treason"
_STATUSES = ("downloaded", "present", "unavailable", "failed")
# yt-dlp's working files: a name ending in one of these is not a finished download.
_UNFINISHED_EXTS = {"part", "ytdl", "tmp"}
# YouTube ids use the URL-safe base64 alphabet; anything else could escape out_dir or be read
# by yt-dlp as an output-template field ("%").
_ID_RE = re.compile(r"[A-Za-z0-9_-]+")
# yt-dlp messages meaning the video is permanently out of reach: asking again cannot help.
_GONE_MARKERS = (
    "video unavailable",
    "this video is unavailable",
    "this video is no longer available",
    "private video",
    "this video has been removed",
    "account associated with this video has been terminated",
    "copyright",
    "sign in to confirm your age",
    "not available in your country",
    "members-only",
    "members only",
    "join this channel to get access",
)
_MAX_REASON = 300
# Passed as --socket-timeout (capped by timeout_s): a stalled connection fails and is retried.
_SOCKET_TIMEOUT_S = 60.0


# --------------------------------------------------------------------------- YouTube


@dataclass
class DownloadReport:
    """Outcome of one :func:`download_youtube` run; reasons are yt-dlp's own error lines."""

    downloaded: list[str]
    present: list[str]
    unavailable: dict[str, str]
    failed: dict[str, str]

    def counts(self) -> dict[str, int]:
        return {
            "downloaded": len(self.downloaded),
            "present": len(self.present),
            "unavailable": len(self.unavailable),
            "failed": len(self.failed),
        }

    def summary(self) -> str:
        c = self.counts()
        return (
            f"{sum(c.values())} ids: {c['downloaded']} downloaded, {c['present']} already present, "
            f"{c['unavailable']} unavailable, {c['failed']} failed"
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "counts": self.counts()}


class _Pacer:
    """Keeps the starts of two requests at least a given gap apart (injected clock for tests)."""

    def __init__(self, sleep: Callable[[float], None], clock: Callable[[], float]) -> None:
        self._sleep = sleep
        self._clock = clock
        self._last: float | None = None

    def start(self, gap: float) -> None:
        if self._last is not None:
            remaining = gap - (self._clock() - self._last)
            if remaining > 0:
                self._sleep(remaining)
        self._last = self._clock()


def _finished_files(out_dir: Path) -> set[str]:
    """Ids with a finished ``<id>.<ext>`` in out_dir, from one directory scan (large folders)."""
    with os.scandir(out_dir) as entries:
        names = [e.name for e in entries if e.name not in (LOG_FILE, REPORT_FILE) and e.is_file()]
    return {video_id for video_id in map(media_id, names) if video_id}


def media_id(name: str) -> str | None:
    """The id of a finished media file ``<id>.<ext>``; None for yt-dlp's working files
    (``id.m4a.part``, ``id.f140.m4a``, ``id.temp.m4a``) and anything else."""
    stem, dot, ext = name.partition(".")
    if not dot or "." in ext or ext.lower() in _UNFINISHED_EXTS or not _ID_RE.fullmatch(stem):
        return None
    return stem


def _has_finished_file(out_dir: Path, video_id: str) -> bool:
    return any(media_id(p.name) == video_id and p.is_file() for p in out_dir.glob(f"{video_id}.*"))


def _one_line(text: str) -> str:
    """A reason fit for one TSV field: no tabs or newlines, at most ~300 characters."""
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _read_log(path: Path) -> dict[str, tuple[str, str]]:
    """Last ``(status, reason)`` per id; a line cut short by a killed run is ignored."""
    if not path.is_file():
        return {}
    outcomes: dict[str, tuple[str, str]] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) == 3 and parts[1] in _STATUSES:
            outcomes.pop(parts[0], None)  # keep the file order of last outcomes
            outcomes[parts[0]] = (parts[1], parts[2])
    return outcomes


def _ytdlp_argv(cfg: YoutubeConfig, out_dir: Path, video_id: str) -> list[str]:
    argv = [
        *cfg.command,
        "--no-playlist",
        "--no-progress",
        "--continue",  # keep and resume .part files after an interruption
        "-f",
        cfg.format,
        "--socket-timeout",
        f"{min(cfg.timeout_s, _SOCKET_TIMEOUT_S):g}",
        "-o",
        str(out_dir / f"{video_id}.%(ext)s"),
    ]
    if cfg.rate_limit:
        argv += ["--limit-rate", cfg.rate_limit]
    # "--" ends the options: ids may start with "-".
    return argv + ["--", cfg.url_template.format(id=video_id)]


def _error_reason(stderr: str, returncode: int) -> str:
    """yt-dlp's last ERROR line, else its last line, else the exit code."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    if errors:
        return _one_line(errors[-1])
    return _one_line(lines[-1]) if lines else f"exit code {returncode}"


def _is_gone(stderr: str) -> bool:
    """Whether yt-dlp says the video can never be fetched (judged on ERROR lines when present)."""
    errors = [line for line in stderr.splitlines() if line.startswith("ERROR:")]
    text = ("\n".join(errors) if errors else stderr).lower()
    return any(marker in text for marker in _GONE_MARKERS)


def _download_one(video_id: str, out_dir: Path, cfg: YoutubeConfig, pacer: _Pacer) -> tuple[str, str]:
    """``(status, reason)`` for one id after up to ``1 + cfg.retries`` yt-dlp calls.

    Retries back off exponentially from ``sleep_s`` (HTTP 429 means "slow down").
    """
    argv = _ytdlp_argv(cfg, out_dir, video_id)
    reason = ""
    for attempt in range(cfg.retries + 1):
        pacer.start(cfg.sleep_s * 2**attempt)
        try:
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                timeout=cfg.timeout_s,
            )
        except subprocess.TimeoutExpired:
            reason = f"yt-dlp timed out after {cfg.timeout_s:g} s"
            continue
        except OSError as exc:
            raise DownloadError(
                f"cannot run the yt-dlp command {cfg.command!r}: {exc}. Install yt-dlp or set the command to its path."
            ) from exc
        if proc.returncode == 0:
            if _has_finished_file(out_dir, video_id):
                return "downloaded", ""
            reason = "yt-dlp exited successfully but wrote no file"
            continue
        reason = _error_reason(proc.stderr, proc.returncode)
        if _is_gone(proc.stderr):
            return "unavailable", reason
    return "failed", reason


def download_youtube(
    ids: Sequence[str],
    out_dir: PathLike,
    cfg: YoutubeConfig,
    progress: bool = True,
    retry_unavailable: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> DownloadReport:
    """Download the audio of each YouTube id to ``out_dir/<id>.<ext>``, resumably.

    Ids with a finished file are skipped; ids logged as unavailable by an earlier run are not
    requested again unless ``retry_unavailable``; failed ones are. Only a yt-dlp command that
    cannot be run raises (:class:`DownloadError`): then nothing could work.
    """
    ids = list(dict.fromkeys(ids))
    bad = [video_id for video_id in ids if not _ID_RE.fullmatch(video_id)]
    if bad:
        raise ValueError(f"{len(bad)} ids are not YouTube ids ([A-Za-z0-9_-]+), e.g. {bad[:5]!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / LOG_FILE
    outcomes = _read_log(log_path)
    # Compact the log (and drop a line cut short by a kill) before appending to it.
    lines = [_LOG_HEADER] + [f"{vid}\t{status}\t{reason}" for vid, (status, reason) in outcomes.items()]
    atomic_write_text(log_path, "\n".join(lines) + "\n")
    finished = _finished_files(out)
    report = DownloadReport([], [], {}, {})
    pacer = _Pacer(sleep, clock)
    with (
        open(log_path, "a", encoding="utf-8") as log,
        tqdm(ids, desc="yt-dlp", unit="video", disable=not progress, file=sys.stderr) as bar,
    ):
        for video_id in bar:
            previous = outcomes.get(video_id)
            if video_id in finished:
                status, reason = "present", ""
            elif previous and previous[0] == "unavailable" and not retry_unavailable:
                status, reason = previous
            else:
                status, reason = _download_one(video_id, out, cfg, pacer)
            if status == "unavailable":
                report.unavailable[video_id] = reason
            elif status == "failed":
                report.failed[video_id] = reason
            else:
                getattr(report, status).append(video_id)
            # Appended and flushed per id: a kill loses at most the id in progress.
            log.write(f"{video_id}\t{status}\t{reason}\n")
            log.flush()
            bar.set_postfix(unavailable=len(report.unavailable), failed=len(report.failed), refresh=False)
    atomic_write_json(out / REPORT_FILE, report.to_dict())
    return report


# --------------------------------------------------------------------------- archives


@dataclass(frozen=True)
class ArchiveSpec:
    """One file to fetch; ``name`` defaults to the last path part of the url."""

    url: str
    sha256: str | None
    name: str | None = None

    def file_name(self) -> str:
        name = self.name or PurePosixPath(unquote(urlsplit(self.url).path)).name
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            raise ValueError(f"{self.url}: cannot use {name!r} as a file name; give ArchiveSpec.name")
        return name


_TAR_MODES = {".tar": "r:", ".tar.gz": "r:gz", ".tgz": "r:gz", ".tar.bz2": "r:bz2", ".tar.xz": "r:xz"}


def _tar_mode(name: str) -> str | None:
    lower = name.lower()
    return next((mode for suffix, mode in _TAR_MODES.items() if lower.endswith(suffix)), None)


def _check_inside(archive: str, member: str, root: Path, target: str) -> None:
    """Refuse a member whose path (or link target) is absolute, uses '..' or resolves outside root."""
    parts = target.replace("\\", "/").split("/")
    outside = (
        target.startswith(("/", "\\"))
        or re.match(r"[A-Za-z]:", target) is not None
        or ".." in parts
        or not (root / target).resolve().is_relative_to(root)
    )
    if outside:
        raise DownloadError(
            f"{archive}: member {member!r} would be written outside the extraction folder ({target!r}); archive refused"
        )


def _check_tar(archive: str, tar: tarfile.TarFile, root: Path) -> None:
    for m in tar.getmembers():
        _check_inside(archive, m.name, root, m.name)
        if m.issym():  # relative to the link's folder; "sub/../x" is fine, "../x" is not
            _check_inside(
                archive, m.name, root, posixpath.normpath(posixpath.join(posixpath.dirname(m.name), m.linkname))
            )
        elif m.islnk():  # relative to the archive root
            _check_inside(archive, m.name, root, posixpath.normpath(m.linkname))
        elif not (m.isfile() or m.isdir()):
            raise DownloadError(f"{archive}: member {m.name!r} is a device or fifo; archive refused")


def _extract(archive: Path, extract_dir: Path) -> int:
    """Unpack (or copy, when not an archive) into extract_dir after checking every member
    first, so that a refused archive writes nothing; returns the member count."""
    root = extract_dir.resolve()
    name = archive.name
    try:
        if name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                for info in infos:  # zipfile writes symlinks as plain files: paths suffice
                    _check_inside(name, info.filename, root, info.filename)
                zf.extractall(extract_dir)
                return len(infos)
        mode = _tar_mode(name)
        if mode:
            with tarfile.open(archive, mode) as tar:
                _check_tar(name, tar, root)
                # The "data" filter also drops setuid bits and the like where Python has it.
                tar.extractall(extract_dir, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
                return len(tar.getmembers())
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise DownloadError(f"{name}: extraction failed ({exc})") from exc
    target = extract_dir / name
    if target.resolve() != archive.resolve():
        with atomic_path(target) as tmp:
            shutil.copyfile(archive, tmp)
    return 1


def fetch_archives(
    specs: Sequence[ArchiveSpec], download_dir: PathLike, extract_dir: PathLike, progress: bool = True
) -> list[dict]:
    """Download each archive (checksum verified when given) and extract it into extract_dir.

    ``<extract_dir>/.extracted/<name>.<sha256>`` marks a finished extraction, so a second call
    neither downloads nor extracts again. Each result dict has name, url, sha256, bytes,
    extracted (whether this call unpacked or copied it) and members.
    """
    names = [spec.file_name() for spec in specs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"several archives would be saved as {duplicated}")
    download_dir, extract_dir = Path(download_dir), Path(extract_dir)
    extract_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for spec, name in zip(specs, names):
        dest = download_dir / name
        if spec.sha256 is None and dest.is_file():
            digest = download.sha256_file(dest)  # fetch would download again with nothing to compare
        else:
            digest = download.fetch(spec.url, dest, spec.sha256, progress=progress)
        if spec.sha256 is None:
            print(
                f"warning: {name} has no expected SHA-256, so it is unverified (got {digest}); "
                "record this digest to pin it",
                file=sys.stderr,
            )
        marker = extract_dir / ".extracted" / f"{name}.{digest}"
        extracted = not marker.is_file()
        if extracted:
            atomic_write_json(marker, {"members": _extract(dest, extract_dir), "url": spec.url})
        members = json.loads(marker.read_text(encoding="utf-8"))["members"]
        results.append(
            {
                "name": name,
                "url": spec.url,
                "sha256": digest,
                "bytes": dest.stat().st_size,
                "extracted": extracted,
                "members": members,
            }
        )
    return results
