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


# marker name -> (report file, renderer)
SECTIONS: dict[str, tuple[str, Callable[[dict], str]]] = {
    "speed": ("reports/speed.json", speed_table),
}


def render(readme_text: str, root: Path = Path(".")) -> str:
    """The README text with every marked section regenerated from its report (missing reports left as is)."""
    for name, (report_path, renderer) in SECTIONS.items():
        path = root / report_path
        if not path.is_file():
            continue
        body = renderer(json.loads(path.read_text(encoding="utf-8")))
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
