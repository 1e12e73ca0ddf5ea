"""Regenerate the README's measured tables from the report files, so no number is typed by hand.

Each table sits between `<!-- NAME:begin -->` and `<!-- NAME:end -->` markers; `ausil readme`
rewrites them and a test fails when the README and the reports disagree.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

from .formats import atomic_write_text


def speed_table(report: dict) -> str:
    m = report["machine"]
    lines = [f"Measured {report['date']} on {m['cpu']} ({m['cpu_cores']} cores, {m['torch_threads']} torch threads, "
             f"device {m['device']}, torch {m['torch']}); {report['audio_seconds']:g} s mp4 (AAC), best of "
             f"{report['repeats']}; `reports/speed.json`.", "",
             "| time step | segments | decode (s / 100 s) | log-mel (s / 100 s) | backbone (s / 100 s) "
             "| backbone segments/s | end to end (s / 100 s) | x real time |",
             "|---|---|---|---|---|---|---|---|"]
    for step, r in report["time_steps"].items():
        lines.append(f"| {step} ms | {r['segments']} | {report['decode_s_per_100s']:.3f} | {r['logmel_s_per_100s']:.3f} "
                     f"| {r['backbone_s_per_100s']:.3f} | {r['backbone_segments_per_s']:.0f} "
                     f"| {r['end_to_end_s_per_100s']:.3f} | {r['end_to_end_x_real_time']:.0f}x |")
    return "\n".join(lines)


def corpus_table(summary: dict) -> str:
    lines = [f"Size `{summary['size']}`: {summary['clips']} clips, {summary['hours']:.2f} h of audio "
             f"({', '.join(f'{n} {k}' for k, n in summary['formats'].items())}); `reports/corpus_summary.json`.", "",
             "| benchmark | queries | database videos | hours | DA pairs | DA per query | JUNK pairs | video files |",
             "|---|---|---|---|---|---|---|---|"]
    for name, b in summary["benchmarks"].items():
        lines.append(f"| {name} | {b['queries']} | {b['database']} | {b['database_hours']:.2f} | {b['da_pairs']} "
                     f"| {b['da_per_query_mean']:.1f} | {b['junk_pairs']} | {b['video_files']} |")
    splits = ", ".join(f"{k}: {v['music_recordings']} music + {v['speech_recordings']} speech recordings "
                       f"({v['source_hours']:.2f} h)" for k, v in summary["splits"].items())
    cases = ", ".join(f"{k} {v}" for k, v in summary["positive_cases"].items())
    hard = ", ".join(f"{k.split(':', 1)[1]} {v}" for k, v in summary["hard_cases"].items())
    steps = ", ".join(f"{k} {v}" for k, v in summary["transform_steps"].items())
    lines += ["", f"Splits (by variant group): {splits}.", "",
              f"Positives by case: {cases}; hard cases ({summary['hard_share_of_positives']:.0%} of positives): "
              f"{hard}. Transformation steps used: {steps}."]
    return "\n".join(lines)


def markdown(frame) -> str:
    """A pandas table as GitHub markdown, index included (no tabulate dependency)."""
    header = [frame.index.name or ""] + [str(c) for c in frame.columns]
    rows = [[str(i)] + [str(v) for v in row] for i, row in zip(frame.index, frame.itertuples(index=False))]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def results_table(root: Path) -> str:
    from .report import backbone_note, formatted, main_table

    table = formatted(main_table(root).drop(columns=["run"]))
    return (f"{markdown(table)}\n\n{backbone_note(root)}\n\nThe paper's columns are other datasets (FIVR-200K_a, "
            "SVD_a) and are shown for orientation only.")


# marker name -> (report file whose presence enables the section, renderer of its JSON or of the root)
SECTIONS: dict[str, tuple[str, Callable[[dict], str]]] = {
    "speed": ("reports/speed.json", speed_table),
    "corpus": ("reports/corpus_summary.json", corpus_table),
}
ROOT_SECTIONS: dict[str, tuple[str, Callable[[Path], str]]] = {
    "results": ("metrics", results_table),
}


def render(readme_text: str, root: Path = Path(".")) -> str:
    """The README text with every marked section regenerated from its report (missing reports left as is)."""
    bodies = {name: renderer(json.loads((root / path).read_text(encoding="utf-8")))
              for name, (path, renderer) in SECTIONS.items() if (root / path).is_file()}
    bodies.update({name: renderer(root) for name, (path, renderer) in ROOT_SECTIONS.items() if (root / path).is_dir()})
    for name, body in bodies.items():
        pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(readme_text):
            raise ValueError(f"README has no <!-- {name}:begin --> ... <!-- {name}:end --> section")
        readme_text = pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), readme_text)
    return readme_text


def update_readme(readme: Path = Path("README.md"), root: Path = Path(".")) -> bool:
    """Rewrite README.md in place; True when it changed."""
    old = readme.read_text(encoding="utf-8")
    new = render(old, root)
    if new != old:
        atomic_write_text(readme, new)
    return new != old
