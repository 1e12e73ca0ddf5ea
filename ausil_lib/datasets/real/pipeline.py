"""The real-dataset stages of dvc.yaml, one function per stage, driven by params.yaml `datasets`.

For a dataset NAME (a key of `datasets`), everything lives under `<datasets.root>/NAME/`:

    raw/              annotation files as distributed (checksummed downloads, archives extracted);
                      authors_audio_annotation.json: this dataset's part of the AuSiL authors' DA labels
    plan.json         the tasks composed from the annotations (queries, database ids, labels)
    wanted_ids.txt    the videos the tasks need
    videos/           the media: yt-dlp downloads (FIVR) or extracted archives (SVD, VCDB, EVVE)
    speed/            the queries re-rendered at the speed factors (audio tasks)
    bench/<task>/     queries.txt, database.txt, dataset_ids.txt, annotation.json (VCDB: + true_segments.json)
    all_videos.txt    every file the features stage extracts
    benchmarks.json   per task: relevant / ignored labels, counts, what was missing

Stages: annotations -> videos -> benchmarks -> features (sharded store) -> [train, VCDB] -> evaluate.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from tqdm import tqdm

from ...audio.decode import AudioError, encode, load_audio
from ...core.config import ArchiveEntry, AudioConfig, DatasetConfig, Params
from ...core.formats import atomic_path, atomic_write_json, read_ids, read_video_list, write_ids, write_video_list
from ...core.labels import BASELINES, DA, speed_copy_id
from . import loaders as ds
from .settings import StageError, dataset_config, dataset_dir

FLAC = ["-c:a", "flac"]


def _raw_path(base: Path, cfg: DatasetConfig, key: str, required: bool = True) -> Path | None:
    rel = getattr(cfg.layout, key)
    if rel is None:
        if required:
            raise StageError(f"datasets layout.{key} is not set: the stage needs that file")
        return None
    return base / "raw" / rel


def _archive_specs(entries: tuple[ArchiveEntry, ...], where: str) -> list:
    from .fetch import ArchiveSpec

    specs = []
    for i, entry in enumerate(entries):
        if not entry.url:
            raise StageError(
                f"{where}[{i}].url is not set. This file is not publicly downloadable without the "
                "authors' permission; obtain it, then give its file:// (or http) URL and its sha256"
            )
        specs.append(ArchiveSpec(entry.url, entry.sha256, entry.name))
    return specs


# ------------------------------------------------------------------ stage 1: annotations


def compose_tasks(cfg: DatasetConfig, base: Path) -> tuple[dict[str, dict[str, Any]], ds.LoadReport]:
    """Load the raw annotations and compose the dataset's tasks (still as ids, before any video exists)."""
    kind, tasks = cfg.kind, {}
    if kind == "fivr":
        fivr = ds.load_fivr(
            _raw_path(base, cfg, "annotation"),
            _raw_path(base, cfg, "youtube_ids"),
            _raw_path(base, cfg, "audio_annotation", required=False),
        )
        report = fivr.report
        subset_cfg = cfg.subset
        if subset_cfg:
            if not fivr.audio_queries():
                raise StageError(
                    "FIVR-5K_a is composed from the DA labels, and the annotation has none: set "
                    "use_authors_audio_annotation: true (datasets.audio_annotation) or "
                    "layout.audio_annotation to the FIVR-200K_a audio annotation"
                )
            sub = ds.compose_fivr5k(
                fivr, subset_cfg.queries, subset_cfg.da_fraction, subset_cfg.distractors, subset_cfg.seed
            )
        else:
            sub = ds.fivr_full(fivr)
        if fivr.audio_queries():
            tasks["audio"] = _task(sub, [DA], speed=True)
        visual_queries = sorted(fivr.annotation) if not subset_cfg else sub.queries
        visual = ds.Subset(visual_queries, sub.database, ds.restrict(fivr.annotation, visual_queries, sub.database))
        for task, labels in ds.VISUAL_TASKS.items():
            tasks[task] = _task(visual, labels, role="visual")
    elif kind == "svd":
        svd = ds.load_svd(
            _raw_path(base, cfg, "groundtruth"),
            _raw_path(base, cfg, "audio_annotation", False),
            _raw_path(base, cfg, "unlabeled_ids", False),
        )
        report = svd.report
        if svd.audio:
            tasks["audio"] = _task(ds.svd_audio(svd), [DA], speed=True)
        tasks["visual"] = _task(ds.svd_visual(svd, cfg.include_unlabeled), [ds.POS], role="visual")
    elif kind == "vcdb":
        report = ds.LoadReport()
        pairs = ds.load_vcdb(_raw_path(base, cfg, "annotation_dir"))
        report.counts.update(copy_pairs=len(pairs), topics=len({p.topic for p in pairs}))
        for split, sub in ds.vcdb_splits(pairs, cfg.val_topics, cfg.seed).items():
            tasks[split] = _task(sub, [DA], role="training")
            videos = set(sub.database)  # topics are disjoint, so a pair's videos are in one split only
            tasks[split]["segments"] = [[p.a, p.b, *p.a_span, *p.b_span] for p in pairs if p.a in videos]
    else:
        report = ds.LoadReport()
        events = ds.load_evve(_raw_path(base, cfg, "annots_dir"))
        report.counts.update(events=len(events))
        tasks["visual"] = _task(ds.evve_visual(events), [ds.POS], ignore=[ds.NULL], role="visual")
    return tasks, report


def _task(
    sub: ds.Subset, relevant: list[str], ignore: list[str] | None = None, role: str = "audio", speed: bool = False
) -> dict[str, Any]:
    return {
        "queries": sub.queries,
        "database": sub.database,
        "annotation": sub.annotation,
        "relevant": relevant,
        "ignore": ignore or [],
        "role": role,
        "speed": speed,
    }


# The AuSiL authors' DA labels of FIVR-200K_a and SVD_a: one Google Drive file (params
# `datasets.audio_annotation`), fetched once for all datasets under datasets.root, read in whatever
# plausible form it has (datasets.read_authors_audio_annotation) and written per dataset as
# raw/AUTHORS_AUDIO_FILE in the suite's annotation format, which compose_tasks then reads.
AUTHORS_AUDIO_FILE = "authors_audio_annotation.json"
DRIVE_VIEW_URL = "https://drive.google.com/file/d/{id}/view"

Downloader = Callable[..., object]  # (drive_id, output, quiet=...) -> anything; writes `output` or raises


class ChecksumError(RuntimeError):
    """A Drive file (present or freshly downloaded) does not match its pinned SHA-256."""


def gdown_download(drive_id: str, output: str | os.PathLike[str], quiet: bool = True) -> object:
    """The default downloader: gdown (pinned in requirements.txt), which handles Drive's confirmation pages."""
    import gdown

    return gdown.download(id=drive_id, output=os.fspath(output), quiet=quiet, timeout=60)


def _one_line(exc: BaseException, limit: int = 240) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def fetch_drive_file(
    drive_id: str,
    dest: str | os.PathLike[str],
    sha256: str | None = None,
    downloader: Downloader | None = None,
    progress: bool = True,
) -> tuple[str, bool]:
    """Download Google Drive file `drive_id` to `dest` atomically; return (its SHA-256, whether downloaded).

    An existing `dest` is kept (no download) when it matches `sha256`, or always when no digest is
    pinned (then the caller records the digest it gets). A digest that does not match, of the file
    present or of a fresh download (which is then discarded), raises ChecksumError naming the file
    and both digests; a downloader that fails raises DownloadError with its reason on one line."""
    from ...core.download import DownloadError, sha256_file

    dest = Path(dest)
    want = sha256.lower() if sha256 else None
    if dest.is_file():
        got = sha256_file(dest)
        if want and got != want:
            raise ChecksumError(
                f"{dest}: SHA-256 {got} does not match the expected {want} "
                "(datasets.audio_annotation.sha256); remove the file to download it again"
            )
        return got, False
    with atomic_path(dest) as tmp:  # a refused or failed download leaves nothing behind
        try:
            (downloader or gdown_download)(drive_id, tmp, quiet=not progress)
            if not tmp.is_file():
                raise DownloadError("the downloader wrote no file")
            got = sha256_file(tmp)
        except Exception as exc:  # noqa: BLE001 -- gdown raises requests', its own and OS errors alike
            raise DownloadError(_one_line(exc)) from exc
        if want and got != want:
            raise ChecksumError(
                f"{dest}: SHA-256 {got} of the download does not match the expected {want} "
                "(datasets.audio_annotation.sha256); download discarded"
            )
    return got, True


def _known_queries(cfg: DatasetConfig, base: Path) -> list[str]:
    """The dataset's own queries, which split an audio annotation covering both datasets."""
    if cfg.kind == "fivr":
        return list(ds._annotation_json(_raw_path(base, cfg, "annotation"), "FIVR-200K annotation.json"))
    return list(ds.load_svd_groundtruth(_raw_path(base, cfg, "groundtruth")))


def authors_audio_annotation(
    params: Params, name: str, downloader: Downloader | None = None, progress: bool = True
) -> dict[str, Any] | None:
    """Fetch the AuSiL authors' audio annotation (params `datasets.audio_annotation`), pick this
    dataset's part and write it to raw/AUTHORS_AUDIO_FILE; return what was done (digest included),
    or None when the dataset does not use it (`use_authors_audio_annotation` false, a
    `layout.audio_annotation` of its own, or not FIVR / SVD)."""
    from ...core.download import DownloadError

    cfg, base = dataset_config(params, name), dataset_dir(params, name)
    if (
        cfg.kind not in ds.AUDIO_ANNOTATION_KINDS
        or not cfg.use_authors_audio_annotation
        or cfg.layout.audio_annotation is not None
    ):
        return None
    shared = params.datasets.audio_annotation
    if not shared.file:
        raise StageError(
            f"datasets.{name}.use_authors_audio_annotation is true but datasets.audio_annotation.file is not set"
        )
    dest = Path(params.datasets.root) / shared.file
    drive_id, sha256 = shared.drive_id, shared.sha256
    if not drive_id and not dest.is_file():
        raise StageError(
            f"datasets.audio_annotation.drive_id is not set and {dest} does not exist: put the AuSiL "
            "authors' audio annotation there (datasets.audio_annotation.file), or set "
            f"datasets.{name}.use_authors_audio_annotation: false"
        )
    try:
        digest, downloaded = fetch_drive_file(str(drive_id), dest, sha256, downloader, progress)
    except ChecksumError as exc:
        raise StageError(f"datasets.audio_annotation: {exc}") from None
    except DownloadError as exc:
        raise StageError(
            f"datasets.{name}: could not download the AuSiL authors' audio annotation from Google "
            f"Drive ({DRIVE_VIEW_URL.format(id=drive_id)}): {exc}. Download it by hand and put it "
            f"at {dest} (datasets.audio_annotation.file; pin its digest in "
            "datasets.audio_annotation.sha256), or set "
            f"datasets.{name}.layout.audio_annotation to a DA file under {base / 'raw'}, or set "
            f"datasets.{name}.use_authors_audio_annotation: false for the visual tasks only"
        ) from None
    if not sha256:
        print(
            f"warning: {dest} (Google Drive {drive_id}) has no expected SHA-256 in datasets.audio_annotation.sha256, "
            f"so it is unverified (got {digest}); record this digest to pin it",
            file=sys.stderr,
        )
    annotation, found = ds.read_authors_audio_annotation(dest, cfg.kind, _known_queries(cfg, base))
    out = base / "raw" / AUTHORS_AUDIO_FILE
    ds.write_annotations(out, annotation)
    return {
        "drive_id": drive_id,
        "file": str(dest),
        "sha256": digest,
        "verified": bool(sha256),
        "downloaded": downloaded,
        "found": found,
        "written": str(out),
    }


def stage_annotations(
    params: Params, name: str, progress: bool = True, downloader: Downloader | None = None
) -> dict[str, Any]:
    """Fetch the annotation files (checksummed), validate them, compose the tasks, list the wanted videos.

    FIVR / SVD datasets with `use_authors_audio_annotation` also get the AuSiL authors' DA labels
    (see :func:`authors_audio_annotation`; `downloader` replaces gdown, for tests)."""
    from .fetch import fetch_archives

    cfg, base = dataset_config(params, name), dataset_dir(params, name)
    if not cfg.annotation_files and not any((base / "raw").glob("*")):
        raise StageError(
            f"datasets.{name}.annotation_files is empty and {base / 'raw'} holds nothing: the "
            f"{cfg.kind.upper()} annotations are distributed by their authors; obtain them and list "
            "each file or archive as {url, sha256} (file:// URLs work), or unpack them into that folder"
        )
    fetch_archives(
        _archive_specs(cfg.annotation_files, f"datasets.{name}.annotation_files"),
        base / "downloads",
        base / "raw",
        progress=progress,
    )
    authors = authors_audio_annotation(params, name, downloader, progress)
    if authors is not None:
        cfg = replace(cfg, layout=replace(cfg.layout, audio_annotation=AUTHORS_AUDIO_FILE))
    tasks, report = compose_tasks(cfg, base)
    wanted = list(dict.fromkeys(v for t in tasks.values() for v in [*t["queries"], *t["database"]]))
    write_ids(base / "wanted_ids.txt", wanted)
    plan = {"dataset": name, "kind": cfg.kind, "tasks": tasks, "report": report.to_dict()}
    out = {
        "tasks": {t: {"queries": len(v["queries"]), "database": len(v["database"])} for t, v in tasks.items()},
        "wanted_videos": len(wanted),
        "report": report.to_dict(),
    }
    if authors is not None:
        plan["audio_annotation"] = out["audio_annotation"] = authors
    atomic_write_json(base / "plan.json", plan)
    return out


# ------------------------------------------------------------------ stage 2: videos


def _require_stage_output(path: Path, stage: str, name: str) -> Path:
    if not path.exists():
        raise StageError(
            f"{path} does not exist: run `ausil dataset {stage} --dataset {name}` first "
            f"(or `dvc repro dataset_{stage}@{name}`)"
        )
    return path


def stage_videos(params: Params, name: str, progress: bool = True) -> dict[str, Any]:
    """FIVR: the wanted YouTube ids through yt-dlp (resumable, rate-limited, unavailable ones recorded);
    SVD / VCDB / EVVE: their distribution archives, checksummed and extracted."""
    from .fetch import download_youtube, fetch_archives

    cfg, base = dataset_config(params, name), dataset_dir(params, name)
    _require_stage_output(base / "wanted_ids.txt", "annotations", name)
    if cfg.kind == "fivr":
        report = download_youtube(
            read_ids(base / "wanted_ids.txt"), base / "videos", params.datasets.youtube, progress=progress
        )
        return report.to_dict()
    archives = fetch_archives(
        _archive_specs(cfg.video_archives, f"datasets.{name}.video_archives"),
        base / "downloads",
        base / "videos",
        progress=progress,
    )
    return {"archives": archives}


# ------------------------------------------------------------------ stage 3: benchmarks


def render_speed_copies(
    queries: Mapping[str, str],
    factors: list[float],
    out_dir: Path,
    audio: AudioConfig,
    progress: bool = True,
) -> tuple[dict[str, str], dict[str, str]]:
    """Each query re-rendered at each factor (tempo and pitch together, as the paper); resumable.

    Returns (speed copy id -> path, query id -> reason for queries that could not be decoded)."""
    from ...audio.transforms import apply_chain  # audiomentations is heavy; only this step needs it

    made: dict[str, str] = {}
    failed: dict[str, str] = {}
    for qid, path in tqdm(
        sorted(queries.items()), desc="speed copies", unit="query", disable=not progress, file=sys.stderr
    ):
        targets = {speed_copy_id(qid, f): out_dir / f"{speed_copy_id(qid, f)}.flac" for f in factors}
        if all(p.is_file() for p in targets.values()):
            made.update({k: str(p) for k, p in targets.items()})
            continue
        try:
            samples = load_audio(
                path, sample_rate=audio.sample_rate, ffmpeg=audio.ffmpeg, timeout_s=audio.decode_timeout_s
            )
        except AudioError as exc:
            failed[qid] = exc.reason
            continue
        for f in factors:
            target = targets[speed_copy_id(qid, f)]
            if not target.is_file():
                encode(
                    target,
                    apply_chain(samples, audio.sample_rate, [{"name": "speed", "factor": float(f)}], seed=0),
                    audio.sample_rate,
                    FLAC,
                    ffmpeg=audio.ffmpeg,
                )
            made[speed_copy_id(qid, f)] = str(target)
    return made, failed


def stage_benchmarks(params: Params, name: str, progress: bool = True) -> dict[str, Any]:
    """Match the obtained files to the plan and write every task's benchmark directory."""
    base = dataset_dir(params, name)
    plan = json.loads(_require_stage_output(base / "plan.json", "annotations", name).read_text(encoding="utf-8"))
    wanted = read_ids(base / "wanted_ids.txt")
    media, missing = ds.find_media(base / "videos", wanted)
    report = ds.LoadReport()
    report.counts.update(wanted=len(wanted), found=len(media), missing=len(missing))
    if missing:
        report.note(f"{len(missing)} of {len(wanted)} videos could not be obtained: {ds.examples(missing)}")
    factors = [float(f) for f in params.datasets.speed_factors]
    all_videos: dict[str, str] = dict(media)
    summary: dict[str, Any] = {}
    (base / "speed").mkdir(parents=True, exist_ok=True)  # a declared output, empty without audio tasks
    for task, spec in plan["tasks"].items():
        sub = ds.Subset(spec["queries"], spec["database"], spec["annotation"])
        bench = ds.available(sub, media, task, spec["relevant"], spec["ignore"], report)
        benches = [bench]
        if spec["speed"] and factors:
            copies, failed = render_speed_copies(bench.queries, factors, base / "speed", params.audio, progress)
            for qid, reason in failed.items():
                report.note(f"query {qid}: no speed copies ({reason})")
            all_videos.update(copies)
            benches.append(ds.speed_benchmark(bench, copies, factors))
        for b in benches:
            if not b.queries:
                report.note(f"task {b.name}: no query could be obtained; not written")
                continue
            b.write(base / "bench")
            if "segments" in spec and b is bench:
                _write_true_segments(base / "bench" / b.name / TRUE_SEGMENTS, spec["segments"], b)
            summary[b.name] = {
                "queries": len(b.queries),
                "database": len(b.database),
                "relevant": b.relevant,
                "ignore": b.ignore,
                "role": spec["role"],
                "positives": sum(len(labels.get(lab, [])) for labels in b.annotation.values() for lab in b.relevant),
            }
    write_video_list(base / "all_videos.txt", all_videos)
    out = {"dataset": name, "tasks": summary, "report": report.to_dict()}
    atomic_write_json(base / "benchmarks.json", out)
    return out


TRUE_SEGMENTS = "true_segments.json"  # VCDB tasks: the annotated segment pairs, for `ausil locate-evaluate --truth`


def _write_true_segments(path: Path, rows: list[list[Any]], bench: ds.TaskFiles) -> None:
    """The annotated segment pairs among the obtained videos, both ways round, in the segments format."""
    from ...localisation.segments import write_segments
    from ...localisation.truth import span_pair_truth

    truth = span_pair_truth((a, b, (a0, a1), (b0, b1)) for a, b, a0, a1, b0, b1 in rows)
    kept = {q: {v: s for v, s in videos.items() if v in bench.database} for q, videos in truth.items()}
    write_segments(path, {q: videos for q, videos in kept.items() if q in bench.queries})


# ------------------------------------------------------------------ stage 6: evaluation


def stage_evaluate(
    params: Params,
    name: str,
    model_path: str | os.PathLike[str],
    features_dir: str | os.PathLike[str],
    results_dir: str | os.PathLike[str],
    metrics_dir: str | os.PathLike[str],
    plots_dir: str | os.PathLike[str],
    variant: str = "full",
    progress: bool = True,
) -> dict[str, Any]:
    """Every evaluation task of the dataset with every method of `datasets.methods`; each writes
    `<results_dir>/<method>/<task>.json` (+ failures and timing), metrics and PR points likewise.

    AuSiL scores all queries against the stored collection in one pass (GPU-batched); the baselines
    go through the same runner as on the embedded corpus, one query at a time."""
    from ...baselines.method import baseline_method
    from ...retrieval.evaluation import evaluate_files
    from ...retrieval.runner import run_similarity

    base = dataset_dir(params, name)
    summary = json.loads(
        _require_stage_output(base / "benchmarks.json", "benchmarks", name).read_text(encoding="utf-8")
    )
    methods = list(params.datasets.methods)
    unknown = sorted(set(methods) - {"ausil", *BASELINES})
    if unknown:
        raise StageError(f"datasets.methods: unknown {unknown}; choose from {['ausil', *BASELINES]}")
    for folder in (results_dir, metrics_dir, plots_dir):  # declared DVC outputs, even for training-only sets
        Path(folder).mkdir(parents=True, exist_ok=True)
    tasks = {t: info for t, info in summary["tasks"].items() if info["role"] != "training"}
    out: dict[str, Any] = {}
    for method in methods:
        res_dir = Path(results_dir) / method
        if method == "ausil":
            _score_ausil(params, base, tasks, model_path, features_dir, variant, res_dir, progress)
        else:
            with baseline_method(method, params, Path(".cache") / "real" / name) as runner:
                for task in tasks:
                    bench = base / "bench" / task
                    run_similarity(
                        runner,
                        read_video_list(bench / "queries.txt"),
                        read_video_list(bench / "database.txt"),
                        res_dir / f"{task}.json",
                        progress,
                    )
        for task, info in tasks.items():
            bench = base / "bench" / task
            result = evaluate_files(
                res_dir / f"{task}.json",
                bench / "annotation.json",
                bench / "dataset_ids.txt",
                info["relevant"],
                Path(metrics_dir) / method / f"{task}.json",
                Path(plots_dir) / method / f"{task}.json",
                info["ignore"],
            )
            out[f"{method}/{task}"] = {"mAP": result.map, "queries": result.n_queries}
    return out


def _score_ausil(
    params: Params,
    base: Path,
    tasks: Mapping[str, Any],
    model_path: str | os.PathLike[str],
    features_dir: str | os.PathLike[str],
    variant: str,
    res_dir: Path,
    progress: bool,
) -> None:
    from ...core.config import resolve_device
    from ...core.formats import write_results
    from ...features.store import FeatureStore
    from ...models.ausil import load_model
    from ...retrieval.runner import score_stored, write_failure_report

    model, _meta = load_model(model_path, variant)
    store = FeatureStore(features_dir, readonly=True)
    device = resolve_device(params.device)
    batch_bytes = params.datasets.similarity_batch_mb << 20
    for task in tasks:
        bench = base / "bench" / task
        results, failures, timing = score_stored(
            model,
            store,
            list(read_video_list(bench / "queries.txt")),
            list(read_video_list(bench / "database.txt")),
            device,
            batch_bytes,
            progress,
        )
        write_results(res_dir / f"{task}.json", results)
        write_failure_report(res_dir / f"{task}.json", failures)
        atomic_write_json(res_dir / f"{task}.timing.json", {"method": f"ausil-{variant}", **timing})
