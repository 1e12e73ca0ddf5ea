"""The layout's import rules (README "Library layout"): nothing imports upward.

The library never imports the CLI, the evaluation never imports torch, the baselines never import
AuSiL's model, and `core` imports nothing above it. Imports are read with ast (module level and inside
functions, see dvc_deps.py), so a lazy import breaks a rule as surely as a top-level one.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

from .dvc_deps import ROOT, all_modules, module_closure, module_imports

MODULES = all_modules()


def _fresh_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=300
    )


def test_the_analysis_sees_every_module() -> None:
    assert {"__init__", "cli", "core", "core.numerics", "datasets.real", "datasets.real.pipeline"} <= set(MODULES)
    assert "core.formats" in module_imports("retrieval.evaluation")
    assert "datasets.real.loaders" in module_imports("datasets.real.pipeline")  # `from . import loaders as ds`


def test_the_library_never_imports_the_cli() -> None:
    library = [m for m in MODULES if m not in ("cli", "__main__")]  # __main__ is `python -m ausil_lib`, the CLI
    offenders = sorted(m for m in library if "cli" in module_imports(m))
    assert not offenders, f"modules importing ausil_lib.cli: {offenders}"


def test_the_baselines_never_import_ausils_model() -> None:
    baselines = [m for m in MODULES if m == "baselines" or m.startswith("baselines.")]
    assert {"baselines.dejavu", "baselines.postgres", "baselines.spectro"} <= set(baselines)
    direct = sorted(m for m in baselines if "models.ausil" in module_imports(m))
    assert not direct, f"baselines importing ausil_lib.models.ausil: {direct}"
    reached = sorted(m for m in baselines if "models.ausil" in module_closure({m}))
    assert not reached, f"baselines reaching ausil_lib.models.ausil through their imports: {reached}"


def test_core_imports_nothing_above_it() -> None:
    core = [m for m in MODULES if m == "core" or m.startswith("core.")]
    above = {m: sorted(i for i in module_imports(m) if i != "core" and not i.startswith("core.")) for m in core}
    assert not {m: i for m, i in above.items() if i}, above


def test_the_evaluation_never_imports_torch() -> None:
    tree = ast.parse((ROOT / "ausil_lib" / "retrieval" / "evaluation.py").read_text(encoding="utf-8"))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {n for n in names if n.split(".")[0] == "torch"}, names
    # and nothing it imports at load time does (the package's __init__ and core included)
    proc = _fresh_python("import sys, ausil_lib.retrieval.evaluation\nassert 'torch' not in sys.modules")
    assert proc.returncode == 0, proc.stderr[-3000:]
