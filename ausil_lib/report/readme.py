"""Regenerate the README's measured tables and key findings from the report files, so no number is
typed by hand.

Each table sits between `<!-- NAME:begin -->` and `<!-- NAME:end -->` markers; `ausil readme`
rewrites them and a test fails when the README and the reports disagree.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Callable

import pandas as pd

from ..core.formats import atomic_write_text


def speed_table(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"Measured {report['date']} on {m['cpu']} ({m['cpu_cores']} cores, {m['torch_threads']} torch threads, "
        f"device {m['device']}, torch {m['torch']}); {report['audio_seconds']:g} s mp4 (AAC), best of "
        f"{report['repeats']}; `reports/speed.json`.",
        "",
        "| time step | segments | decode (s / 100 s) | log-mel (s / 100 s) | backbone (s / 100 s) "
        "| backbone segments/s | end to end (s / 100 s) | x real time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for step, r in report["time_steps"].items():
        lines.append(
            f"| {step} ms | {r['segments']} | {report['decode_s_per_100s']:.3f} | {r['logmel_s_per_100s']:.3f} "
            f"| {r['backbone_s_per_100s']:.3f} | {r['backbone_segments_per_s']:.0f} "
            f"| {r['end_to_end_s_per_100s']:.3f} | {r['end_to_end_x_real_time']:.0f}x |"
        )
    if "partner" in report:  # params backbone.partner: end to end includes the partner network
        lines += ["", f"End to end includes the partner network, {report['partner']}:"]
        lines += [
            f"- {step} ms: decode at 16 kHz {r['partner_decode_s_per_100s']:.3f} s, "
            f"network {r['partner_s_per_100s']:.3f} s per 100 s of audio"
            for step, r in report["time_steps"].items()
        ]
    return "\n".join(lines)


def corpus_table(summary: dict) -> str:
    lines = [
        f"Size `{summary['size']}`: {summary['clips']} clips, {summary['hours']:.2f} h of audio "
        f"({', '.join(f'{n} {k}' for k, n in summary['formats'].items())}); `reports/corpus_summary.json`.",
        "",
        "| benchmark | queries | database videos | hours | DA pairs | DA per query | JUNK pairs | video files |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, b in summary["benchmarks"].items():
        lines.append(
            f"| {name} | {b['queries']} | {b['database']} | {b['database_hours']:.2f} | {b['da_pairs']} "
            f"| {b['da_per_query_mean']:.1f} | {b['junk_pairs']} | {b['video_files']} |"
        )
    splits = ", ".join(
        f"{k}: {v['music_recordings']} music + {v['speech_recordings']} speech recordings ({v['source_hours']:.2f} h)"
        for k, v in summary["splits"].items()
    )
    cases = ", ".join(f"{k} {v}" for k, v in summary["positive_cases"].items())
    hard = ", ".join(f"{k.split(':', 1)[1]} {v}" for k, v in summary["hard_cases"].items())
    steps = ", ".join(f"{k} {v}" for k, v in summary["transform_steps"].items())
    lines += [
        "",
        f"Splits (by variant group): {splits}.",
        "",
        f"Positives by case: {cases}; hard cases ({summary['hard_share_of_positives']:.0%} of positives): "
        f"{hard}. Transformation steps used: {steps}.",
    ]
    return "\n".join(lines)


def markdown(frame) -> str:
    """A pandas table as GitHub markdown, index included (no tabulate dependency)."""
    header = [frame.index.name or ""] + [str(c) for c in frame.columns]
    rows = [[str(i)] + [str(v) for v in row] for i, row in zip(frame.index, frame.itertuples(index=False))]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def results_table(root: Path) -> str:
    from .tables import NOT_RUN, SETS, backbone_note, ci_column, formatted, main_table, run_column

    table = main_table(root)
    shown = formatted(table)
    compact = shown[["queries", *(c for c in shown.columns if c.startswith("paper")), "note"]].copy()
    for position, set_name in enumerate(SETS):
        cis = table[ci_column(set_name)]
        compact.insert(
            position,
            f"{set_name} mAP [95 % CI]",
            [f"{v} [{ci}]" if ci != NOT_RUN else NOT_RUN for v, ci in zip(shown[run_column(set_name)], cis)],
        )
    return (
        f"{markdown(compact)}\n\n{backbone_note(root)}\n\nThe paper's columns are other datasets (FIVR-200K_a, "
        "SVD_a) and are shown for orientation only."
    )


def localisation_section(root: Path) -> str:
    """Issue 15's table (one row per method and set; F1 and mean IoU with their 95 % intervals over
    queries) and its paired F1 findings, from metrics/ and results/localisation/."""
    from .localisation import (
        CI_COLUMNS,
        LOCALISATION_COLUMNS,
        ci_header,
        localisation_findings,
        localisation_table,
        method_label,
    )
    from .tables import NOT_RUN

    table = localisation_table(root)
    if table.empty:
        return f"*{NOT_RUN}*: the `locate` stages have not run."

    def cell(row, key: str) -> str:
        value = row[LOCALISATION_COLUMNS[key]]
        if key == "dspd" and (value is None or pd.isna(value)):
            return "no hits"  # the speed error is a mean over hit pairs
        if value is None or pd.isna(value):
            return NOT_RUN
        text = str(int(value)) if key == "n" else f"{value:.3f}"
        ci = row[ci_header(key)] if key in CI_COLUMNS else None
        return f"{text} [{ci}]" if isinstance(ci, str) else text

    header = {key: f"{label} [95 % CI]" if key in CI_COLUMNS else label for key, label in LOCALISATION_COLUMNS.items()}
    shown = pd.DataFrame(
        [{"set": set_name, **{header[k]: cell(row, k) for k in header}} for (_, set_name), row in table.iterrows()],
        index=pd.Index([method_label(method) for method, _ in table.index], name="method"),
    )
    return "\n".join([markdown(shown), "", *(f"- {line}" for line in localisation_findings(root))])


def probe_section(root: Path) -> str:
    """Issue 13's backbone probes (scripts/backbone_probe.py): plain-descriptor mAP per recipe and step."""
    from .tables import NOT_RUN, PROBE_COLUMNS, backbone_probe_table

    table = backbone_probe_table(root)
    if table.empty:
        return f"*{NOT_RUN}*: scripts/backbone_probe.py has written no rows."
    shown = table.drop(columns=["commit"]).set_index("recipe")
    for label in PROBE_COLUMNS.values():
        shown[label] = [f"{v:.3f}" if pd.notna(v) else "–" for v in shown[label]]
    return markdown(shown)


def hard_cases_section(root: Path) -> str:
    """`test` mAP per method with and without the three hard cases the paper reports every method failing on."""
    from .breakdowns import hard_case_summary
    from .tables import NOT_RUN

    table = hard_case_summary(root, "test")
    if table.empty:
        return f"*{NOT_RUN}*: no corpus or no results on test."
    shown = table.set_index("method")
    for label in [c for c in shown.columns if c != "n queries"]:
        shown[label] = ["–" if pd.isna(v) else f"{v:.3f}" for v in shown[label]]
    return markdown(shown)


def taps_section(root: Path) -> str:
    """Issue 13's probe of the layers feeding the MAC (scripts/mac_taps_probe.py)."""
    from .tables import NOT_RUN, PROBE_COLUMNS, TAPS_MEAN, mac_taps_table

    table = mac_taps_table(root)
    if table.empty:
        return f"*{NOT_RUN}*: scripts/mac_taps_probe.py has written no rows."
    shown = table.drop(columns=["commit"]).set_index("backbone")
    for label in [*PROBE_COLUMNS.values(), TAPS_MEAN]:
        shown[label] = [f"{v:.3f}" for v in shown[label]]
    return markdown(shown)


def data_curve_section(root: Path) -> str:
    """Issue 13's AuSiL learning curve (scripts/ausil_data_curve.py): selection-set mAP against training queries."""
    from .tables import DATA_CURVE_GAP, NOT_RUN, ausil_data_curve_table

    table = ausil_data_curve_table(root)
    if table.empty:
        return f"*{NOT_RUN}*: scripts/ausil_data_curve.py has written no rows."
    shown = table.drop(columns=["commit"]).set_index("training queries")
    for label in [c for c in shown.columns if "val" in c]:
        shown[label] = [
            "–" if pd.isna(v) else f"{v:+.3f}" if label == DATA_CURVE_GAP else f"{v:.3f}" for v in shown[label]
        ]
    return markdown(shown)


# issue 13's targets for the offline default run: AuSiL's `test` mAP within this margin of Dejavu's, and a
# floor on `test_speed`
TARGET_MARGIN_TO_DEJAVU = 0.03
TARGET_TEST_SPEED = 0.85


def targets_section(root: Path) -> str:
    """Issue 13's targets measured on this run, each met or not, so the README's verdict follows the metrics."""
    from .tables import CROSS, CROSS_SETS, NOT_RUN, SETS, load_metrics, map_of

    main, cross = load_metrics(root), load_metrics(root, CROSS)

    def row(target: str, measured: float, bound: float, shown: str) -> str:
        if pd.isna(measured) or pd.isna(bound):
            return f"| {target} | {NOT_RUN} | – |"
        return f"| {target} | {shown} | {'yes' if measured >= bound else 'no'} |"

    full, control, mac_w = "ausil-full-main", "ausil-full-random", "ausil-mac_w-main"
    rows = ["| target | this run | met |", "|---|---|---|"]
    for s in SETS:
        a, c = map_of(main, full, s), map_of(main, control, s)
        rows.append(row(f"trained backbone ≥ untrained control, `{s}`", a, c, f"{a:.3f} vs {c:.3f}"))
    a, d = map_of(main, full, "test"), map_of(main, "dejavu", "test")
    bound = d - TARGET_MARGIN_TO_DEJAVU
    shown = f"{a:.3f} vs {bound:.3f} (Dejavu {d:.3f})"
    rows.append(row(f"AuSiL `test` ≥ Dejavu − {TARGET_MARGIN_TO_DEJAVU}", a, bound, shown))
    a = map_of(main, full, "test_speed")
    rows.append(row(f"AuSiL `test_speed` ≥ {TARGET_TEST_SPEED}", a, TARGET_TEST_SPEED, f"{a:.3f}"))
    for metrics, sets, prefix in ((main, SETS, ""), (cross, CROSS_SETS, "cross-corpus ")):
        for s in sets:
            a, w = map_of(metrics, full, s), map_of(metrics, mac_w, s)
            rows.append(row(f"full AuSiL ≥ its MAC + W, {prefix}`{s}`", a, w, f"{a:.3f} vs {w:.3f}"))
    return "\n".join(rows)


def findings_list(root: Path) -> str:
    """The key findings of the main table (methods against AuSiL, trained against untrained backbone)."""
    from .tables import findings

    return "\n".join(f"- {line}" for line in findings(root, ["methods", "control"]))


GPU_REPORTS = {"speed": "speed_h100.json", "bulk": "bulk_h100.json", "similarity": "similarity_h100.json"}
BUDGET_DATASETS = ("fivr200k", "fivr5k", "svd", "vcdb")


def _gpu_reports(root: Path) -> dict[str, dict]:
    return {
        k: json.loads((root / "reports" / "gpu" / name).read_text(encoding="utf-8")) for k, name in GPU_REPORTS.items()
    }


def gpu_table(root: Path) -> str:
    """The GPU speed measurements in reports/gpu/ (benchmark-speed: plain, --bulk-videos, --similarity-videos)."""
    r = _gpu_reports(root)
    speed, bulk, sim = r["speed"], r["bulk"], r["similarity"]
    m = speed["machine"]
    t1, t125 = speed["time_steps"]["1000"], speed["time_steps"]["125"]
    fp32, amp = bulk["runs"]["fp32"], bulk["runs"]["amp"]
    return "\n".join(
        [
            f"Measured {speed['date']} on {m.get('gpu', m['device'])} ({m['cpu_cores']} CPU cores, "
            f"torch {m['torch']}); `reports/gpu/`.",
            "",
            "| step | time |",
            "|---|---|",
            f"| sequential `benchmark-speed`, t = 1 s: decode / log-mel / backbone per 100 s of audio "
            f"| {speed['decode_s_per_100s']:.3f} / {t1['logmel_s_per_100s']:.3f} / {t1['backbone_s_per_100s']:.3f} s "
            f"({t1['end_to_end_x_real_time']:.0f}x real time) |",
            f"| same at t = 125 ms | {t125['end_to_end_s_per_100s']:.3f} s per 100 s "
            f"({t125['end_to_end_x_real_time']:.0f}x real time) |",
            f"| `ausil extract --store`, {bulk['videos']} distinct {bulk['video_seconds']:g} s mp4, "
            f"{bulk['decode_workers']} decoding workers, float32 | {fp32['videos_per_s']} videos/s "
            f"({fp32['x_real_time']:,.0f}x real time) |",
            f"| same with mixed precision | {amp['videos_per_s']} videos/s ({amp['x_real_time']:,.0f}x real time) |",
            f"| AuSiL similarity (`benchmark-speed --similarity-videos`): {sim['queries']} queries × {sim['videos']:,} "
            f"videos of {sim['segments'][0]}–{sim['segments'][1]} segments (mean {sim['mean_segments']:.0f}), "
            f"{sim['buckets']} length buckets | {sim['wall_s']:.0f} s, {sim['ms_per_pair']:.2f} ms per pair, "
            f"{sim['peak_gpu_gb']:.2f} GB GPU peak (the paper: 3 ms per pair of 100 s videos on a GTX 1070) |",
        ]
    )


def budget_table(root: Path) -> str:
    """`dataset-budget` for the paper's datasets on the reports/gpu/ measurements (params.yaml sizes)."""
    from ..core.config import load_params
    from ..datasets.real.budget import estimate
    from ..datasets.real.settings import dataset_config

    r = _gpu_reports(root)
    params = load_params(root / "params.yaml")
    sim = r["similarity"]
    pair = {"ms_per_pair": sim["ms_per_pair"], "n_segments": sim["mean_segments"], "device": sim["machine"]["device"]}
    lines = [
        "| dataset | videos | audio | media | features | download | extraction | similarity |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in BUDGET_DATASETS:
        b = estimate(name, dataset_config(params, name), params, r["speed"], pair, r["bulk"])
        d, t = b["disk_gb"], b["time_h"]
        download = f"≥ {t['download_at_rate_limit']} h" if t["download_at_rate_limit"] is not None else "archive"
        lines.append(
            f"| {name} | {b['videos']:,} | {b['hours_of_audio']:,.0f} h | {d['media']:,} GB "
            f"| {d['features']:,} GB | {download} | {t['extraction']} h | {t['similarity']} h "
            f"({b['pairs']:,} pairs) |"
        )
    return "\n".join(lines)


# marker name -> (report file whose presence enables the section, renderer of its JSON or of the root)
SECTIONS: dict[str, tuple[str, Callable[[dict], str]]] = {
    "speed": ("reports/speed.json", speed_table),
    "corpus": ("reports/corpus_summary.json", corpus_table),
}
# marker name -> (folders that must all exist, renderer of the root); the corpus's folder is DVC data, absent
# from a clone that has not run the pipeline: its sections are then left as they are, not rendered without it
ROOT_SECTIONS: dict[str, tuple[tuple[str, ...], Callable[[Path], str]]] = {
    "results": (("metrics",), results_table),
    "findings": (("metrics",), findings_list),
    "targets": (("metrics",), targets_section),
    "localisation": (("metrics/localisation", "data/corpus"), localisation_section),
    "probe": (("reports/ablations",), probe_section),
    "datacurve": (("reports/ablations",), data_curve_section),
    "taps": (("reports/ablations",), taps_section),
    "hardcases": (("data/corpus",), hard_cases_section),
    "gpu": (("reports/gpu",), gpu_table),
    "budget": (("reports/gpu",), budget_table),
}


def missing_inputs(root: Path = Path(".")) -> dict[str, list[str]]:
    """The sections `render` leaves as they are, with the inputs they lack."""
    missing = {name: [path] for name, (path, _) in SECTIONS.items() if not (root / path).is_file()}
    for name, (paths, _) in ROOT_SECTIONS.items():
        if absent := [p for p in paths if not (root / p).is_dir()]:
            missing[name] = absent
    return missing


def render(readme_text: str, root: Path = Path(".")) -> str:
    """The README text with every marked section regenerated from its report (missing reports left as is)."""
    skipped = missing_inputs(root)
    bodies = {
        name: renderer(json.loads((root / path).read_text(encoding="utf-8")))
        for name, (path, renderer) in SECTIONS.items()
        if name not in skipped
    }
    bodies.update({name: renderer(root) for name, (_, renderer) in ROOT_SECTIONS.items() if name not in skipped})
    for name, body in bodies.items():
        pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(readme_text):
            raise ValueError(f"README has no <!-- {name}:begin --> ... <!-- {name}:end --> section")
        readme_text = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), readme_text)
    return readme_text


def update_readme(readme: Path = Path("README.md"), root: Path = Path(".")) -> bool:
    """Rewrite README.md in place; True when it changed. Warns of the sections left as they were."""
    if skipped := missing_inputs(root):
        shown = "; ".join(f"{name} (no {', '.join(paths)})" for name, paths in sorted(skipped.items()))
        warnings.warn(f"{readme}: sections left as they were, their inputs are missing: {shown}", stacklevel=2)
    old = readme.read_text(encoding="utf-8")
    new = render(old, root)
    if new != old:
        atomic_write_text(readme, new)
    return new != old
