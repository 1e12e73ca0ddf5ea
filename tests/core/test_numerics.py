"""Importing ausil_lib pins CPU code paths, threads and determinism before torch runs (ausil_lib/core/numerics.py).

The pins only act if they precede torch's first operation, so each check runs in a fresh interpreter
whose environment lacks every variable the package sets: what it reports is the import order's doing.
`import ausil_lib` sets only the environment (no torch); the torch side is applied when a module that
uses torch is imported (or numerics_settings() runs), or at once if torch was imported first.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import ausil_lib
from ausil_lib.core.numerics import NUM_THREADS, PINNED_ENV, RECORDED_ENV, THREADS_ENV, numerics_settings

ROOT = Path(__file__).resolve().parents[2]
KEYS = {
    "env",
    "overridden",
    "cpu_capability",
    "num_threads",
    "num_interop_threads",
    "cudnn_deterministic",
    "cudnn_benchmark",
    "torch",
    "numpy",
    "machine",
    "cpu",
    "pinned",
    "torch_imported_first",
}
NOT_ABOVE_AVX2 = {"DEFAULT", "NO AVX", "AVX2"}  # torch.backends.cpu.get_cpu_capability() values
X86 = platform.machine().lower() in {"x86_64", "amd64"}
WARNING = "torch was imported before ausil_lib"


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -c code` from the repository root, without any variable the package pins (plus `env`)."""
    clean = {k: v for k, v in os.environ.items() if k not in PINNED_ENV and k != THREADS_ENV}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def settings_after(code: str, **env: str) -> tuple[dict, str]:
    proc = run_python(code + "\nimport json, ausil_lib\nprint(json.dumps(ausil_lib.numerics_settings()))", **env)
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_importing_the_package_before_torch_pins_everything() -> None:
    s, stderr = settings_after("import ausil_lib, torch\ntorch.ones(8).sum()")
    assert set(s) == KEYS
    assert s["env"]["ATEN_CPU_CAPABILITY"] == "avx2"
    assert s["env"]["ONEDNN_MAX_CPU_ISA"] == s["env"]["DNNL_MAX_CPU_ISA"] == "AVX2"
    assert s["env"]["MKL_CBWR"] == "COMPATIBLE"
    assert s["env"]["OMP_NUM_THREADS"] == s["env"]["MKL_NUM_THREADS"] == str(NUM_THREADS)
    assert s["overridden"] == []
    assert s["num_threads"] == NUM_THREADS and s["num_interop_threads"] == 1
    assert s["cudnn_deterministic"] and not s["cudnn_benchmark"]
    assert s["pinned"] and s["torch_imported_first"] is False
    assert WARNING not in stderr
    if X86:  # an AVX-512 machine would report AVX512 here without the pin; one without AVX2 reports less
        assert s["cpu_capability"] in NOT_ABOVE_AVX2


def test_a_deliberate_override_wins_and_is_recorded() -> None:
    s, _ = settings_after(
        "import ausil_lib, torch", ATEN_CPU_CAPABILITY="default", MKL_CBWR="AVX2", **{THREADS_ENV: "1"}
    )
    assert s["env"]["MKL_CBWR"] == "AVX2" and s["env"][THREADS_ENV] == "1"
    assert s["overridden"] == ["ATEN_CPU_CAPABILITY", "MKL_CBWR"]  # the thread count follows AUSIL_NUM_THREADS
    assert s["num_threads"] == 1 and s["env"]["OMP_NUM_THREADS"] == "1"
    if X86:
        assert s["cpu_capability"] == "DEFAULT"


def test_torch_imported_and_used_first_warns_once_and_still_pins_threads() -> None:
    s, stderr = settings_after("import torch\ntorch.ones(8).sum()\nimport ausil_lib\nausil_lib.pin_numerics()")
    assert stderr.count(WARNING) == 1
    assert s["torch_imported_first"] is True and s["pinned"]
    assert s["num_threads"] == NUM_THREADS and s["cudnn_deterministic"]


def test_this_test_session_runs_pinned() -> None:
    """conftest.py imports the package before any test module imports torch."""
    s = numerics_settings()
    assert set(s) == KEYS and set(s["env"]) == set(RECORDED_ENV)
    assert s["pinned"] and s["torch_imported_first"] is False
    json.dumps(s)
    if X86 and "ATEN_CPU_CAPABILITY" not in s["overridden"]:
        assert s["cpu_capability"] in NOT_ABOVE_AVX2


def test_the_libraries_run_the_pinned_code_paths() -> None:
    """Not just the variables: oneDNN's convolutions and MKL's GEMM report the pinned ISA and branch."""
    import torch

    code = (
        "import ausil_lib, torch\na = torch.randn(256, 256)\na @ a\n"
        "torch.nn.functional.conv2d(torch.randn(8, 16, 64, 64), torch.randn(32, 16, 3, 3))"
    )
    out = "".join((p := run_python(code, ONEDNN_VERBOSE="1", MKL_VERBOSE="1")).stdout + p.stderr)
    if X86 and torch.backends.mkldnn.is_available():
        isa = re.findall(r"onednn_verbose.*?,isa:([^\n]*)", out)
        assert isa and all("512" not in line for line in isa), isa or out[-2000:]
        assert re.search(r"exec,cpu,convolution,jit:", out) and not re.search(r"exec,cpu,convolution,jit:avx512", out)
    if torch.backends.mkl.is_available() and "SGEMM" in out:
        assert "CNR:COMPATIBLE" in out, out[-2000:]


def test_numpys_openblas_runs_the_pinned_kernels() -> None:
    """numpy's OpenBLAS (the corpus's transforms, the backbone's augmentations) runs its AVX2 kernels."""
    code = (
        "import json, ausil_lib, numpy, threadpoolctl\n"
        "print(json.dumps([i.get('architecture') for i in threadpoolctl.threadpool_info()"
        " if i.get('internal_api') == 'openblas']))"
    )
    architectures = json.loads(run_python(code).stdout.strip().splitlines()[-1])
    assert architectures, "numpy loaded no OpenBLAS"
    # without the pin an AVX-512 CPU reports SkylakeX, Cooperlake or Zen here
    if ausil_lib.core.numerics._has_avx2():  # x86-64 with AVX2 and FMA
        assert set(architectures) == {"Haswell"}, architectures


def test_calling_it_again_after_a_clean_import_does_not_warn() -> None:
    _, stderr = settings_after("import ausil_lib, torch\ntorch.ones(8).sum()\nausil_lib.pin_numerics()")
    assert WARNING not in stderr


def test_importing_the_package_sets_the_environment_without_torch() -> None:
    """pin_numerics only sets variables: modules that need no torch (evaluation, reports) load without it."""
    proc = run_python(
        "import json, os, sys, ausil_lib\nassert 'torch' not in sys.modules\n"
        "print(json.dumps({n: os.environ.get(n) for n in ausil_lib.core.numerics.PINNED_ENV}))"
    )
    env = json.loads(proc.stdout.strip().splitlines()[-1])
    assert env["ATEN_CPU_CAPABILITY"] == "avx2" and env["MKL_CBWR"] == "COMPATIBLE"
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == str(NUM_THREADS)


def test_importing_a_torch_module_applies_the_torch_settings() -> None:
    """The torch side (threads, one inter-op thread, deterministic cuDNN) is in force as soon as a module of
    the package that uses torch is imported, before any numerics_settings() call."""
    proc = run_python(
        "import json, ausil_lib.models.ausil, torch\n"
        "print(json.dumps([torch.get_num_threads(), torch.get_num_interop_threads(),"
        " torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark]))"
    )
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [NUM_THREADS, 1, True, False]
    assert WARNING not in proc.stderr
