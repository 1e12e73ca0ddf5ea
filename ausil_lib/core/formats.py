"""Readers and writers of the reference file formats (AuSiL / FIVR conventions).

Every reader validates what it loads and raises :class:`FormatError` naming the file, the
reason and, for text files, the line, so that a malformed input stops a run at once instead of
surfacing later as a wrong metric. Every writer goes through :func:`atomic_write_text`, so an
interrupted run never leaves a half-written file that a later stage would trust; files written by
other code (ffmpeg, torch.save, downloaders) go through :func:`atomic_path`, the same temp-then-rename.

Formats:

* video list: one ``id path`` per line, split on the first whitespace run (the path may contain
  spaces); blank lines and lines starting with ``#`` are ignored.
* id list: one id per line (first token); blank lines and ``#`` lines are ignored, as FIVR's
  ``np.loadtxt`` does for ``youtube_ids.txt``.
* results: JSON ``{query_id: {video_id: similarity}}``.
* annotations: JSON ``{query_id: {label: [video ids]}}``.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "FormatError",
    "PathLike",
    "atomic_path",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "read_annotations",
    "read_ids",
    "read_results",
    "read_video_list",
    "write_annotations",
    "write_ids",
    "write_results",
    "write_video_list",
]

PathLike = str | os.PathLike[str]

_COMMENT = "#"
_ENCODING = "utf-8"
_JSON_INDENT = 2
# Permission bits requested for new files; the process umask is applied by the kernel, as for
# a plain open(), so atomic writes do not end up with mkstemp's owner-only 0o600.
_NEW_FILE_MODE = 0o666
TMP_SUFFIX = ".tmp"  # temporary files of atomic writes: ".<name>.<pid>.<random>.tmp"


class FormatError(ValueError):
    """A file does not follow its format; the message names the file, the line and the reason."""

    def __init__(self, path: PathLike, reason: str, line: int | None = None) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        self.line = line
        where = self.path if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {reason}")

    def __reduce__(self) -> tuple[type[FormatError], tuple[str, str, int | None]]:
        # Keeps the exception picklable (multiprocessing workers) despite the custom __init__.
        return (self.__class__, (self.path, self.reason, self.line))


# --------------------------------------------------------------------------- atomic writes


@contextmanager
def atomic_path(path: PathLike, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that wants a file name (ffmpeg, torch.save,
    a downloader); on leaving the block it becomes ``path`` in one rename, so ``path`` is either the old
    file or the complete new one.

    The temporary file ``.<name>.<pid>.<random>.tmp`` is in the same directory (same file system, so
    ``os.replace`` is atomic); ``keep_suffix`` appends the file's extension for writers that choose the
    format by it. Parent directories are created. If the block raises, the temporary file is removed
    and ``path`` is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = TMP_SUFFIX + (target.suffix if keep_suffix else "")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(8)}{suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Have `write` fill a binary handle so that ``path`` is either the old file or the complete new one
    (see :func:`atomic_path`); the data is flushed to disk before the rename."""
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _NEW_FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) atomically (see :func:`atomic_write`)."""
    data = text.encode(_ENCODING)
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON atomically; sorted keys and fixed indent make equal content
    byte-identical (stable DVC hashes). NaN/Infinity are refused: they are not valid JSON."""
    text = json.dumps(obj, sort_keys=True, indent=_JSON_INDENT, ensure_ascii=False, allow_nan=False)
    atomic_write_text(path, text + "\n")


# --------------------------------------------------------------------------- text formats


METRIC_DECIMALS = 3  # the precision every table prints; exact values stay in the per-query files


def metric_values(summary: Mapping[str, Any]) -> dict[str, Any]:
    """A DVC metrics file's record: floats rounded to :data:`METRIC_DECIMALS` (so ``dvc metrics show``
    stays within 200 columns and prints what the tables print), NaN written as null (JSON has no NaN)."""
    out: dict[str, Any] = {}
    for key, value in summary.items():
        if isinstance(value, float):
            out[key] = None if math.isnan(value) else round(value, METRIC_DECIMALS)
        else:
            out[key] = value
    return out


def _read_lines(path: PathLike) -> list[str]:
    """Read a UTF-8 text file as lines, turning a decoding failure into a FormatError."""
    try:
        # Universal newlines, then split on "\n" only: line numbers match what editors show.
        return Path(path).read_text(encoding=_ENCODING).split("\n")
    except UnicodeDecodeError as exc:
        raise FormatError(path, f"not valid UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def _content_lines(path: PathLike) -> Iterable[tuple[int, str]]:
    """Yield ``(line number, stripped line)`` for every line that is neither blank nor a comment."""
    for number, raw in enumerate(_read_lines(path), start=1):
        line = raw.strip()
        if line and not line.startswith(_COMMENT):
            yield number, line


def _check_writable_id(path: PathLike, video_id: object) -> str:
    """Refuse an id that would not read back as itself (empty, whitespace, comment marker)."""
    if not isinstance(video_id, str) or not video_id:
        raise FormatError(path, f"id {video_id!r} is not a non-empty string")
    if video_id.split() != [video_id] or video_id.startswith(_COMMENT):
        raise FormatError(path, f"id {video_id!r} contains whitespace or starts with {_COMMENT!r}")
    return video_id


def read_video_list(path: PathLike) -> dict[str, str]:
    """Read ``id path`` lines into an ordered ``{id: path}``; duplicates and missing paths fail."""
    videos: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    for number, line in _content_lines(path):
        parts = line.split(None, 1)
        if len(parts) < 2:
            raise FormatError(path, f"id {parts[0]!r} has no path (expected 'id path')", number)
        video_id, video_path = parts
        if video_id in videos:
            raise FormatError(path, f"duplicate id {video_id!r} (first on line {first_seen[video_id]})", number)
        videos[video_id] = video_path
        first_seen[video_id] = number
    return videos


def write_video_list(path: PathLike, videos: Mapping[str, str]) -> None:
    """Write ``{id: path}`` as ``id path`` lines, refusing entries that would not read back."""
    lines = []
    for video_id, video_path in videos.items():
        _check_writable_id(path, video_id)
        if (
            not isinstance(video_path, str)
            or not video_path
            or video_path != video_path.strip()
            or "\n" in video_path
            or "\r" in video_path
        ):
            raise FormatError(
                path,
                f"path {video_path!r} of id {video_id!r} is empty, has surrounding whitespace or spans several lines",
            )
        lines.append(f"{video_id} {video_path}\n")
    atomic_write_text(path, "".join(lines))


def read_ids(path: PathLike) -> list[str]:
    """Read one id per line (first token) in file order; a duplicated id fails."""
    ids: list[str] = []
    first_seen: dict[str, int] = {}
    for number, line in _content_lines(path):
        video_id = line.split(None, 1)[0]
        if video_id in first_seen:
            raise FormatError(path, f"duplicate id {video_id!r} (first on line {first_seen[video_id]})", number)
        first_seen[video_id] = number
        ids.append(video_id)
    return ids


def write_ids(path: PathLike, ids: Iterable[str]) -> None:
    """Write one id per line, refusing duplicates and ids that would not read back."""
    seen: set[str] = set()
    lines = []
    for video_id in ids:
        _check_writable_id(path, video_id)
        if video_id in seen:
            raise FormatError(path, f"duplicate id {video_id!r}")
        seen.add(video_id)
        lines.append(f"{video_id}\n")
    atomic_write_text(path, "".join(lines))


# --------------------------------------------------------------------------- JSON formats


class _DuplicateKey(Exception):
    """Raised inside the JSON parser; turned into a FormatError once the file name is known."""


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON object hook: plain json keeps the last of duplicated keys silently; refuse instead."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


def _load_json(path: PathLike) -> Any:
    """Parse a JSON file, reporting syntax errors with their line and duplicated keys."""
    try:
        text = Path(path).read_text(encoding=_ENCODING)
    except UnicodeDecodeError as exc:
        raise FormatError(path, f"not valid UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        return json.loads(text, object_pairs_hook=_unique_object)
    except json.JSONDecodeError as exc:
        raise FormatError(path, f"invalid JSON: {exc.msg} (column {exc.colno})", exc.lineno) from exc
    except _DuplicateKey as exc:
        raise FormatError(path, f"duplicate JSON key {exc.args[0]!r}") from exc


def _type_name(value: object) -> str:
    return type(value).__name__


def _validate_results(path: PathLike, results: Any) -> dict[str, dict[str, float]]:
    """Check ``{query: {video: finite number}}`` and return a plain copy with float values."""
    if not isinstance(results, Mapping):
        raise FormatError(path, f"results must be an object of queries, got {_type_name(results)}")
    clean: dict[str, dict[str, float]] = {}
    for query, sims in results.items():
        if not isinstance(query, str):
            raise FormatError(path, f"query id {query!r} is not a string")
        if not isinstance(sims, Mapping):
            raise FormatError(path, f"query {query!r}: expected an object of similarities, got {_type_name(sims)}")
        row: dict[str, float] = {}
        for video, sim in sims.items():
            if not isinstance(video, str):
                raise FormatError(path, f"query {query!r}: video id {video!r} is not a string")
            # bool is an int subclass but a similarity of `true` is a producer bug, not a number.
            if isinstance(sim, bool) or not isinstance(sim, (int, float)):
                raise FormatError(path, f"query {query!r}, video {video!r}: similarity {sim!r} is not a number")
            if not math.isfinite(sim):
                raise FormatError(path, f"query {query!r}, video {video!r}: similarity {sim!r} is not finite")
            row[video] = float(sim)
        clean[query] = row
    return clean


def read_results(path: PathLike) -> dict[str, dict[str, float]]:
    """Read a results file ``{query_id: {video_id: similarity}}`` with finite similarities."""
    return _validate_results(path, _load_json(path))


def write_results(path: PathLike, results: Mapping[str, Mapping[str, float]]) -> None:
    """Validate and write a results file (sorted keys: same content, same bytes)."""
    atomic_write_json(path, _validate_results(path, results))


def _validate_annotations(path: PathLike, annotations: Any) -> dict[str, dict[str, list[str]]]:
    """Check ``{query: {label: [video ids]}}`` and return a plain copy."""
    if not isinstance(annotations, Mapping):
        raise FormatError(path, f"annotations must be an object of queries, got {_type_name(annotations)}")
    clean: dict[str, dict[str, list[str]]] = {}
    for query, labels in annotations.items():
        if not isinstance(query, str):
            raise FormatError(path, f"query id {query!r} is not a string")
        if not isinstance(labels, Mapping):
            raise FormatError(path, f"query {query!r}: expected an object of labels, got {_type_name(labels)}")
        clean_labels: dict[str, list[str]] = {}
        for label, videos in labels.items():
            if not isinstance(label, str):
                raise FormatError(path, f"query {query!r}: label {label!r} is not a string")
            if isinstance(videos, (str, bytes)) or not isinstance(videos, Sequence):
                raise FormatError(
                    path,
                    f"query {query!r}, label {label!r}: expected a list of video ids, got {_type_name(videos)}",
                )
            for video in videos:
                if not isinstance(video, str):
                    raise FormatError(path, f"query {query!r}, label {label!r}: video id {video!r} is not a string")
            clean_labels[label] = list(videos)
        clean[query] = clean_labels
    return clean


def read_annotations(path: PathLike) -> dict[str, dict[str, list[str]]]:
    """Read an annotation file ``{query_id: {label: [video ids]}}``."""
    return _validate_annotations(path, _load_json(path))


def write_annotations(path: PathLike, annotations: Mapping[str, Mapping[str, Sequence[str]]]) -> None:
    """Validate and write an annotation file (sorted keys; list order is kept)."""
    atomic_write_json(path, _validate_annotations(path, annotations))


def write_unavailable(output: str | os.PathLike[str], method: str, label: str, note: str) -> None:
    """Record a run that cannot be made here (its model is absent) so that every table still has its row.

    The results file is empty and `.timing.json` says why; `ausil evaluate` turns that into metrics that
    say "not available" instead of a score.
    """
    output = Path(output)
    write_results(output, {})
    atomic_write_json(
        output.with_name(output.stem + ".timing.json"),
        {"method": method, "label": label, "available": False, "note": note},
    )


def read_unavailable(results: str | os.PathLike[str]) -> str | None:
    """The note of a run recorded by `write_unavailable`, or None for a run that was made."""
    timing = Path(results).with_name(Path(results).stem + ".timing.json")
    if not timing.is_file():
        return None
    record = json.loads(timing.read_text(encoding="utf-8"))
    return None if record.get("available", True) else str(record.get("note", "not available"))
