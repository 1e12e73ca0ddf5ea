"""`dvc plots show`: one chart per set with every method overlaid, drawn offline from the vendored vega libraries."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from .dvc_deps import ROOT

DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
SETS = ("test", "test_speed")


def _top_level() -> dict[str, dict]:
    return {name: spec for entry in DVC_YAML["plots"] for name, spec in entry.items()}


def _dvc_config(key: str) -> str:
    match = re.search(rf"^\s*{key}\s*=\s*(\S+)\s*$", (ROOT / ".dvc" / "config").read_text(encoding="utf-8"), re.M)
    assert match, f".dvc/config sets no {key}"
    return match.group(1)


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.sources += [value or "" for name, value in attrs if name == "src"]


def _script_sources(html: str) -> list[str]:
    parser = _Scripts()
    parser.feed(html)
    return parser.sources


@pytest.mark.parametrize("set_name", SETS)
def test_one_chart_per_set_overlays_every_method(set_name: str) -> None:
    chart = _top_level()[f"pr_{set_name}"]
    files = set(chart["y"])
    committed = {str(p.relative_to(ROOT)) for p in ROOT.glob(f"plots/*/{set_name}.json")}
    assert committed, "no committed PR points to compare with"
    assert committed <= files, f"methods missing from the {set_name} chart: {sorted(committed - files)}"
    assert all(field == "precision" for field in chart["y"].values()) and chart["x"] == "recall"


def test_no_curve_is_drawn_twice() -> None:
    """A stage-level plot of a file the top-level charts draw would add a single-line chart beside them."""
    top_files = {f for spec in _top_level().values() for f in spec["y"]}
    for name, stage in DVC_YAML["stages"].items():
        body = stage.get("do", stage)
        for entry in body.get("plots", []):
            path = entry if isinstance(entry, str) else next(iter(entry))
            assert path not in top_files, f"stage {name} also declares {path} as a plot"


def test_plots_page_loads_only_vendored_scripts() -> None:
    template = (ROOT / ".dvc" / _dvc_config("html_template")).resolve()
    out_dir = ROOT / _dvc_config("out_dir")
    assert template.is_file() and template.parent == out_dir.resolve()
    html = template.read_text(encoding="utf-8")
    assert "{plot_divs}" in html and "{scripts}" not in html  # DVC's CDN scripts are never injected
    sources = _script_sources(html)
    assert len(sources) == 3
    for source in sources:
        assert not re.match(r"(https?:)?//", source), source
        assert (out_dir / source).is_file(), source
        assert (out_dir / source).with_name(Path(source).name.removesuffix(".min.js") + ".LICENSE").is_file()


@pytest.mark.slow
def test_dvc_plots_show_writes_an_offline_page(tmp_path: Path) -> None:
    """The real command on a copy of the committed outputs: every chart is drawn, no script from the network."""
    work = tmp_path / "repo"
    for name in ("dvc.yaml", "params.yaml", ".dvc/config", "plots", "reports"):
        source = ROOT / name
        target = work / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("rendered", "index.html"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
    config = work / ".dvc" / "config"
    config.write_text(config.read_text(encoding="utf-8").replace("[core]\n", "[core]\n    no_scm = true\n", 1))
    subprocess.run(["dvc", "plots", "show"], cwd=work, check=True, capture_output=True)
    page = (work / _dvc_config("out_dir") / "index.html").read_text(encoding="utf-8")
    assert _script_sources(page) == _script_sources((ROOT / ".dvc" / _dvc_config("html_template")).read_text())
    assert not re.search(r"<script[^>]*src=\"(https?:)?//", page)
    assert page.count("vegaEmbed(") >= len(_top_level())
