"""The layout's import rules (README "Library layout"): nothing imports upward.

The library never imports the CLI, the evaluation never imports torch, the baselines never import
AuSiL's model, and `core` imports nothing above it. Imports of the package are read with ast, at module
level and inside functions (dvc_deps.py), so a lazy import breaks a rule as surely as a top-level one.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

from .dvc_deps import PACKAGE, ROOT, all_modules, module_closure, module_file, module_imports

MODULES = all_modules()


def _load_time_packages(mod: str) -> set[str]:
    """Top-level names of the packages module `mod` imports when it is loaded (function bodies skipped)."""
    names: set[str] = set()
    todo: list[ast.AST] = [ast.parse(module_file(mod).read_text(encoding="utf-8"))]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.add(node.module or "")
        todo += ast.iter_child_nodes(node)
    return {n.split(".")[0] for n in names}


def _packages_anywhere(mod: str) -> set[str]:
    tree = ast.parse(module_file(mod).read_text(encoding="utf-8"))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
    return {n.split(".")[0] for n in names}


def test_the_analysis_sees_every_module() -> None:
    assert len(MODULES) == len(list(PACKAGE.rglob("*.py")))
    assert {"__init__", "cli", "core", "core.numerics", "datasets.real", "datasets.real.pipeline"} <= set(MODULES)
    assert "core.formats" in module_imports("retrieval.evaluation")
    assert "datasets.real.loaders" in module_imports("datasets.real.pipeline")  # `from . import loaders as ds`
    assert "torch" in _load_time_packages("retrieval.runner")
    assert "torch" not in _load_time_packages("core.numerics") and "torch" in _packages_anywhere("core.numerics")


def test_the_library_never_imports_the_cli() -> None:
    library = [m for m in MODULES if m not in ("cli", "__main__")]  # __main__ is `python -m ausil_lib`, the CLI
    offenders = sorted(m for m in library if "cli" in module_imports(m))
    assert not offenders, f"modules importing ausil_lib.cli: {offenders}"


def test_the_baselines_never_import_ausils_model() -> None:
    baselines = [m for m in MODULES if m == "baselines" or m.startswith("baselines.")]
    assert {"baselines.dejavu", "baselines.postgres", "baselines.spectro"} <= set(baselines)
    direct = sorted(m for m in baselines if "models.ausil" in module_imports(m))
    assert not direct, f"baselines importing ausil_lib.models.ausil: {direct}"
    reached = {m: sorted(module_closure({m})) for m in baselines if "models.ausil" in module_closure({m})}
    assert not reached, f"baselines reaching ausil_lib.models.ausil through their imports: {reached}"


def test_core_imports_nothing_above_it() -> None:
    core = [m for m in MODULES if m == "core" or m.startswith("core.")]
    above = {m: sorted(i for i in module_imports(m) if i != "core" and not i.startswith("core.")) for m in core}
    assert not {m: i for m, i in above.items() if i}, above


def test_the_evaluation_never_imports_torch() -> None:
    """No module evaluation can import (lazily included) imports torch when it loads; evaluation itself
    imports torch nowhere. (core.numerics imports torch inside the functions that set and record torch's
    settings, which only modules that use torch call.) Then the same in a fresh interpreter."""
    assert "torch" not in _packages_anywhere("retrieval.evaluation")
    closure = module_closure({"retrieval.evaluation"})
    assert {"__init__", "core.formats", "core.numerics"} <= closure
    offenders = sorted(m for m in closure if "torch" in _load_time_packages(m))
    assert not offenders, f"modules in retrieval/evaluation.py's import closure importing torch: {offenders}"
    code = "import sys, ausil_lib.retrieval.evaluation\nassert 'torch' not in sys.modules, 'torch was imported'"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
