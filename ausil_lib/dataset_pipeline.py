"""The real-dataset stages of dvc.yaml, one function per stage, driven by params.yaml `datasets`.

For a dataset NAME (a key of `datasets`), everything lives under `<datasets.root>/NAME/`:

    raw/              annotation files as distributed (checksummed downloads, archives extracted)
    plan.json         the tasks composed from the annotations (queries, database ids, labels)
    wanted_ids.txt    the videos the tasks need
    videos/           the media: yt-dlp downloads (FIVR) or extracted archives (SVD, VCDB, EVVE)
    speed/            the queries re-rendered at the speed factors (audio tasks)
    bench/<task>/     queries.txt, database.txt, dataset_ids.txt, annotation.json
    all_videos.txt    every file the features stage extracts
    benchmarks.json   per task: relevant / ignored labels, counts, what was missing

Stages: annotations -> videos -> benchmarks -> features (sharded store) -> [train, VCDB] -> evaluate.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping

from tqdm import tqdm

from . import datasets as ds
from .audio import AudioError, encode, load_audio
from .formats import atomic_write_json, read_ids, read_video_list, write_ids, write_video_list

KINDS = ("fivr", "svd", "vcdb", "evve")
FLAC = ["-c:a", "flac"]


class StageError(RuntimeError):
    """A stage cannot run as configured; the message says which setting to change."""


def dataset_config(params: Mapping[str, Any], name: str) -> dict[str, Any]:
    section = params.get("datasets", {})
    if name not in section or not isinstance(section[name], Mapping) or "kind" not in section[name]:
        known = sorted(k for k, v in section.items() if isinstance(v, Mapping) and "kind" in v)
        raise StageError(f"dataset {name!r} is not defined in params.yaml `datasets` (defined: {known})")
    cfg = dict(section[name])
    if cfg["kind"] not in KINDS:
        raise StageError(f"datasets.{name}.kind is {cfg['kind']!r}; expected one of {KINDS}")
    return cfg


def dataset_dir(params: Mapping[str, Any], name: str) -> Path:
    return Path(params.get("datasets", {}).get("root", "data/real")) / name


def _raw_path(base: Path, cfg: Mapping[str, Any], key: str, required: bool = True) -> Path | None:
    rel = cfg.get("layout", {}).get(key)
    if rel is None:
        if required:
            raise StageError(f"datasets layout.{key} is not set: the stage needs that file")
        return None
    return base / "raw" / rel


def _archive_specs(entries: Any, where: str) -> list:
    from .fetch import ArchiveSpec

    specs = []
    for i, entry in enumerate(entries or []):
        if not entry.get("url"):
            raise StageError(f"{where}[{i}].url is not set. This file is not publicly downloadable without the "
                             "authors' permission; obtain it, then give its file:// (or http) URL and its sha256")
        specs.append(ArchiveSpec(entry["url"], entry.get("sha256"), entry.get("name")))
    return specs


# ------------------------------------------------------------------ stage 1: annotations


def compose_tasks(cfg: Mapping[str, Any], base: Path) -> tuple[dict[str, dict[str, Any]], ds.LoadReport]:
    """Load the raw annotations and compose the dataset's tasks (still as ids, before any video exists)."""
    kind, tasks = cfg["kind"], {}
    if kind == "fivr":
        fivr = ds.load_fivr(_raw_path(base, cfg, "annotation"), _raw_path(base, cfg, "youtube_ids"),
                            _raw_path(base, cfg, "audio_annotation", required=False))
        report = fivr.report
        subset_cfg = cfg.get("subset")
        if subset_cfg:
            if not fivr.audio_queries():
                raise StageError("FIVR-5K_a is composed from the DA labels, and the annotation has none: set "
                                 "layout.audio_annotation to the FIVR-200K_a audio annotation")
            sub = ds.compose_fivr5k(fivr, int(subset_cfg["queries"]), float(subset_cfg["da_fraction"]),
                                    int(subset_cfg["distractors"]), int(subset_cfg.get("seed", 0)))
        else:
            sub = ds.fivr_full(fivr)
        if fivr.audio_queries():
            tasks["audio"] = _task(sub, [ds.DA], speed=True)
        visual_queries = sorted(fivr.annotation) if not subset_cfg else sub.queries
        visual = ds.Subset(visual_queries, sub.database, ds.restrict(fivr.annotation, visual_queries, sub.database))
        for task, labels in ds.VISUAL_TASKS.items():
            tasks[task] = _task(visual, labels, role="visual")
    elif kind == "svd":
        svd = ds.load_svd(_raw_path(base, cfg, "groundtruth"), _raw_path(base, cfg, "audio_annotation", False),
                          _raw_path(base, cfg, "unlabeled_ids", False))
        report = svd.report
        if svd.audio:
            tasks["audio"] = _task(ds.svd_audio(svd), [ds.DA], speed=True)
        tasks["visual"] = _task(ds.svd_visual(svd, bool(cfg.get("include_unlabeled", False))), [ds.POS],
                                role="visual")
    elif kind == "vcdb":
        report = ds.LoadReport()
        pairs = ds.load_vcdb(_raw_path(base, cfg, "annotation_dir"))
        report.counts.update(copy_pairs=len(pairs), topics=len({p.topic for p in pairs}))
        for split, sub in ds.vcdb_splits(pairs, int(cfg.get("val_topics", 0)), int(cfg.get("seed", 0))).items():
            tasks[split] = _task(sub, [ds.DA], role="training")
    else:
        report = ds.LoadReport()
        events = ds.load_evve(_raw_path(base, cfg, "annots_dir"))
        report.counts.update(events=len(events))
        tasks["visual"] = _task(ds.evve_visual(events), [ds.POS], ignore=[ds.NULL], role="visual")
    return tasks, report


def _task(sub: ds.Subset, relevant: list[str], ignore: list[str] | None = None, role: str = "audio",
          speed: bool = False) -> dict[str, Any]:
    return {"queries": sub.queries, "database": sub.database, "annotation": sub.annotation,
            "relevant": relevant, "ignore": ignore or [], "role": role, "speed": speed}


def stage_annotations(params: Mapping[str, Any], name: str, progress: bool = True) -> dict[str, Any]:
    """Fetch the annotation files (checksummed), validate them, compose the tasks, list the wanted videos."""
    from .fetch import fetch_archives

    cfg, base = dataset_config(params, name), dataset_dir(params, name)
    if not cfg.get("annotation_files") and not any((base / "raw").glob("*")):
        raise StageError(f"datasets.{name}.annotation_files is empty and {base / 'raw'} holds nothing: the "
                         f"{cfg['kind'].upper()} annotations are distributed by their authors; obtain them and list "
                         "each file or archive as {url, sha256} (file:// URLs work), or unpack them into that folder")
    fetch_archives(_archive_specs(cfg.get("annotation_files"), f"datasets.{name}.annotation_files"),
                   base / "downloads", base / "raw", progress=progress)
    tasks, report = compose_tasks(cfg, base)
    wanted = list(dict.fromkeys(v for t in tasks.values() for v in [*t["queries"], *t["database"]]))
    write_ids(base / "wanted_ids.txt", wanted)
    plan = {"dataset": name, "kind": cfg["kind"], "tasks": tasks, "report": report.to_dict()}
    atomic_write_json(base / "plan.json", plan)
    return {"tasks": {t: {"queries": len(v["queries"]), "database": len(v["database"])} for t, v in tasks.items()},
            "wanted_videos": len(wanted), "report": report.to_dict()}


# ------------------------------------------------------------------ stage 2: videos


def youtube_config(params: Mapping[str, Any]):
    from .config import from_section
    from .fetch import YoutubeConfig

    return from_section(YoutubeConfig, params.get("datasets", {}).get("youtube", {}), "datasets.youtube")


def _require_stage_output(path: Path, stage: str, name: str) -> Path:
    if not path.exists():
        raise StageError(f"{path} does not exist: run `ausil dataset {stage} --dataset {name}` first "
                         f"(or `dvc repro dataset_{stage}@{name}`)")
    return path


def stage_videos(params: Mapping[str, Any], name: str, progress: bool = True) -> dict[str, Any]:
    """FIVR: the wanted YouTube ids through yt-dlp (resumable, rate-limited, unavailable ones recorded);
    SVD / VCDB / EVVE: their distribution archives, checksummed and extracted."""
    from .fetch import download_youtube, fetch_archives

    cfg, base = dataset_config(params, name), dataset_dir(params, name)
    _require_stage_output(base / "wanted_ids.txt", "annotations", name)
    if cfg["kind"] == "fivr":
        report = download_youtube(read_ids(base / "wanted_ids.txt"), base / "videos", youtube_config(params),
                                  progress=progress)
        return report.to_dict()
    archives = fetch_archives(_archive_specs(cfg.get("video_archives"), f"datasets.{name}.video_archives"),
                              base / "downloads", base / "videos", progress=progress)
    return {"archives": archives}


# ------------------------------------------------------------------ stage 3: benchmarks


def render_speed_copies(queries: Mapping[str, str], factors: list[float], out_dir: Path, sample_rate: int,
                        audio_params: Mapping[str, Any], progress: bool = True) -> tuple[dict[str, str], dict[str, str]]:
    """Each query re-rendered at each factor (tempo and pitch together, as the paper); resumable.

    Returns (speed copy id -> path, query id -> reason for queries that could not be decoded)."""
    from .transforms import apply_chain   # audiomentations is heavy; only this step needs it

    made: dict[str, str] = {}
    failed: dict[str, str] = {}
    for qid, path in tqdm(sorted(queries.items()), desc="speed copies", unit="query", disable=not progress,
                          file=sys.stderr):
        targets = {ds.speed_id(qid, f): out_dir / f"{ds.speed_id(qid, f)}.flac" for f in factors}
        if all(p.is_file() for p in targets.values()):
            made.update({k: str(p) for k, p in targets.items()})
            continue
        try:
            audio = load_audio(path, sample_rate=sample_rate, ffmpeg=audio_params.get("ffmpeg"),
                               timeout_s=float(audio_params.get("decode_timeout_s", 600)))
        except AudioError as exc:
            failed[qid] = exc.reason
            continue
        for f in factors:
            target = targets[ds.speed_id(qid, f)]
            if not target.is_file():
                encode(target, apply_chain(audio, sample_rate, [{"name": "speed", "factor": float(f)}], seed=0),
                       sample_rate, FLAC, ffmpeg=audio_params.get("ffmpeg"))
            made[ds.speed_id(qid, f)] = str(target)
    return made, failed


def stage_benchmarks(params: Mapping[str, Any], name: str, progress: bool = True) -> dict[str, Any]:
    """Match the obtained files to the plan and write every task's benchmark directory."""
    base = dataset_dir(params, name)
    plan = json.loads(_require_stage_output(base / "plan.json", "annotations", name).read_text(encoding="utf-8"))
    wanted = read_ids(base / "wanted_ids.txt")
    media, missing = ds.find_media(base / "videos", wanted)
    report = ds.LoadReport()
    report.counts.update(wanted=len(wanted), found=len(media), missing=len(missing))
    if missing:
        report.note(f"{len(missing)} of {len(wanted)} videos could not be obtained: {ds.examples(missing)}")
    factors = [float(f) for f in params.get("datasets", {}).get("speed_factors", [])]
    sr = int(params.get("audio", {}).get("sample_rate", 44100))
    all_videos: dict[str, str] = dict(media)
    summary: dict[str, Any] = {}
    (base / "speed").mkdir(parents=True, exist_ok=True)   # a declared output, empty without audio tasks
    for task, spec in plan["tasks"].items():
        sub = ds.Subset(spec["queries"], spec["database"], spec["annotation"])
        bench = ds.available(sub, media, task, spec["relevant"], spec["ignore"], report)
        benches = [bench]
        if spec["speed"] and factors:
            copies, failed = render_speed_copies(bench.queries, factors, base / "speed", sr, params.get("audio", {}),
                                                 progress)
            for qid, reason in failed.items():
                report.note(f"query {qid}: no speed copies ({reason})")
            all_videos.update(copies)
            benches.append(ds.speed_benchmark(bench, copies, factors))
        for b in benches:
            if not b.queries:
                report.note(f"task {b.name}: no query could be obtained; not written")
                continue
            b.write(base / "bench")
            summary[b.name] = {"queries": len(b.queries), "database": len(b.database), "relevant": b.relevant,
                               "ignore": b.ignore, "role": spec["role"],
                               "positives": sum(len(labels.get(lab, [])) for labels in b.annotation.values()
                                                for lab in b.relevant)}
    write_video_list(base / "all_videos.txt", all_videos)
    out = {"dataset": name, "tasks": summary, "report": report.to_dict()}
    atomic_write_json(base / "benchmarks.json", out)
    return out


# ------------------------------------------------------------------ stage 6: evaluation


def stage_evaluate(params: Mapping[str, Any], name: str, model_path: str | os.PathLike[str],
                   features_dir: str | os.PathLike[str], results_dir: str | os.PathLike[str],
                   metrics_dir: str | os.PathLike[str], plots_dir: str | os.PathLike[str], variant: str = "full",
                   progress: bool = True) -> dict[str, Any]:
    """Every evaluation task of the dataset with every method of `datasets.methods`; each writes
    `<results_dir>/<method>/<task>.json` (+ failures and timing), metrics and PR points likewise.

    AuSiL scores all queries against the stored collection in one pass (GPU-batched); the baselines
    go through the same runner as on the embedded corpus, one query at a time."""
    from .evaluation import evaluate_files
    from .retrieval import BASELINES, baseline_method, run_similarity

    base = dataset_dir(params, name)
    summary = json.loads(_require_stage_output(base / "benchmarks.json", "benchmarks", name).read_text(encoding="utf-8"))
    methods = list(params.get("datasets", {}).get("methods", ["ausil"]))
    unknown = sorted(set(methods) - {"ausil", *BASELINES})
    if unknown:
        raise StageError(f"datasets.methods: unknown {unknown}; choose from {['ausil', *BASELINES]}")
    for folder in (results_dir, metrics_dir, plots_dir):   # declared DVC outputs, even for training-only sets
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
                    run_similarity(runner, read_video_list(bench / "queries.txt"),
                                   read_video_list(bench / "database.txt"), res_dir / f"{task}.json", progress)
        for task, info in tasks.items():
            bench = base / "bench" / task
            result = evaluate_files(res_dir / f"{task}.json", bench / "annotation.json", bench / "dataset_ids.txt",
                                    info["relevant"], Path(metrics_dir) / method / f"{task}.json",
                                    Path(plots_dir) / method / f"{task}.json", info["ignore"])
            out[f"{method}/{task}"] = {"mAP": result.map, "queries": result.n_queries}
    return out


def _score_ausil(params: Mapping[str, Any], base: Path, tasks: Mapping[str, Any], model_path: str | os.PathLike[str],
                 features_dir: str | os.PathLike[str], variant: str, res_dir: Path, progress: bool) -> None:
    from .config import resolve_device
    from .formats import write_results
    from .model import load_model
    from .retrieval import score_stored, write_failure_report
    from .store import FeatureStore

    model, _meta = load_model(model_path, variant)
    store = FeatureStore(features_dir, readonly=True)
    device = resolve_device(params.get("device", "auto"))
    batch_bytes = int(params.get("datasets", {}).get("similarity_batch_mb", 1024)) << 20
    for task in tasks:
        bench = base / "bench" / task
        results, failures, timing = score_stored(model, store, list(read_video_list(bench / "queries.txt")),
                                                 list(read_video_list(bench / "database.txt")), device, batch_bytes,
                                                 progress)
        write_results(res_dir / f"{task}.json", results)
        write_failure_report(res_dir / f"{task}.json", failures)
        atomic_write_json(res_dir / f"{task}.timing.json", {"method": f"ausil-{variant}", **timing})
