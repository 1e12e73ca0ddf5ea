"""The code each dvc.yaml stage runs: `ausil` subcommands -> the ausil_lib modules they can import.

Static and conservative: a subcommand's handler in cli.py, the cli.py helpers it calls (transitively),
their imports, then every module those modules import anywhere (module level or inside functions).
Modules are named relative to ausil_lib (`core.formats` is ausil_lib/core/formats.py); importing one
runs the `__init__.py` of every package above it, so those count as imported too.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "ausil_lib"
NOTEBOOKS = ROOT / "notebooks"
NOTEBOOK_RUNNER = "report"  # `ausil report` executes every notebook in notebooks/
_SUBCOMMAND = re.compile(r"(?:^|&&|;|\|\|)\s*ausil\s+(?:--params\s+\S+\s+)?([a-z][a-z-]*)")


def module_file(name: str) -> Path:
    path = PACKAGE.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _imports(node: ast.AST, package: str) -> set[str]:
    """ausil_lib modules imported anywhere under `node` (relative or absolute)."""
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.ImportFrom):
            if sub.level:
                base = package.split(".")[: len(package.split(".")) - sub.level + 1]
                mod = ".".join([*base, sub.module] if sub.module else base)
            else:
                mod = sub.module or ""
            if mod == "ausil_lib" or mod.startswith("ausil_lib."):
                inner = mod.removeprefix("ausil_lib").lstrip(".")
                if inner:
                    found.add(inner)
                for alias in sub.names:  # `from . import x` / `from ausil_lib import x`
                    candidate = f"{inner}.{alias.name}".lstrip(".")
                    if module_file(candidate).is_file():
                        found.add(candidate)
        elif isinstance(sub, ast.Import):
            found |= {a.name.removeprefix("ausil_lib.") for a in sub.names if a.name.startswith("ausil_lib.")}
    return found


def module_imports(mod: str) -> set[str]:
    """The ausil_lib modules that module `mod` (relative name; `__init__` is ausil_lib itself) imports
    anywhere in its file, not following them further."""
    path = module_file(mod)
    if mod == "__init__":
        package = "ausil_lib"
    elif path.name == "__init__.py":
        package = f"ausil_lib.{mod}"
    else:
        package = f"ausil_lib.{mod.rpartition('.')[0]}".rstrip(".")
    return _imports(ast.parse(path.read_text(encoding="utf-8")), package)


def all_modules() -> list[str]:
    """Every module of the package, as relative names (`core.formats`, `datasets.real`, `__init__`)."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        names.append(".".join(rel.parts[:-1]) if rel.name == "__init__" and len(rel.parts) > 1 else ".".join(rel.parts))
    return names


def module_closure(modules: set[str]) -> set[str]:
    """`modules` and everything they import, as module names relative to ausil_lib."""
    todo, seen = list(modules), set()
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        if mod != "__init__":  # the packages above it: ausil_lib itself, then e.g. `datasets`, `datasets.real`
            parts = mod.split(".")
            todo += ["__init__", *(".".join(parts[:i]) for i in range(1, len(parts)))]
        todo += module_imports(mod)
    return seen


def _cli_functions() -> tuple[dict[str, ast.FunctionDef], ast.Module]:
    tree = ast.parse((PACKAGE / "cli.py").read_text(encoding="utf-8"))
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}, tree


def subcommand_handlers() -> dict[str, str]:
    """Subcommand name -> handler function name, read from build_parser's `add(name, func, ...)` calls."""
    funcs, _ = _cli_functions()
    out = {}
    for call in ast.walk(funcs["build_parser"]):
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name)
            and call.func.id == "add"
            and len(call.args) >= 2
            and isinstance(call.args[0], ast.Constant)
            and isinstance(call.args[1], ast.Name)
        ):
            out[call.args[0].value] = call.args[1].id
    return out


def subcommand_modules(subcommand: str) -> set[str]:
    """Every ausil_lib module (relative name) running `ausil SUBCOMMAND` can import."""
    funcs, tree = _cli_functions()
    handler = subcommand_handlers()[subcommand]
    todo, seen = [handler, "_params"], set()  # main() only dispatches to the handler
    while todo:
        name = todo.pop()
        if name in seen or name not in funcs:
            continue
        seen.add(name)
        todo += [n.id for n in ast.walk(funcs[name]) if isinstance(n, ast.Name) and n.id in funcs]
    top_level = {n for n in tree.body if isinstance(n, ast.ImportFrom)}
    direct = set().union(
        *(_imports(funcs[f], "ausil_lib") for f in seen), *(_imports(n, "ausil_lib") for n in top_level)
    )
    if subcommand == NOTEBOOK_RUNNER:
        direct |= notebook_imports()
    return module_closure(direct | {"__init__"}) | {"cli"}  # cli.py itself, but not all its handlers


def notebook_imports() -> set[str]:
    """ausil_lib modules the code cells of the report notebooks import."""
    found: set[str] = set()
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "code":
                found |= _imports(ast.parse("".join(cell["source"])), "ausil_lib")
    return found


def stage_code(cmd: str) -> set[str]:
    """Files (relative to the repository) a stage command's `ausil` calls depend on."""
    mods = set().union(*(subcommand_modules(sub) for sub in _SUBCOMMAND.findall(cmd)))
    return {str(module_file(m).relative_to(ROOT)) if m != "__init__" else "ausil_lib/__init__.py" for m in mods}
