"""The paper's real datasets in their official formats -> the suite's benchmark directories.

Each loader validates what it reads and raises :class:`DatasetError` naming the file, the line
(text formats) and the reason; defects the official files are known to carry (FIVR-200K's
annotation lists repeat ids) are repaired and counted in a report instead of failing.

Official formats read here:

* FIVR-200K ``annotation.json``: ``{query: {label: [YouTube ids]}}`` with labels ND, DS, CS, IS;
  the audio annotation of FIVR-200K_a adds DA, either inside that file or in a second file of the
  same shape. ``youtube_ids.txt``: one id per line.
* SVD ``test_groundtruth``: ``query candidate label`` per line (label 0/1, ids may carry ``.mp4``);
  ``unlabeled-data-id``: one id per line. SVD_a's audio annotation: ``{query: {"DA": [ids]}}``.
* VCDB ``annotation/<topic>.txt``: ``a,b,HH:MM:SS,HH:MM:SS,HH:MM:SS,HH:MM:SS`` per copied segment
  (video a from..to, video b from..to); videos under ``core_dataset/<topic>/``.
* EVVE ``annots/<event>.dat``: ``video gt split`` per line, split ``query`` or ``database``;
  gt > 0 positive, 0 null (left out of the ranking), < 0 negative.

Every benchmark directory holds ``queries.txt`` and ``database.txt`` (``id path``),
``dataset_ids.txt`` and ``annotation.json``, exactly what ``ausil similarity`` and
``ausil evaluate`` read for the embedded corpus.
"""

from __future__ import annotations

import builtins
import gzip
import io
import json
import os
import pickle
import re
import tarfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ...core.formats import FormatError, read_annotations, read_ids, write_annotations, write_ids, write_video_list
from ...core.labels import DA, speed_copy_id
from .fetch import media_id

FIVR_LABELS = ("ND", "DS", "CS", "IS")
# FIVR's three visual tasks and the labels each counts as relevant (FIVR evaluation.py)
VISUAL_TASKS = {"dsvr": ["ND", "DS"], "csvr": ["ND", "DS", "CS"], "isvr": ["ND", "DS", "CS", "IS"]}
POS, NULL = "POS", "NULL"  # labels of the SVD / EVVE visual benchmarks
YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")


class DatasetError(ValueError):
    """An input file of a dataset is missing or malformed; the message names it and says why."""

    def __init__(self, path: str | os.PathLike[str], reason: str, line: int | None = None) -> None:
        self.path, self.reason, self.line = os.fspath(path), reason, line
        where = self.path if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {reason}")

    def __reduce__(self) -> tuple[type[DatasetError], tuple[str, str, int | None]]:
        return (self.__class__, (self.path, self.reason, self.line))


@dataclass
class LoadReport:
    """What a loader repaired or could not match; written beside the benchmarks, never silent."""

    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def to_dict(self) -> dict[str, Any]:
        return {"notes": list(self.notes), "counts": dict(self.counts)}


def examples(items: Iterable[str], limit: int = 5) -> str:
    items = sorted(items)
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _require_file(path: str | os.PathLike[str], what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, f"{what} not found" + (" (it is a directory)" if path.is_dir() else ""))
    return path


def _annotation_json(path: str | os.PathLike[str], what: str) -> dict[str, dict[str, list[str]]]:
    try:
        return read_annotations(_require_file(path, what))
    except FormatError as exc:
        raise DatasetError(exc.path, exc.reason, exc.line) from exc


def _id_list(path: str | os.PathLike[str], what: str) -> list[str]:
    try:
        return read_ids(_require_file(path, what))
    except FormatError as exc:
        raise DatasetError(exc.path, exc.reason, exc.line) from exc


def _dedupe(labels: Mapping[str, Sequence[str]], report: LoadReport, query: str) -> dict[str, list[str]]:
    out = {}
    for label, videos in labels.items():
        unique = list(dict.fromkeys(videos))
        if len(unique) < len(videos):
            report.counts["duplicate_entries_removed"] = (
                report.counts.get("duplicate_entries_removed", 0) + len(videos) - len(unique)
            )
        out[label] = unique
    return out


# ------------------------------------------------------------------ FIVR-200K


@dataclass
class Fivr:
    annotation: dict[str, dict[str, list[str]]]  # query -> label -> ids (ND/DS/CS/IS and DA)
    ids: list[str]  # the dataset's YouTube ids (queries included)
    report: LoadReport

    def audio_queries(self) -> list[str]:
        """Queries with at least one DA video: the 76 queries of FIVR-200K_a."""
        return [q for q, labels in self.annotation.items() if labels.get(DA)]


def load_fivr(
    annotation_path: str | os.PathLike[str],
    ids_path: str | os.PathLike[str],
    audio_annotation_path: str | os.PathLike[str] | None = None,
) -> Fivr:
    """FIVR-200K's annotation and id list, plus the DA labels of FIVR-200K_a when given separately."""
    report = LoadReport()
    raw = _annotation_json(annotation_path, "FIVR-200K annotation.json")
    allowed = set(FIVR_LABELS) | {DA}
    annotation: dict[str, dict[str, list[str]]] = {}
    for query, labels in raw.items():
        unknown = sorted(set(labels) - allowed)
        if unknown:
            raise DatasetError(
                annotation_path, f"query {query!r}: unknown label(s) {unknown}; FIVR labels are {sorted(allowed)}"
            )
        annotation[query] = _dedupe(labels, report, query)
    if audio_annotation_path is not None:
        audio = _annotation_json(audio_annotation_path, "FIVR-200K_a audio annotation")
        for query, labels in audio.items():
            extra = sorted(set(labels) - {DA})
            if extra:
                raise DatasetError(
                    audio_annotation_path, f"query {query!r}: label(s) {extra}; the audio annotation holds DA only"
                )
            if query not in annotation:
                raise DatasetError(audio_annotation_path, f"query {query!r} is not a FIVR-200K query")
            if annotation[query].get(DA) and annotation[query][DA] != list(dict.fromkeys(labels.get(DA, []))):
                raise DatasetError(
                    audio_annotation_path,
                    f"query {query!r}: DA labels disagree with those already in {annotation_path}",
                )
            annotation[query].update(_dedupe(labels, report, query))
    ids = _id_list(ids_path, "FIVR-200K youtube_ids.txt")
    bad = [v for v in ids if not YOUTUBE_ID.match(v)]
    if bad:
        raise DatasetError(ids_path, f"{len(bad)} malformed YouTube id(s): {examples(bad)}")
    known = set(ids)
    missing_q = [q for q in annotation if q not in known]
    if missing_q:
        report.note(f"{len(missing_q)} queries are not in the id list: {examples(missing_q)}")
    labelled = {v for labels in annotation.values() for vids in labels.values() for v in vids}
    unlisted = labelled - known
    if unlisted:
        report.note(
            f"{len(unlisted)} annotated videos are not in the id list (they cannot be retrieved): {examples(unlisted)}"
        )
    report.counts.update(
        queries=len(annotation),
        videos=len(ids),
        audio_queries=sum(1 for labels in annotation.values() if labels.get(DA)),
        da_pairs=sum(len(labels.get(DA, [])) for labels in annotation.values()),
    )
    if not report.counts["audio_queries"]:
        report.note(
            "no DA labels: only the visual tasks can be evaluated (the audio annotation of "
            "FIVR-200K_a comes from the AuSiL authors; set its file in params.yaml)"
        )
    return Fivr(annotation, ids, report)


@dataclass(frozen=True)
class Subset:
    """A composed subset: its queries, its database ids and the annotation restricted to it."""

    queries: list[str]
    database: list[str]
    annotation: dict[str, dict[str, list[str]]]


def restrict(
    annotation: Mapping[str, Mapping[str, Sequence[str]]], queries: Sequence[str], database: Iterable[str]
) -> dict[str, dict[str, list[str]]]:
    """The labels of `queries`, keeping only videos of `database` (relevance is the original label)."""
    db = set(database)
    return {q: {label: [v for v in vids if v in db] for label, vids in annotation[q].items()} for q in queries}


def compose_fivr5k(
    fivr: Fivr, n_queries: int = 50, da_fraction: float = 0.35, distractors: int = 5000, seed: int = 0
) -> Subset:
    """FIVR-5K_a as the paper composes it: random audio queries, a share of each one's DA videos,
    and distractors related to no query under any label. Seeded, so the subset is fixed by params."""
    if not 0 < da_fraction <= 1:
        raise ValueError(f"da_fraction must be in (0, 1], got {da_fraction}")
    rng = np.random.default_rng(seed)
    eligible = sorted(fivr.audio_queries())
    if len(eligible) < n_queries:
        raise ValueError(f"FIVR-5K_a needs {n_queries} queries with DA labels; the annotation has {len(eligible)}")
    queries = sorted(rng.choice(eligible, size=n_queries, replace=False).tolist())
    known = set(fivr.ids)
    chosen: set[str] = set()
    for q in queries:
        da = sorted(v for v in fivr.annotation[q][DA] if v in known)
        if da:
            k = max(1, int(round(da_fraction * len(da))))
            chosen.update(rng.choice(da, size=k, replace=False).tolist())
    related = set(fivr.annotation) | {
        v for labels in fivr.annotation.values() for vids in labels.values() for v in vids
    }
    pool = sorted(v for v in fivr.ids if v not in related)
    if len(pool) < distractors:
        raise ValueError(f"FIVR-5K_a needs {distractors} distractors; only {len(pool)} unrelated videos exist")
    database = sorted(set(queries) | chosen | set(rng.choice(pool, size=distractors, replace=False).tolist()))
    return Subset(queries, database, restrict(fivr.annotation, queries, database))


def fivr_full(fivr: Fivr) -> Subset:
    """FIVR-200K(_a): all audio queries (all queries when no DA labels exist) against every video."""
    queries = fivr.audio_queries() or list(fivr.annotation)
    return Subset(queries, list(fivr.ids), restrict(fivr.annotation, queries, fivr.ids))


# ------------------------------------------------------------------ SVD


def _svd_id(token: str) -> str:
    return token[:-4] if token.lower().endswith(".mp4") else token


def load_svd_groundtruth(path: str | os.PathLike[str]) -> dict[str, dict[str, int]]:
    """SVD's ``test_groundtruth``: {query: {candidate: 0/1}}; ids without the ``.mp4`` suffix."""
    _require_file(path, "SVD test_groundtruth")
    out: dict[str, dict[str, int]] = {}
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        parts = raw.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise DatasetError(path, f"expected 'query candidate label', got {len(parts)} field(s)", number)
        q, c, lab = _svd_id(parts[0]), _svd_id(parts[1]), parts[2]
        if lab not in ("0", "1"):
            raise DatasetError(path, f"label {lab!r} is not 0 or 1", number)
        prior = out.setdefault(q, {}).get(c)
        if prior is not None and prior != int(lab):
            raise DatasetError(path, f"pair {q} {c} labelled both {prior} and {lab}", number)
        out[q][c] = int(lab)
    if not out:
        raise DatasetError(path, "no labelled pair")
    return out


@dataclass
class Svd:
    groundtruth: dict[str, dict[str, int]]
    audio: dict[str, list[str]]  # SVD_a: query -> DA ids (empty without the audio annotation)
    unlabeled: list[str]
    report: LoadReport


def load_svd(
    groundtruth_path: str | os.PathLike[str],
    audio_annotation_path: str | os.PathLike[str] | None = None,
    unlabeled_path: str | os.PathLike[str] | None = None,
) -> Svd:
    report = LoadReport()
    gt = load_svd_groundtruth(groundtruth_path)
    audio: dict[str, list[str]] = {}
    if audio_annotation_path is not None:
        for q, labels in _annotation_json(audio_annotation_path, "SVD_a audio annotation").items():
            extra = sorted(set(labels) - {DA})
            if extra:
                raise DatasetError(audio_annotation_path, f"query {q!r}: label(s) {extra}; SVD_a holds DA only")
            q = _svd_id(q)
            if q not in gt:
                raise DatasetError(audio_annotation_path, f"query {q!r} is not an SVD query")
            ids = [_svd_id(v) for v in dict.fromkeys(labels.get(DA, []))]
            if ids:
                audio[q] = ids
    unlabeled = [_svd_id(v) for v in _id_list(unlabeled_path, "SVD unlabeled-data-id")] if unlabeled_path else []
    report.counts.update(
        queries=len(gt),
        labelled_pairs=sum(len(c) for c in gt.values()),
        audio_queries=len(audio),
        da_pairs=sum(len(v) for v in audio.values()),
        unlabeled=len(unlabeled),
    )
    return Svd(gt, audio, unlabeled, report)


def svd_audio(svd: Svd) -> Subset:
    """SVD_a: the queries with DA pairs against the labelled videos of those queries and their DA videos."""
    queries = sorted(svd.audio)
    database = set(queries)
    for q in queries:
        database.update(svd.groundtruth[q])
        database.update(svd.audio[q])
    return Subset(queries, sorted(database), {q: {DA: list(svd.audio[q])} for q in queries})


def svd_visual(svd: Svd, include_unlabeled: bool = False) -> Subset:
    """SVD's near-duplicate task: every query against the labelled set (plus, optionally, the unlabeled)."""
    queries = sorted(svd.groundtruth)
    database = set(queries) | {c for cands in svd.groundtruth.values() for c in cands}
    if include_unlabeled:
        database.update(svd.unlabeled)
    ann = {q: {POS: sorted(c for c, lab in svd.groundtruth[q].items() if lab == 1)} for q in queries}
    return Subset(queries, sorted(database), ann)


# ------------------------------------------------------------------ VCDB


@dataclass(frozen=True)
class CopyPair:
    topic: str
    a: str
    b: str
    a_span: tuple[float, float]
    b_span: tuple[float, float]


def _hms(token: str, path: Path, number: int) -> float:
    parts = token.strip().split(":")
    try:
        if len(parts) != 3:
            raise ValueError
        h, m, s = int(parts[0]), int(parts[1]), float(parts[2])
    except ValueError:
        raise DatasetError(path, f"time {token.strip()!r} is not HH:MM:SS", number) from None
    if min(h, m, s) < 0 or m >= 60 or s >= 60:
        raise DatasetError(path, f"time {token.strip()!r} is out of range", number)
    return h * 3600 + m * 60 + s


def _stem(name: str) -> str:
    return Path(name.strip()).stem


def load_vcdb(annotation_dir: str | os.PathLike[str]) -> list[CopyPair]:
    """VCDB's copied segments, one file per topic; video ids are the file stems (SHA-1 names)."""
    annotation_dir = Path(annotation_dir)
    if not annotation_dir.is_dir():
        raise DatasetError(annotation_dir, "VCDB annotation directory not found")
    files = sorted(annotation_dir.glob("*.txt"))
    if not files:
        raise DatasetError(annotation_dir, "no <topic>.txt annotation file")
    pairs = []
    for path in files:
        for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not raw.strip():
                continue
            parts = raw.strip().rstrip(",").split(",")
            if len(parts) != 6:
                raise DatasetError(
                    path,
                    f"expected 6 comma-separated fields (a,b,start_a,end_a,start_b,end_b), got {len(parts)}",
                    number,
                )
            times = [_hms(t, path, number) for t in parts[2:]]
            if times[1] < times[0] or times[3] < times[2]:
                raise DatasetError(path, "a segment ends before it starts", number)
            pairs.append(
                CopyPair(path.stem, _stem(parts[0]), _stem(parts[1]), (times[0], times[1]), (times[2], times[3]))
            )
    return pairs


def vcdb_splits(pairs: Sequence[CopyPair], val_topics: int, seed: int) -> dict[str, Subset]:
    """VCDB core as training material: every video with a copy is a query whose copies are positives.

    Topics are split between train and val (no topic, hence no source video, in both), so the model
    selection on val never sees a training video. Videos of one topic are each other's database.
    """
    topics = sorted({p.topic for p in pairs})
    if val_topics >= len(topics):
        raise ValueError(f"val_topics={val_topics} leaves no training topic (VCDB has {len(topics)} here)")
    rng = np.random.default_rng(seed)
    val = set(rng.choice(topics, size=val_topics, replace=False).tolist()) if val_topics else set()
    out = {}
    for split, keep in (("train", [t for t in topics if t not in val]), ("val", sorted(val))):
        if not keep:
            continue
        links: dict[str, set[str]] = {}
        videos: set[str] = set()
        for p in pairs:
            if p.topic in keep and p.a != p.b:
                links.setdefault(p.a, set()).add(p.b)
                links.setdefault(p.b, set()).add(p.a)
            if p.topic in keep:
                videos.update((p.a, p.b))
        queries = sorted(links)
        out[split] = Subset(queries, sorted(videos), {q: {DA: sorted(links[q])} for q in queries})
    return out


# ------------------------------------------------------------------ EVVE


def load_evve(annots_dir: str | os.PathLike[str]) -> dict[str, dict[str, set[str]]]:
    """EVVE's events: {event: {"query", "positive", "null", "negative": ids}}."""
    annots_dir = Path(annots_dir)
    if not annots_dir.is_dir():
        raise DatasetError(annots_dir, "EVVE annots directory not found")
    events = {}
    for path in sorted(annots_dir.glob("*.dat")):
        ev: dict[str, set[str]] = {"query": set(), "positive": set(), "null": set(), "negative": set()}
        for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            parts = raw.split()
            if not parts:
                continue
            if len(parts) != 3:
                raise DatasetError(path, f"expected 'video gt split', got {len(parts)} field(s)", number)
            vid, gt, split = parts
            try:
                score = int(gt)
            except ValueError:
                raise DatasetError(path, f"gt {gt!r} is not an integer", number) from None
            if split == "query":
                ev["query"].add(vid)
            elif split == "database":
                ev["positive" if score > 0 else "null" if score == 0 else "negative"].add(vid)
            else:
                raise DatasetError(path, f"split {split!r} is neither 'query' nor 'database'", number)
        if not ev["query"]:
            raise DatasetError(path, "event has no query")
        events[path.name.split(".")[0]] = ev
    if not events:
        raise DatasetError(annots_dir, "no <event>.dat file")
    return events


def evve_visual(events: Mapping[str, Mapping[str, set[str]]]) -> Subset:
    """Every EVVE query against the whole database; nulls of its event are left out of its ranking."""
    queries = sorted(q for ev in events.values() for q in ev["query"])
    database = sorted(
        set(queries) | {v for ev in events.values() for k in ("positive", "null", "negative") for v in ev[k]}
    )
    ann = {q: {POS: sorted(ev["positive"]), NULL: sorted(ev["null"])} for ev in events.values() for q in ev["query"]}
    return Subset(queries, database, ann)


# ------------------------------------------------------------------ videos on disk


def find_media(video_dir: str | os.PathLike[str], ids: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """Files named ``<id>.<ext>`` anywhere under `video_dir` (archives nest them); ids without one."""
    wanted = set(ids)
    found: dict[str, str] = {}
    root = Path(video_dir)
    if root.is_dir():
        for dirpath, _dirs, files in os.walk(root):
            for name in sorted(files):
                vid = media_id(name)
                if vid in wanted and vid not in found:
                    found[vid] = str(Path(dirpath) / name)
    return found, sorted(wanted - set(found))


@dataclass(frozen=True)
class TaskFiles:
    """One evaluation task: what `ausil similarity` / `ausil evaluate` need, and how to score it."""

    name: str
    queries: dict[str, str]
    database: dict[str, str]
    annotation: dict[str, dict[str, list[str]]]
    relevant: list[str]
    ignore: list[str] = field(default_factory=list)

    def write(self, out_dir: str | os.PathLike[str]) -> None:
        d = Path(out_dir) / self.name
        write_video_list(d / "queries.txt", self.queries)
        write_video_list(d / "database.txt", self.database)
        write_ids(d / "dataset_ids.txt", list(self.database))
        write_annotations(d / "annotation.json", self.annotation)


def available(
    subset: Subset,
    media: Mapping[str, str],
    name: str,
    relevant: Sequence[str],
    ignore: Sequence[str] = (),
    report: LoadReport | None = None,
) -> TaskFiles:
    """The benchmark over the videos that were obtained; what is missing is counted, never hidden.

    A query without its file is dropped; a missing database video stays in no list, so it counts as
    never retrieved for every query that labels it relevant (as the FIVR protocol does)."""
    queries = {q: media[q] for q in subset.queries if q in media}
    database = {v: media[v] for v in subset.database if v in media}
    if report is not None:
        report.counts[f"{name}_queries_missing"] = len(subset.queries) - len(queries)
        report.counts[f"{name}_database_missing"] = len(subset.database) - len(database)
    ann = {
        q: {label: [v for v in vids if v in database] for label, vids in subset.annotation[q].items()} for q in queries
    }
    return TaskFiles(name, queries, database, ann, list(relevant), list(ignore))


def speed_benchmark(
    bench: TaskFiles, speed_media: Mapping[str, str], factors: Sequence[float], name: str | None = None
) -> TaskFiles:
    """The paper's speed protocol: videos originally labelled DA (for any query) leave the dataset and
    each query's copies at the given factors become its only positives."""
    originally_da = {v for labels in bench.annotation.values() for v in labels.get(DA, [])}
    database = {v: p for v, p in bench.database.items() if v not in originally_da}
    ann = {}
    for q in bench.queries:
        copies = [speed_copy_id(q, f) for f in factors if speed_copy_id(q, f) in speed_media]
        database.update({c: speed_media[c] for c in copies})
        ann[q] = {DA: copies}
    return TaskFiles(name or f"{bench.name}_speed", dict(bench.queries), database, ann, [DA])


# ------------------------------------------------------------------ the AuSiL authors' audio annotation
#
# The AuSiL authors share the DA labels of FIVR-200K_a and SVD_a as one Google Drive file whose
# format this project could not inspect (it was not reachable while the suite was built). So the
# file is recognised by its content, not its name: JSON or pickle of {query: {label: [ids]}} (or
# {query: [ids]}, read as DA), either one mapping for both datasets (split by which dataset's
# queries each entry names), or per-dataset parts under top-level keys naming the dataset
# ("fivr...", "SVD_a", ...), or an archive (zip, tar, gzip) of such files, per-dataset files being
# told apart by names holding "fivr" / "svd". Anything else stops with what was found.

AUDIO_ANNOTATION_KINDS = ("fivr", "svd")
_MAX_MEMBER_BYTES = 256 << 20  # an annotation is megabytes; refuse to inflate anything larger
_PICKLE_ALLOWED = frozenset({"dict", "list", "str", "int", "set", "tuple"})


class _PlainUnpickler(pickle.Unpickler):
    """Loads plain containers only: a pickle naming any other class (the way a pickle runs code) is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if module in ("builtins", "__builtin__") and name in _PICKLE_ALLOWED:  # __builtin__: Python 2 pickles
            return getattr(builtins, name)
        raise _ForbiddenPickle(f"{module}.{name}")


class _ForbiddenPickle(pickle.UnpicklingError):
    pass


def _dataset_tag(name: str) -> str | None:
    """'fivr' or 'svd' when `name` (a key or a file name) names exactly one of them, case-insensitively."""
    lower = str(name).lower()
    tags = [k for k in AUDIO_ANNOTATION_KINDS if k in lower]
    return tags[0] if len(tags) == 1 else None


def _is_dataset_part(value: Any) -> bool:
    """Whether a top-level value is a dataset's {query: ...} mapping rather than one query's
    {label: [ids]} (a YouTube id can contain "svd": a query is not taken for a dataset key)."""
    labels = {lab.upper() for lab in (*FIVR_LABELS, DA)}
    return isinstance(value, Mapping) and not (value and all(str(k).upper() in labels for k in value))


def _describe(obj: Any, form: str = "") -> str:
    """E.g. 'top-level JSON list of 12 items' (form 'top-level JSON'), 'object of 3 key(s) (a, b, c)'."""
    if isinstance(obj, Mapping):
        text = f"object of {len(obj)} key(s) ({examples(map(str, obj), 4)})"
    elif isinstance(obj, (list, tuple, set, frozenset)):
        text = f"{'list' if isinstance(obj, list) else type(obj).__name__} of {len(obj)} items"
    else:
        text = type(obj).__name__
    return f"{form} {text}".strip()


def _sniff(data: bytes) -> str:
    """What unrecognised content looks like, for the error message."""
    if not data.strip():
        return "an empty file"
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return (
            "an HTML page (Google Drive answers with one when the file is not shared publicly or its "
            "download quota is exceeded)"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None
    if text is None or any(ord(c) < 32 and c not in "\t\n\r\f\v" for c in text[:4096]):
        return f"binary data of {len(data)} bytes starting with {data[:8].hex(' ')}"
    lines = text.splitlines()
    return f"text of {len(lines)} line(s) starting {lines[0][:60]!r}"


def _parse(data: bytes, where: str) -> tuple[str, Any] | None:
    """("JSON" | "pickle", object) for JSON or pickle content; None for anything else.

    A pickle naming a class other than the plain containers raises DatasetError: it is never loaded."""
    if not data.startswith(b"\x80"):  # pickles of protocol >= 2 start with PROTO
        try:
            return "JSON", json.loads(data.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            pass
        if not data.endswith(b"."):  # every pickle ends with STOP; text is not fed to the unpickler
            return None
    try:
        return "pickle", _PlainUnpickler(io.BytesIO(data), encoding="utf-8").load()
    except _ForbiddenPickle as exc:
        raise DatasetError(
            where,
            f"pickle refers to {exc}; only plain dict / list / str / int / set / tuple "
            "pickles are loaded (unpickling another class can run code), so it was refused",
        ) from None
    except Exception:  # noqa: BLE001 -- any other failure just means "not a readable pickle"
        return None


def _archive_members(path: Path, data: bytes) -> tuple[str, list[tuple[str, bytes]]] | None:
    """(archive kind, [(member name, bytes)]) of a zip, tar or gzip file; None when it is none of them."""

    def check(name: str, size: int) -> None:
        if size > _MAX_MEMBER_BYTES:
            raise DatasetError(path, f"archive member {name!r} is {size} bytes; an annotation is far smaller")

    buf = io.BytesIO(data)
    if zipfile.is_zipfile(buf):
        with zipfile.ZipFile(buf) as zf:
            out = []
            for info in zf.infolist():
                if not info.is_dir():
                    check(info.filename, info.file_size)
                    out.append((info.filename, zf.read(info)))
            return "zip", out
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            out = []
            for m in tar.getmembers():
                if m.isfile():
                    check(m.name, m.size)
                    out.append((m.name, tar.extractfile(m).read()))
            return "tar", out
    except tarfile.TarError:
        pass
    if data.startswith(b"\x1f\x8b"):
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
                inner = gz.read(_MAX_MEMBER_BYTES + 1)
        except (OSError, EOFError) as exc:
            raise DatasetError(path, f"gzip data that cannot be decompressed ({exc})") from None
        check(path.name[:-3] if path.name.endswith(".gz") else path.name, len(inner))
        return "gzip", [(path.name[:-3] if path.name.endswith(".gz") else path.name, inner)]
    return None


def _ignored_member(name: str) -> bool:
    base = PurePosixPath(name).name
    return name.startswith("__MACOSX/") or base.startswith("._") or base == ".DS_Store"


def _as_id(value: Any, path: Path, where: str) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DatasetError(path, f"{where}: video id {value!r} is not a string")
    return str(value)


def _normalise_audio_part(part: Any, path: Path, where: str) -> dict[str, dict[str, list[str]]]:
    """{query: {"DA": [ids]}} from {query: {label: [ids]}} (label DA only) or {query: [ids]}."""
    if not isinstance(part, Mapping):
        raise DatasetError(path, f"{where}: expected {{query: {{label: [ids]}}}}, found {_describe(part)}")
    out: dict[str, dict[str, list[str]]] = {}
    for raw_q, labels in part.items():
        q = _as_id(raw_q, path, f"{where}, query key")
        if isinstance(labels, (list, tuple, set, frozenset)):
            labels = {DA: labels}
        if not isinstance(labels, Mapping):
            raise DatasetError(
                path, f"{where}, query {q!r}: expected {{label: [ids]}} or [ids], found {type(labels).__name__}"
            )
        other = sorted(str(lab) for lab in labels if str(lab).upper() != DA)
        if other:
            raise DatasetError(path, f"{where}, query {q!r}: label(s) {other}; the audio annotation holds DA only")
        ids: list[str] = []
        for lab, vids in labels.items():
            if isinstance(vids, (str, bytes)) or not isinstance(vids, (list, tuple, set, frozenset)):
                raise DatasetError(
                    path,
                    f"{where}, query {q!r}, label {lab!r}: expected a list of video ids, found {type(vids).__name__}",
                )
            batch = [_as_id(v, path, f"{where}, query {q!r}") for v in vids]
            ids += sorted(batch) if isinstance(vids, (set, frozenset)) else batch
        out[q] = {DA: list(dict.fromkeys(ids))}
    return out


def read_authors_audio_annotation(
    path: str | os.PathLike[str], kind: str, known_queries: Iterable[str]
) -> tuple[dict[str, dict[str, list[str]]], str]:
    """The `kind` ("fivr" / "svd") part of the AuSiL authors' audio annotation file, as
    ``{query: {"DA": [ids]}}``, and a one-line account of what was found and used.

    `known_queries` are the dataset's own queries (FIVR-200K's annotation, SVD's test_groundtruth):
    a mapping for both datasets at once is split by them. Raises DatasetError naming the file and
    what it holds when no part for `kind` can be recognised."""
    if kind not in AUDIO_ANNOTATION_KINDS:
        raise ValueError(f"kind must be one of {AUDIO_ANNOTATION_KINDS}, got {kind!r}")
    path = _require_file(path, "AuSiL audio annotation")
    known = {_svd_id(q) if kind == "svd" else q for q in known_queries}
    label = kind.upper()
    data = path.read_bytes()
    archive = _archive_members(path, data)
    if archive is None:
        parsed = _parse(data, str(path))
        if parsed is None:
            raise DatasetError(
                path,
                f"not a recognised audio annotation: found {_sniff(data)}; expected JSON or a "
                "pickle of {query: {label: [ids]}}, or a zip / tar archive of such files",
            )
        docs, container, skipped = [(None, *parsed)], "", []
    else:
        container, members = archive
        docs, skipped = [], []
        for name, blob in members:
            if _ignored_member(name):
                continue
            parsed = _parse(blob, f"{path} (member {name})")
            if parsed is None:
                skipped.append(name)
            else:
                docs.append((name, *parsed))
        if not docs:
            held = examples([n for n, _ in members if not _ignored_member(n)]) or "nothing"
            raise DatasetError(path, f"{container} archive holding {held}: no JSON or pickle annotation inside")

    candidates: list[tuple[Any, str]] = []  # (part, where it came from)
    seen: list[str] = []  # what each document held, for the error message
    for member, form, obj in docs:
        where = f"member {member}" if member else form
        what = _describe(obj, f"top-level {form}") + (f" in {member}" if member else "")
        seen.append(what)
        if not isinstance(obj, Mapping):
            if member is None:
                raise DatasetError(
                    path,
                    f"not a recognised audio annotation: found {what}; expected "
                    "{query: {label: [ids]}} or per-dataset keys (fivr..., svd...)",
                )
            continue
        tags = {k: _dataset_tag(k) if _is_dataset_part(v) else None for k, v in obj.items()}
        if any(tags.values()):  # per-dataset keys
            mine = [k for k, t in tags.items() if t == kind]
            unclear = sorted(str(k) for k, t in tags.items() if t is None and isinstance(obj[k], Mapping))
            if unclear:
                raise DatasetError(
                    path,
                    f"{what}: key(s) {unclear} name neither FIVR nor SVD beside "
                    f"{sorted(str(k) for k, t in tags.items() if t)}; cannot tell which "
                    "dataset they belong to",
                )
            if len(mine) > 1:
                raise DatasetError(path, f"{what}: several {label} keys {sorted(map(str, mine))}; expected one")
            if mine:
                candidates.append((obj[mine[0]], f"{where}, key {mine[0]!r}"))
            continue
        member_tag = (_dataset_tag(PurePosixPath(member).name) or _dataset_tag(member)) if member else None
        if member_tag is not None:  # a per-dataset file
            if member_tag == kind:
                candidates.append((obj, where))
            continue
        # one mapping for both datasets (or for one only): keep the entries naming this dataset's queries
        try:
            part = _normalise_audio_part(obj, path, where)
        except DatasetError as exc:
            if member is None:
                raise
            seen[-1] += f" (not an annotation: {exc.reason})"  # e.g. a metadata file beside the annotations
            continue
        mine = {q: v for q, v in part.items() if (_svd_id(q) if kind == "svd" else q) in known}
        seen[-1] += f", {len(mine)} of whose {len(part)} queries are {label} queries"
        if mine:
            candidates.append((mine, f"{where}: {len(mine)} of {len(part)} queries are {label} queries"))
    if not candidates:
        extra = f"; skipped unreadable member(s) {examples(skipped)}" if skipped else ""
        raise DatasetError(path, f"no {label} audio annotation recognised: found {'; '.join(seen)}{extra}")
    if len(candidates) > 1:
        raise DatasetError(
            path, f"several {label} audio annotations: {'; '.join(w for _, w in candidates)}; expected one"
        )
    part, where = candidates[0]
    annotation = _normalise_audio_part(part, path, where)
    if not annotation:
        raise DatasetError(path, f"{where}: the {label} audio annotation is empty")
    prefix = f"{container} archive, " if container else ""
    return annotation, f"{prefix}{where} ({len(annotation)} queries, {sum(len(v[DA]) for v in annotation.values())} DA)"
