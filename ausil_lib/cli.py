"""`ausil` command line: a thin layer over the library; every stage of dvc.yaml is one call."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

from .core.config import Params, load_params
from .core.labels import BASELINES, DA, NOT_AVAILABLE, RELEASED_LABEL, RELEASED_MODEL
from .core.provenance import SourceChanged, unchanged_source


def _params(args: argparse.Namespace) -> Params:
    """params.yaml, read and checked once, with the command line's overrides."""
    params = load_params(args.params)
    if getattr(args, "backbone", None) not in (None, "main"):
        params = replace(params, backbone=replace(params.backbone, source=args.backbone))
    if getattr(args, "time_step_ms", None) is not None:
        params = replace(params, features=replace(params.features, time_step_ms=args.time_step_ms))
    if getattr(args, "gamma", None) is not None:
        params = replace(params, training=replace(params.training, gamma=args.gamma))
    return params


def cmd_extract(args: argparse.Namespace) -> int:
    from .core.formats import read_video_list
    from .features.extraction import Extractor

    params = _params(args)
    videos = read_video_list(args.videos)
    time_step = args.time_step_ms
    if args.dataset:
        from .datasets.real.settings import dataset_config

        time_step = dataset_config(params, args.dataset).time_step_ms or time_step
    extractor = Extractor.from_params(params, time_step)
    print(f"backbone: {extractor.backbone.label}", file=sys.stderr)
    print(
        f"device: {extractor.mac.device}; time step {extractor.cfg.time_step_ms} ms; "
        f"{len(videos)} videos -> {args.output_dir}",
        file=sys.stderr,
    )
    if args.store:
        from .features.bulk import extract_to_store
        from .features.store import FeatureStore

        cfg = params.datasets
        workers = args.workers if args.workers is not None else cfg.decode_workers
        with FeatureStore(
            args.output_dir, extractor.signature, dtype=cfg.store_dtype, shard_videos=cfg.shard_videos
        ) as store:
            report = extract_to_store(
                extractor,
                videos,
                store,
                workers=workers,
                batch_segments=cfg.batch_segments,
                amp=cfg.amp,
                progress=not args.no_progress,
            )
    else:
        workers = args.workers if args.workers is not None else params.extract.decode_workers
        report = extractor.run(videos, args.output_dir, workers=workers, progress=not args.no_progress)
    for vid, (path, reason) in sorted(report.failed.items()):
        print(f"FAILED {vid}: {path}: {reason}", file=sys.stderr)
    print(report.summary())
    if report.failed:
        print(f"failure report: {Path(args.output_dir) / 'failures.tsv'}")
    return 3 if (report.failed and args.fail_on_error) else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .retrieval.evaluation import RECALL_AT, evaluate_files, query_ap_path

    results = Path(args.results)
    metrics = Path(args.metrics) if args.metrics else results.with_name(results.stem + ".metrics.json")
    pr = Path(args.pr) if args.pr else results.with_name(results.stem + ".pr.json")
    labels = [x.strip() for x in args.relevant_labels.split(",") if x.strip()]
    ignore = [x.strip() for x in args.ignore_labels.split(",") if x.strip()]
    from .core.formats import read_unavailable

    note = read_unavailable(results)
    if note is not None:
        from .retrieval.evaluation import write_unavailable_metrics

        write_unavailable_metrics(metrics, pr, note, labels, ignore, ap_path=query_ap_path(results))
        print(f"{results}: {note}; {metrics} records the run as not available")
        return 0
    result = evaluate_files(
        results, args.annotations, args.dataset_ids, labels, metrics_path=metrics, pr_path=pr, ignore_labels=ignore
    )
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.per_query:
        for query, ap in sorted(result.ap.items()):
            print(f"{query}\tAP={ap:.4f}")
    print(
        f"queries: {result.n_queries}  relevant labels: {','.join(labels)}  mAP={result.map:.4f}  "
        f"uAP={result.micro_ap:.4f}  " + "  ".join(f"recall@{k}={result.recall_at(k):.4f}" for k in RECALL_AT)
    )
    print(f"metrics: {metrics}\nper query: {query_ap_path(results)}\nPR points: {pr}")
    return 0


EXIT_UNREACHABLE = 3  # fetch-weights: the release could not be reached (offline)


def cmd_fetch_weights(args: argparse.Namespace) -> int:
    from .models.weights import fetch_release

    cfg = _params(args).release
    report = fetch_release(cfg, download_missing=not args.verify_only, progress=not args.no_progress)
    pins = cfg.files()
    for role, got in report.present.items():
        how = "downloaded and verified" if role in report.fetched else "verified"
        print(f"{pins[role].dest}: {how} (git blob {got.git_blob}, sha256 {got.sha256}, {got.size} bytes)")
    if report.unreachable and args.optional:  # `make repro` offline: one line, and the run goes on
        print(
            f"ausil fetch-weights: could not reach {report.unreachable}; going on without the released files "
            f"(released model not available)",
            file=sys.stderr,
        )
        return 0
    for role, why in report.missing.items():
        print(f"{pins[role].dest}: absent ({why})")
    print(
        f"released model: {'available at ' + cfg.model_prefix if report.model_available else 'not available'}; "
        f"manifest: {cfg.manifest}"
    )
    if report.unreachable:
        print(f"ausil fetch-weights: could not reach {report.unreachable}", file=sys.stderr)
        return EXIT_UNREACHABLE
    return 0


def cmd_benchmark_speed(args: argparse.Namespace) -> int:
    from .core.formats import atomic_write_json
    from .pipeline.benchmark import run_speed_benchmark

    if args.similarity_videos:
        from .pipeline.benchmark import run_similarity_benchmark

        results = run_similarity_benchmark(_params(args), args.similarity_queries, args.similarity_videos)
        atomic_write_json(args.output, results)
        print(
            f"{results['pairs']} pairs in {results['wall_s']} s: {results['ms_per_pair']} ms per pair "
            f"({results['buckets']} length buckets)"
        )
        print(f"written: {args.output}")
        return 0
    if args.bulk_videos:
        from .pipeline.benchmark import run_bulk_benchmark

        results = run_bulk_benchmark(_params(args), args.bulk_videos)
        atomic_write_json(args.output, results)
        for name, r in results["runs"].items():
            print(f"{name}: {r['videos_per_s']} videos/s, {r['x_real_time']}x real time, {r['failed']} failed")
        print(f"written: {args.output}")
        return 0
    results = run_speed_benchmark(_params(args))
    atomic_write_json(args.output, results)
    for step, r in results["time_steps"].items():
        print(
            f"t={step} ms: decode {results['decode_s_per_100s']:.3f} s, log-mel {r['logmel_s_per_100s']:.3f} s, "
            f"backbone {r['backbone_s_per_100s']:.3f} s ({r['backbone_segments_per_s']:.0f} segments/s)"
            + (
                f", partner decode {r['partner_decode_s_per_100s']:.3f} s, network {r['partner_s_per_100s']:.3f} s"
                if "partner_s_per_100s" in r
                else ""
            )
            + f" per 100 s of audio; end to end {r['end_to_end_s_per_100s']:.3f} s = "
            f"{r['end_to_end_x_real_time']:.0f}x real time"
        )
    print(f"written: {args.output}")
    return 0


def cmd_readme(args: argparse.Namespace) -> int:
    from .report.readme import update_readme

    changed = update_readme(Path(args.readme))
    print(f"{args.readme}: {'updated' if changed else 'already up to date'}")
    return 0


def cmd_fetch_sources(args: argparse.Namespace) -> int:
    from .core.config import backbone_sources_params, cross_corpus_params
    from .datasets.embedded.sources import SourceError, fetch_sources, load_manifest, verify_against_dvc

    params = _params(args)
    targets = [(Path(args.output_dir), params)]
    if args.cross_output_dir:
        targets.append((Path(args.cross_output_dir), cross_corpus_params(params)))
    if args.backbone_output_dir:
        targets.append((Path(args.backbone_output_dir), backbone_sources_params(params)))
    if args.verify and not args.accept and all((d / "manifest.json").is_file() for d, _ in targets):
        try:
            verify_against_dvc(args.verify)
            for d, _ in targets:
                print(f"{d}: {len(load_manifest(d))} recordings already match {args.verify}")
            return 0
        except SourceError:
            pass  # something differs: fetch again, then verify
    for d, p in targets:
        manifest = fetch_sources(p, d)
        n = {k: sum(r["kind"] == k for r in manifest["recordings"]) for k in ("music", "speech")}
        print(
            f"{d}: {n['music']} music and {n['speech']} speech recordings "
            f"({len(manifest['skipped'])} skipped, see manifest.json)"
        )
    if args.verify:
        verify_against_dvc(args.verify, strict=not args.accept)
        print(
            f"the sources match the pins in {args.verify}"
            if not args.accept
            else f"{args.verify} re-pinned to these sources"
        )
    return 0


def cmd_build_corpus(args: argparse.Namespace) -> int:
    from .datasets.embedded.corpus import build_corpus

    params = _params(args)
    if args.cross_corpus and args.train_corpus:
        raise SystemExit("build-corpus: --cross-corpus and --train-corpus build different corpora; give one")
    if args.cross_corpus:
        from .core.config import cross_corpus_params

        params = cross_corpus_params(params)
    if args.train_corpus:
        from .core.config import train_corpus_params

        params = train_corpus_params(params)
    summary = build_corpus(
        params,
        args.sources,
        args.output_dir,
        summary_path=args.summary,
        workers=args.workers,
        progress=not args.no_progress,
    )
    for name, b in summary["benchmarks"].items():
        print(
            f"{name}: {b['queries']} queries, {b['database']} videos ({b['database_hours']:.2f} h), "
            f"{b['da_pairs']} DA pairs, {b['junk_pairs']} JUNK pairs"
        )
    print(f"{summary['clips']} clips, {summary['hours']:.2f} h of audio -> {args.output_dir}")
    return 0


def cmd_train_backbone(args: argparse.Namespace) -> int:
    from .models.backbone_training import train_backbone

    params = _params(args)
    if args.max_steps is not None:
        params = replace(params, backbone_training=replace(params.backbone_training, max_steps=args.max_steps))
    meta = train_backbone(
        params,
        args.sources,
        args.corpus,
        args.output,
        args.curve,
        extra_sources_dir=args.extra_sources,
        progress=not args.no_progress,
    )
    print(f"{args.output}: {meta['steps']} steps in {meta['seconds']:.0f} s, final InfoNCE loss {meta['final_loss']}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .models.backbone import load_backbone
    from .models.training import train_ausil

    params = _params(args)
    _, info = load_backbone(params)
    if (args.cross_features_dir is None) != (args.cross_corpus is None):
        raise SystemExit("train: give both --cross-features-dir and --cross-corpus, or neither")
    if (args.extra_features_dir is None) != (args.extra_corpus is None):
        raise SystemExit("train: give both --extra-features-dir and --extra-corpus, or neither")
    cross = (args.cross_features_dir, args.cross_corpus) if args.cross_corpus else None
    extra = (args.extra_features_dir, args.extra_corpus) if args.extra_corpus else None
    meta = train_ausil(
        params,
        args.features_dir,
        args.corpus,
        args.output,
        args.curve,
        info.label,
        progress=not args.no_progress,
        cross=cross,
        extra=extra,
    )
    print(f"triplets: {meta['triplets']}")
    cross_note = f", cross-corpus val mAP {meta['cross_val_map']:.4f}" if cross else ""
    print(
        f"{args.output}: {meta['steps']} steps in {meta['seconds']:.0f} s; best: val mAP {meta['val_map']:.4f}"
        f"{cross_note} at step {meta['best_step']} ({meta['selection']}); backbone: {info.label}"
    )
    return 0


def cmd_similarity(args: argparse.Namespace) -> int:
    from .core.formats import read_video_list
    from .retrieval.runner import run_similarity

    params = _params(args)
    queries, database = read_video_list(args.queries), read_video_list(args.database)
    if args.model == RELEASED_MODEL and _released_unavailable(params):
        from .core.formats import write_unavailable

        write_unavailable(args.output, "ausil", RELEASED_LABEL, NOT_AVAILABLE)
        print(f"{RELEASED_LABEL}: {NOT_AVAILABLE} ({args.output} records that)", file=sys.stderr)
        return 0
    method = _ausil_method(args, params)
    print(f"{method.label}: {len(queries)} queries x {len(database)} videos", file=sys.stderr)
    _print_timing(args.output, run_similarity(method, queries, database, args.output, progress=not args.no_progress))
    return 0


def cmd_baseline_similarity(args: argparse.Namespace) -> int:
    """A baseline's scores, from a handler of its own so that AuSiL's stages do not depend on its code."""
    from .baselines.method import baseline_method
    from .core.formats import read_video_list
    from .retrieval.runner import run_similarity

    params = _params(args)
    queries, database = read_video_list(args.queries), read_video_list(args.database)
    with baseline_method(args.method, params, args.features_dir) as method:
        print(f"{method.label}: {len(queries)} queries x {len(database)} videos", file=sys.stderr)
        timing = run_similarity(method, queries, database, args.output, progress=not args.no_progress)
    _print_timing(args.output, timing)
    return 0


def _print_timing(output: str, timing: dict[str, float]) -> None:
    print(
        f"{output}: indexing {timing['index_s']:.1f} s, querying {timing['query_s']:.1f} s "
        f"({timing['ms_per_pair']:.2f} ms per pair), {timing['failed']} failed"
    )


def _ausil_method(args: argparse.Namespace, params: Params):
    from .core.config import resolve_device
    from .features.extraction import Extractor
    from .models.ausil import load_model
    from .models.weights import verify_released_model
    from .retrieval.runner import AusilMethod

    path = params.release.model_prefix if args.model == RELEASED_MODEL else args.model
    released = verify_released_model(params.release, path)
    model, meta = load_model(path, variant=args.variant)
    extractor = Extractor.from_params(params)
    if released:
        if extractor.backbone.source != "audioset" or extractor.partner is not None:
            raise ValueError(
                f"{path}: the released model was trained on AudioSet-backbone descriptors, but params "
                f"select '{extractor.backbone.label}' (`ausil fetch-weights` fetches the backbone)"
            )
        label = f"{RELEASED_LABEL} ({args.variant}); checkpoint {path}; backbone: {extractor.backbone.label}"
    elif meta.get("source") == "tensorflow-checkpoint":
        print(
            f"warning: {path} is a TensorFlow checkpoint other than the pinned release: it does not record which "
            f"backbone it was trained on; scoring with '{extractor.backbone.label}'",
            file=sys.stderr,
        )
        label = f"AuSiL ({args.variant}), TensorFlow checkpoint {path}; backbone: {extractor.backbone.label}"
    else:
        if meta.get("backbone") and meta["backbone"] != extractor.backbone.label:
            raise ValueError(
                f"{args.model} was trained on features of '{meta['backbone']}', "
                f"but params select '{extractor.backbone.label}'"
            )
        label = f"AuSiL ({args.variant}), model {args.model}; backbone: {extractor.backbone.label}"
    return AusilMethod(model, extractor, args.features_dir, resolve_device(params.device), label=label)


def _released_unavailable(params: Params) -> bool:
    """True when `--model released` cannot run here: a released file (backbone or checkpoint) is absent."""
    return not all(Path(pin.dest).is_file() for pin in params.release.files().values())


def cmd_locate(args: argparse.Namespace) -> int:
    from .core.config import resolve_device
    from .features.extraction import Extractor
    from .localisation.locate import AusilLocator
    from .models.ausil import AuSiL, load_model

    params = _params(args)
    cfg = params.localisation
    # whitening without attention: attention only rescales a segment, which the map's cosine undoes
    model = load_model(args.model, variant="mac_w")[0] if args.model else AuSiL(variant="mac_w")
    extractor = Extractor.from_params(params, cfg.time_step_ms)
    locator = AusilLocator(model, extractor, args.features_dir, cfg, resolve_device(params.device))
    what = f"backbone: {extractor.backbone.label}; model: {args.model or 'none (MAC descriptors, no whitening)'}"

    def example(located: Any, queries: dict[str, str], database: dict[str, str]) -> None:
        """The best-scoring pair's similarity map, when --example names a file for it."""
        if args.example:
            from .localisation.locate import write_example

            write_example(args.example, locator, located, queries, database)

    return _locate(args, params, "ausil", lambda files: locator, what, then=example)


def cmd_baseline_locate(args: argparse.Namespace) -> int:
    """A baseline's segments, from a handler of its own so that AuSiL's stages do not depend on its code."""
    params = _params(args)
    cfg = params.localisation
    if args.method == "dejavu":
        from .localisation.dejavu import DejavuLocator

        def dejavu(files: dict[str, str]) -> Any:
            locator = DejavuLocator(params.dejavu, cfg, params.audio.ffmpeg, params.audio.decode_timeout_s)
            locator.prefetch(files, params.dejavu.workers)
            return locator

        what = "aligned hashes of the best offset difference (Dejavu's hashes, matched without PostgreSQL)"
        return _locate(args, params, args.method, dejavu, what)
    from .baselines.spectro import SpectroMethod
    from .localisation.spectro import SpectroLocator

    spectro = SpectroLocator(SpectroMethod(args.method.split("-", 1)[1], params.spectro, args.features_dir), cfg)
    return _locate(args, params, args.method, lambda files: spectro, "best offset of the vote histogram")


def _locate(
    args: argparse.Namespace,
    params: Params,
    method: str,
    make_locator: Callable[[dict[str, str]], Any],
    what: str,
    then: Callable[[Any, dict[str, str], dict[str, str]], None] | None = None,
) -> int:
    """Locate the top-ranked pairs with the locator `make_locator` builds for the files they need, write
    them, and pass them to `then` (with the query and database lists)."""
    from .core.formats import read_results, read_video_list
    from .localisation.pairs import locate_pairs, top_k_pairs
    from .localisation.segments import write_segments

    queries, database = read_video_list(args.queries), read_video_list(args.database)
    ranking = read_results(args.ranking) if args.ranking else None
    pairs = top_k_pairs(ranking, queries, database, args.top_k or params.localisation.top_k)
    locator = make_locator({q: queries[q] for q in pairs} | {v: database[v] for vs in pairs.values() for v in vs})
    print(f"ausil locate: {method}, {sum(map(len, pairs.values()))} pairs; {what}", file=sys.stderr)
    located = locate_pairs(locator.segments, queries, database, pairs, progress=not args.no_progress)
    write_segments(args.output, located)
    if then is not None:
        then(located, queries, database)
    for q, videos in located.items():
        for v, segs in videos.items():
            for s in segs:
                print(
                    f"{q}\t{v}\tquery {s.query_start:.2f}-{s.query_end:.2f} s\tvideo {s.video_start:.2f}-"
                    f"{s.video_end:.2f} s\tspeed {s.speed:.3f}\tscore {s.score:.3f}"
                )
    print(f"written: {args.output}", file=sys.stderr)
    return 0


def cmd_locate_evaluate(args: argparse.Namespace) -> int:
    from .core.formats import atomic_write_json, metric_values, read_annotations
    from .localisation.metrics import localisation_metrics
    from .localisation.segments import read_segments
    from .localisation.truth import corpus_truth

    detected = read_segments(args.segments)
    if (args.truth is None) == (args.annotations is None):
        raise ValueError("locate-evaluate needs exactly one of --annotations (with --log) or --truth")
    truth = read_segments(args.truth) if args.truth else corpus_truth(args.log, read_annotations(args.annotations))
    metrics = localisation_metrics(detected, truth)
    atomic_write_json(args.metrics, metric_values(metrics))
    if args.example:
        from .localisation.truth import add_truth_to_example

        add_truth_to_example(args.example, truth)
    print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
    return 0


def cmd_dataset(args: argparse.Namespace) -> int:
    """The real-dataset stages (see datasets/real/pipeline.py); each prints what it did as JSON."""
    import json

    from .datasets.real import pipeline as dp

    params = _params(args)
    progress = not args.no_progress
    if args.step == "annotations":
        out = dp.stage_annotations(params, args.dataset, progress)
    elif args.step == "videos":
        out = dp.stage_videos(params, args.dataset, progress)
    elif args.step == "benchmarks":
        out = dp.stage_benchmarks(params, args.dataset, progress)
    else:
        if not (args.model and args.features_dir and args.results_dir and args.metrics_dir and args.plots_dir):
            raise ValueError("evaluate needs --model, --features-dir, --results-dir, --metrics-dir and --plots-dir")
        out = dp.stage_evaluate(
            params,
            args.dataset,
            args.model,
            args.features_dir,
            args.results_dir,
            args.metrics_dir,
            args.plots_dir,
            args.variant,
            progress,
        )
    print(json.dumps(out, indent=1, sort_keys=True))
    return 0


def cmd_dataset_budget(args: argparse.Namespace) -> int:
    import json

    from .core.config import resolve_device
    from .datasets.real.budget import estimate, load_speed_report, measure_pair_ms, render
    from .datasets.real.settings import dataset_config

    params = _params(args)
    pair = measure_pair_ms(resolve_device(params.device))
    bulk = load_speed_report(args.bulk_report) if args.bulk_report else None
    for name in args.dataset:
        budget = estimate(name, dataset_config(params, name), params, load_speed_report(args.speed_report), pair, bulk)
        print(json.dumps(budget, indent=1) if args.json else render(budget))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report.tables import run_notebooks

    for path in run_notebooks(args.root, args.out, html=not args.no_html):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ausil",
        description="Audio-based near-duplicate video retrieval benchmark (AuSiL, ICPR 2020). "
        "Settings come from params.yaml; each subcommand is one pipeline step.",
    )
    parser.add_argument("--params", default="params.yaml", help="parameter file (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, func: Callable[[argparse.Namespace], int], help_: str, description: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=description)
        p.set_defaults(func=func)
        return p

    p = add(
        "extract",
        cmd_extract,
        "decode videos and write AuSiL segment descriptors",
        "Decode the audio of every video in a list, compute 2 s log-mel segments and their 2528-d MAC "
        "descriptors, and write one <id>.npz per video (arrays 'descriptors' float32 [segments, 2528] and "
        "'meta' JSON). Videos already extracted with the same backbone and front end are skipped, so an "
        "interrupted run resumes. Files that cannot be used are listed with the reason in "
        "OUTPUT_DIR/failures.tsv and the run goes on.",
    )
    p.add_argument("--videos", required=True, help="video list, one 'id path' per line")
    p.add_argument("--output-dir", required=True, help="directory for the feature files and failures.tsv")
    p.add_argument(
        "--time-step-ms",
        type=int,
        default=None,
        help="segment step in ms (default: features.time_step_ms in params.yaml)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="files decoded ahead of the backbone (default: extract.decode_workers)",
    )
    p.add_argument("--dataset", default=None, help="a key of params.yaml datasets: use its time_step_ms (SVD: 125 ms)")
    p.add_argument(
        "--store",
        action="store_true",
        help="write a sharded feature store (real datasets: DataLoader decoding workers, large batches, "
        "mixed precision on GPU; params datasets.*) instead of one .npz per video",
    )
    p.add_argument("--fail-on-error", action="store_true", help="exit with status 3 if any video failed")
    p.add_argument(
        "--backbone",
        default=None,
        choices=["main", "auto", "audioset", "trained", "random"],
        help="override backbone.source; main keeps params.yaml's choice",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = add(
        "evaluate",
        cmd_evaluate,
        "mAP and interpolated PR curve of a results file (FIVR protocol)",
        "Score a results JSON {query: {video: similarity}} against annotations {query: {label: [ids]}} "
        "under the FIVR protocol: the query itself is excluded, only dataset ids are ranked, relevant "
        "videos missing from the results count as never retrieved, ties are broken by video id. Prints "
        "mAP and writes a metrics JSON and the 21 interpolated PR points.",
    )
    p.add_argument("--results", required=True, help="results JSON")
    p.add_argument("--annotations", required=True, help="annotation JSON")
    p.add_argument("--dataset-ids", required=True, help="file with the dataset's video ids, one per line")
    p.add_argument("--relevant-labels", default=DA, help="comma-separated relevant labels (default: %(default)s)")
    p.add_argument("--metrics", default=None, help="metrics JSON to write (default: RESULTS.metrics.json)")
    p.add_argument("--pr", default=None, help="PR points JSON to write (default: RESULTS.pr.json)")
    p.add_argument(
        "--ignore-labels",
        default="",
        help="comma-separated labels whose videos leave that query's ranking (the embedded corpus "
        "uses JUNK); empty (default) is the plain FIVR protocol",
    )
    p.add_argument("--per-query", action="store_true", help="also print the AP of every query")

    p = add(
        "fetch-weights",
        cmd_fetch_weights,
        "download and verify the AuSiL authors' released files",
        "Download the files params.yaml `release` pins (the AudioSet backbone and the authors' VCDB-trained "
        "similarity checkpoint) from the authors' repository at the pinned commit, verify each against its git "
        "blob id (and SHA-256 where pinned), and write the manifest the pipeline depends on. Verified files are "
        "not fetched again; an interrupted download resumes; a file that does not match is refused and removed. "
        f"Offline it says in one line what it could not reach and exits with status {EXIT_UNREACHABLE}.",
    )
    p.add_argument(
        "--optional",
        action="store_true",
        help="an unreachable release is a note, not an error (exit 0): what `make repro` uses",
    )
    p.add_argument(
        "--verify-only",
        action="store_true",
        help="no network: verify the files present and write the manifest (the DVC `weights` stage)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = add(
        "benchmark-speed",
        cmd_benchmark_speed,
        "measure feature-extraction speed on this machine",
        "Time decoding, log-mel, the backbone and the whole front end on a synthetic "
        "benchmark_speed.audio_seconds-long mp4 and write the numbers (with date and machine) to JSON.",
    )
    p.add_argument("--output", default="reports/speed.json", help="JSON file to write (default: %(default)s)")
    p.add_argument(
        "--bulk-videos",
        type=int,
        default=0,
        help="instead: throughput of `extract --store` over this many distinct 100 s videos "
        "(decoding workers, packed batches, fp32 and mixed precision)",
    )
    p.add_argument(
        "--similarity-videos",
        type=int,
        default=0,
        help="instead: time `dataset evaluate`'s AuSiL scorer on this many videos of 20-300 segments",
    )
    p.add_argument("--similarity-queries", type=int, default=76, help="queries for --similarity-videos")

    p = add(
        "fetch-sources",
        cmd_fetch_sources,
        "materialise the embedded corpus's source recordings",
        "Download the pinned Debian music packages (apt-get download + dpkg-deb -x, no root needed) or copy "
        "sources.music_dir, render espeak-ng speech, and write OUTPUT_DIR/manifest.json with every "
        "recording's origin, SHA-256, duration, licence and variant group. With --verify, check the result "
        "against the pins DVC holds for it (data.dvc) and fail on any difference.",
    )
    p.add_argument("--output-dir", default="data/sources", help="where the recordings go (default: %(default)s)")
    p.add_argument(
        "--cross-output-dir",
        default=None,
        help="also materialise params.yaml cross_corpus.sources here (data/cross_sources in `make repro`)",
    )
    p.add_argument(
        "--backbone-output-dir",
        default=None,
        help="also materialise params.yaml backbone_sources here (data/backbone_sources in `make repro`)",
    )
    p.add_argument(
        "--verify",
        default=None,
        metavar="DVC_FILE",
        help="DVC file pinning OUTPUT_DIR (e.g. data.dvc): fail if the sources differ from it",
    )
    p.add_argument(
        "--accept",
        action="store_true",
        help="with --verify: re-pin DVC_FILE to these sources instead of failing (other music)",
    )

    p = add(
        "build-corpus",
        cmd_build_corpus,
        "build the embedded benchmark from the source recordings",
        "Plan (deterministically from params.yaml corpus and the manifest), render and encode every clip of "
        "the train, val and test splits and the speed-transformed test set; write per benchmark "
        "queries.txt, database.txt, dataset_ids.txt and annotation.json, plus construction_log.json. "
        "Clips already rendered with the same plan are kept, so an interrupted build resumes.",
    )
    p.add_argument("--sources", default="data/sources", help="source recordings (default: %(default)s)")
    p.add_argument("--output-dir", default="data/corpus", help="corpus directory (default: %(default)s)")
    p.add_argument(
        "--summary", default="reports/corpus_summary.json", help="summary metrics JSON (default: %(default)s)"
    )
    p.add_argument("--workers", type=int, default=2, help="clips rendered in parallel (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--cross-corpus",
        action="store_true",
        help="build the cross-corpus validation set (params.yaml cross_corpus) from --sources instead",
    )
    p.add_argument(
        "--train-corpus",
        action="store_true",
        help="build AuSiL's extra training corpus (params.yaml train_corpus) from --sources instead",
    )

    p = add(
        "train-backbone",
        cmd_train_backbone,
        "train the backbone on the train split (no AudioSet weights)",
        "Self-supervised training of the weak_mxh64_1024 architecture on the corpus's train-split recordings: "
        "InfoNCE between MAC descriptors of clean 2 s windows and transformed copies (params "
        "backbone_training). Stops at the time budget or max_steps; resumes from its checkpoint.",
    )
    p.add_argument("--sources", default="data/sources", help="source recordings (default: %(default)s)")
    p.add_argument(
        "--corpus", default="data/corpus", help="corpus, for the split of each recording (default: %(default)s)"
    )
    p.add_argument("--output", default="models/backbone.pt", help="trained backbone (default: %(default)s)")
    p.add_argument("--curve", default="reports/backbone_training.json", help="loss curve JSON (default: %(default)s)")
    p.add_argument(
        "--extra-sources",
        default=None,
        help="backbone_sources recordings (ausil fetch-sources --backbone-output-dir), used when "
        "backbone_training.extra_sources is true",
    )
    p.add_argument("--max-steps", type=int, default=None, help="override backbone_training.max_steps")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = add(
        "train",
        cmd_train,
        "train the AuSiL similarity network",
        "Learn PCA whitening from train-split segment descriptors (an extra training corpus's too, when "
        "given), mine triplets from the train benchmark(s) "
        "(positive and hard-negative thresholds of the paper), train context vector and similarity CNN "
        "with the triplet loss plus similarity regularisation (params training), and keep the checkpoint "
        "with the best validation mAP (val, and the cross-corpus val set when given).",
    )
    p.add_argument("--features-dir", required=True, help="descriptors of the corpus videos (ausil extract)")
    p.add_argument("--corpus", default="data/corpus", help="corpus directory (default: %(default)s)")
    p.add_argument("--output", required=True, help="model file to write")
    p.add_argument("--curve", required=True, help="training curve JSON (loss, validation mAP per step)")
    p.add_argument("--gamma", type=float, default=None, help="override training.gamma (Table VII sweep)")
    p.add_argument(
        "--cross-features-dir",
        default=None,
        help="descriptors of the cross-corpus validation set: select on it as well (needs --cross-corpus)",
    )
    p.add_argument("--cross-corpus", default=None, help="cross-corpus directory (e.g. data/cross_corpus)")
    p.add_argument(
        "--extra-features-dir",
        default=None,
        help="descriptors of an extra training corpus: train on its train split too (needs --extra-corpus)",
    )
    p.add_argument("--extra-corpus", default=None, help="extra training corpus directory (e.g. data/train_corpus)")
    p.add_argument(
        "--backbone",
        default=None,
        choices=["main", "auto", "audioset", "trained", "random"],
        help="override backbone.source; main keeps params.yaml's choice (must match the features)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    def list_args(p: argparse.ArgumentParser, output: str, features_dir: str, features_help: str) -> None:
        """The lists, output and stored-features options of the scoring and localisation subcommands."""
        p.add_argument("--queries", required=True, help="query video list ('id path' per line)")
        p.add_argument("--database", required=True, help="database video list ('id path' per line)")
        p.add_argument("--output", required=True, help=output)
        p.add_argument("--features-dir", default=features_dir, help=features_help)
        p.add_argument("--no-progress", action="store_true", help="no progress bar")

    scoring = (
        "Write the reference results JSON {query: {video: similarity}} for a list of queries against a "
        "list of database videos, plus OUTPUT.failures.tsv (videos that could not be used, and why) and "
        "OUTPUT.timing.json (time indexing and querying). Finished queries are kept in OUTPUT.partial, so "
        "an interrupted run resumes."
    )
    p = add("similarity", cmd_similarity, "score every query against a database with AuSiL", scoring)
    list_args(p, "results JSON to write", "features", "stored segment descriptors; missing ones are computed here")
    p.add_argument(
        "--model",
        required=True,
        help="this project's model file, a TensorFlow checkpoint prefix (PREFIX.index and "
        "PREFIX.data-00000-of-00001, read without TensorFlow), or `released` for the authors' "
        "checkpoint pinned in params.yaml (when its files are absent, the run is recorded as not "
        "available and the command succeeds)",
    )
    p.add_argument(
        "--variant",
        default="full",
        choices=["mac", "mac_w", "mac_w_a", "full"],
        help="AuSiL ablation variant (default: %(default)s)",
    )
    p.add_argument(
        "--time-step-ms",
        type=int,
        default=None,
        help="override features.time_step_ms (must match the stored descriptors; Table IV sweep)",
    )
    p.add_argument(
        "--backbone",
        default=None,
        choices=["main", "auto", "audioset", "trained", "random"],
        help="override backbone.source; main keeps params.yaml's choice (must match the model's features)",
    )

    p = add(
        "baseline-similarity", cmd_baseline_similarity, "score every query against a database with a baseline", scoring
    )
    list_args(
        p,
        "results JSON to write",
        "features",
        "spectro: stored fingerprints, missing ones are computed here (dejavu keeps its own index)",
    )
    p.add_argument(
        "--method",
        required=True,
        choices=list(BASELINES),
        help="dejavu starts and stops its own PostgreSQL; spectro-slides and spectro-tiles run in process",
    )

    def locate_args(p: argparse.ArgumentParser, features_help: str) -> None:
        """The options both localisation subcommands take: the lists, and the ranking that picks the pairs."""
        list_args(p, "segments JSON to write", "features/localisation", features_help)
        p.add_argument("--top-k", type=int, default=None, help="videos per query (default: localisation.top_k)")
        p.add_argument("--ranking", default=None, help="results JSON {query: {video: similarity}} that picks the top K")

    locating = (
        "For each query and each of its top-K videos (from --ranking; every database video without it), "
        "write the aligned segments as JSON {query: {video: [{query_start, query_end, video_start, video_end, "
        "score, speed}]}} (seconds; speed = query duration / video duration of the matched part)."
    )
    p = add(
        "locate",
        cmd_locate,
        "where the duplicate is: aligned segments of each query in its top-ranked videos, by AuSiL",
        f"{locating} AuSiL finds them as diagonal bands of its segment similarity map at params "
        "localisation.time_step_ms (docs/localisation.md).",
    )
    locate_args(p, "descriptors at the localisation step; missing ones are made here (default: %(default)s)")
    p.add_argument("--model", default=None, help="AuSiL model file (its PCA whitening); none: plain MAC descriptors")
    p.add_argument("--example", default=None, help="also write the best-scoring pair's similarity map (JSON)")
    p.add_argument(
        "--backbone",
        default=None,
        choices=["main", "auto", "audioset", "trained", "random"],
        help="override backbone.source; main keeps params.yaml's choice",
    )

    p = add(
        "baseline-locate",
        cmd_baseline_locate,
        "where the duplicate is, by a baseline: one segment per pair, at speed 1",
        f"{locating} Dejavu: the aligned hashes of the best offset difference; Spectro: the best offset of "
        "the vote histogram (docs/localisation.md).",
    )
    locate_args(
        p, "spectro: fingerprints, missing ones are made here (default: %(default)s); dejavu keeps its hashes in memory"
    )
    p.add_argument("--method", required=True, choices=list(BASELINES), help="the baseline that locates")

    p = add(
        "locate-evaluate",
        cmd_locate_evaluate,
        "segment-level localisation scores against true segment pairs",
        "Score a segments JSON against the true segment pairs of every DA pair of an annotation (from the "
        "embedded corpus's construction log), or against a segments JSON of true pairs (--truth: a VCDB "
        "task's true_segments.json from `ausil dataset benchmarks`): VCDB-style segment precision, recall "
        "and F1, mean temporal IoU, mean speed error.",
    )
    p.add_argument("--segments", required=True, help="segments JSON (ausil locate)")
    p.add_argument("--log", default="data/corpus/construction_log.json", help="construction log (default: %(default)s)")
    p.add_argument("--annotations", default=None, help="annotation JSON of an embedded-corpus benchmark (with --log)")
    p.add_argument("--truth", default=None, help="true segment pairs as a segments JSON (instead of --annotations)")
    p.add_argument("--metrics", required=True, help="metrics JSON to write")
    p.add_argument("--example", default=None, help="example map JSON (ausil locate --example): add its true segments")

    p = add(
        "dataset",
        cmd_dataset,
        "one real-dataset stage (FIVR-200K/5K_a, SVD_a, VCDB, EVVE)",
        "Run one stage for a dataset defined in params.yaml `datasets`: 'annotations' fetches the "
        "annotation files (checksummed), validates them and composes the tasks (FIVR-5K_a subset, audio, "
        "visual, training splits); 'videos' downloads the media (yt-dlp for FIVR's YouTube ids: resumable, "
        "rate-limited, unavailable videos recorded; distribution archives for SVD, VCDB, EVVE); "
        "'benchmarks' matches files to the plan, renders the speed copies and writes every task's "
        "benchmark directory; 'evaluate' scores every task with AuSiL from the sharded feature store and "
        "writes results, metrics and PR points. See `ausil dataset-budget` for a dry run.",
    )
    p.add_argument("step", choices=["annotations", "videos", "benchmarks", "evaluate"])
    p.add_argument("--dataset", required=True, help="a key of params.yaml datasets (fivr200k, fivr5k, svd, ...)")
    p.add_argument("--model", default=None, help="evaluate: AuSiL model file")
    p.add_argument("--variant", default="full", choices=["mac", "mac_w", "mac_w_a", "full"])
    p.add_argument("--features-dir", default=None, help="evaluate: the dataset's feature store")
    p.add_argument("--results-dir", default=None, help="evaluate: where results/<task>.json go")
    p.add_argument("--metrics-dir", default=None, help="evaluate: where metrics/<task>.json go")
    p.add_argument("--plots-dir", default=None, help="evaluate: where the PR points <task>.json go")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = add(
        "dataset-budget",
        cmd_dataset_budget,
        "dry run: disk, time and GPU budget of a real dataset",
        "Print, before anything is fetched, the media and feature disk, the download, extraction and "
        "similarity time and the GPU memory of each named dataset, from its published size "
        "(datasets.<name>.stats), the extraction speed measured by benchmark-speed and a similarity "
        "timing measured now on this machine's device.",
    )
    p.add_argument("dataset", nargs="+", help="keys of params.yaml datasets")
    p.add_argument(
        "--speed-report",
        default="reports/speed.json",
        help="benchmark-speed output measured on the machine that will extract (default: %(default)s)",
    )
    p.add_argument(
        "--bulk-report",
        default=None,
        help="optional `benchmark-speed --bulk-videos` output from that machine (parallel decoding)",
    )
    p.add_argument("--json", action="store_true", help="JSON instead of text")

    p = add(
        "report",
        cmd_report,
        "execute the notebooks with papermill and render them to HTML",
        "Run every notebook in notebooks/ with papermill (parameter root), write the executed notebooks and "
        "their HTML (plots embedded) to OUT. The notebooks only read the pipeline's results and draw.",
    )
    p.add_argument("--root", default=".", help="repository root holding metrics/, plots/, results/, reports/")
    p.add_argument("--out", default="reports/rendered", help="output folder (default: %(default)s)")
    p.add_argument("--no-html", action="store_true", help="executed notebooks only, no HTML")

    p = add(
        "readme",
        cmd_readme,
        "regenerate the README's measured tables from reports/",
        "Rewrite the marked sections of README.md (speed table, results tables) from the report files "
        "the pipeline wrote, so that no number in the README is typed by hand.",
    )
    p.add_argument("--readme", default="README.md", help="file to update (default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with unchanged_source([args.params] if getattr(args, "params", None) else []):
            return args.func(args)
    except SourceChanged as exc:
        print(f"ausil {args.command}: error: {exc}", file=sys.stderr)
        return 3
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"ausil {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
