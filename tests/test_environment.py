"""The set-up files agree with each other, and CI runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def pins(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"unpinned requirement: {line!r}"
        out[re.sub(r"[-_.]+", "-", name).lower()] = version
    return out


def test_environment_yml_pins_the_same_packages_as_requirements() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert pins(pip_section) == pins((ROOT / "requirements.txt").read_text().splitlines())


def test_torch_and_torchaudio_are_the_matched_pair() -> None:
    req = pins((ROOT / "requirements.txt").read_text().splitlines())
    assert req["torch"] == req["torchaudio"] == "2.11.0"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme and "make repro" in readme
