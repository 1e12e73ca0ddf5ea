"""One set of floating-point code paths on every x86-64 machine, chosen by the project, not per CPU.

Left alone, PyTorch picks its CPU kernels by the instruction set of the machine it runs on: ATen's
vectorised kernels (AVX-512 where present, else AVX2, ...), oneDNN's convolutions (avx512_core vs avx2
JIT code) and MKL's BLAS/FFT branches. Different kernels sum in different orders, so the same pipeline
gave different numbers on an AVX-512 machine and an AVX2-only one. Results also depend on the number of
threads (reductions and GEMMs split their work by it). `pin_numerics` fixes all of these:

  ATEN_CPU_CAPABILITY=avx2           ATen's vector kernels (read when the first op dispatches)
  ONEDNN_MAX_CPU_ISA=AVX2            oneDNN's ISA (DNNL_MAX_CPU_ISA is the pre-3.0 name; both are set)
  MKL_CBWR=COMPATIBLE                MKL's conditional numerical reproducibility branch, see below
  OPENBLAS_CORETYPE=Haswell          the AVX2 kernels of numpy's and scipy's OpenBLAS (on CPUs with AVX2)
  OMP_NUM_THREADS, MKL_NUM_THREADS   the fixed thread count (NUM_THREADS, or AUSIL_NUM_THREADS)
  CUBLAS_WORKSPACE_CONFIG=:4096:8    lets cuBLAS be deterministic where a GPU is used

`pin_numerics` only sets environment variables and never imports torch, so modules that need no torch
(evaluation, formats, reports) load without it. `apply_torch_settings` does the torch side: torch's
intra-op threads to that count, inter-op threads to 1, and cuDNN to its deterministic algorithms without
autotuning. Every module of the package that imports torch calls it when it is imported, before any
tensor work (and `resolve_device` and `numerics_settings` call it too); it is idempotent.
(`torch.use_deterministic_algorithms` is not called: it imports torch's compiler stack, which changes
how the process dies on SIGINT, and the CPU ops this suite uses are deterministic already.)

MKL_CBWR: the AVX2 branch gives one result on every *Intel* AVX2 CPU, but MKL ignores it on AMD and
uses its AUTO branch there (MKL_VERBOSE reports `CNR:AUTO` on an AMD EPYC), so it does not make an
Intel and an AMD machine agree. COMPATIBLE is the branch MKL documents as identical on all Intel and
compatible processors. Its price is in float32 GEMMs, about 2x (AuSiL's PCA embedding of 200 videos x 60
segments: 1.0 s -> 2.1 s on 2 threads); the backbone's convolutions run in oneDNN and do not pay it
(AVX2 instead of AVX-512 there: +18 %). `MKL_CBWR=AVX2` in the environment trades that back.

OPENBLAS_CORETYPE: numpy and scipy bring their own OpenBLAS, which also picks its kernels per CPU. The
corpus's transforms and the backbone's augmentations run through it, so without this pin an AVX-512 AMD
EPYC (Zen 4) built another corpus and trained another backbone than the AVX2 reference machine (losses
apart from step 6 on); with it, the same losses. OpenBLAS reads it when numpy loads, so numpy too must be
imported after ausil_lib. A CPU without AVX2 keeps OpenBLAS's own choice (forcing Haswell kernels there
would stop the process on an illegal instruction).

Every variable is set with `os.environ.setdefault`: a value already in the environment wins, so a
user can override deliberately (`ATEN_CPU_CAPABILITY=avx512 ausil ...`); `numerics_settings()`
records what was actually in force, for the results files. The variables only act if they are set
before torch runs its first operation, so `ausil_lib/__init__.py` calls `pin_numerics()` before any
module of the package imports torch. If torch was imported (and maybe used) earlier, pinning still
happens as far as it can (the torch settings are applied at once) and a warning says so, once.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import warnings
from typing import Any

#: intra-op threads of torch (and OpenMP / MKL): a constant, so results do not depend on the machine's size
NUM_THREADS = 2
INTEROP_THREADS = 1
THREADS_ENV = "AUSIL_NUM_THREADS"  # deliberate override of NUM_THREADS

#: ATen's name for the pinned capability, as torch.backends.cpu.get_cpu_capability() reports it
PINNED_CAPABILITY = "AVX2"
# capabilities at or below the pinned one (a CPU without AVX2 falls back to one of the lower ones)
_NOT_ABOVE = ("DEFAULT", "NO AVX", "AVX", "AVX2")


def _defaults() -> dict[str, str]:
    threads = os.environ.get(THREADS_ENV, str(NUM_THREADS))
    if not threads.isdigit() or int(threads) < 1:
        raise ValueError(f"{THREADS_ENV} must be a positive integer, got {threads!r}")
    return {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "DNNL_MAX_CPU_ISA": "AVX2",
        "MKL_CBWR": "COMPATIBLE",
        **({"OPENBLAS_CORETYPE": "Haswell"} if _has_avx2() else {}),
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
    }


def _has_avx2() -> bool:
    """Whether this is an x86-64 CPU with AVX2 and FMA, the instructions of OpenBLAS's Haswell kernels."""
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return False
    return {"avx2", "fma"} <= set((_cpuinfo("flags") or "").split())


def _cpuinfo(field: str) -> str | None:
    """The first value of a /proc/cpuinfo field (None where there is no such file or field)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.split(":", 1)[0].strip() == field:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


PINNED_ENV = (
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "MKL_CBWR",
    "OPENBLAS_CORETYPE",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "CUBLAS_WORKSPACE_CONFIG",
)
#: the variables numerics_settings() records: those pinned, plus the ones that steer them or numpy's BLAS
RECORDED_ENV = (*PINNED_ENV, THREADS_ENV, "MKL_ENABLE_INSTRUCTIONS", "OPENBLAS_NUM_THREADS")

_state: dict[str, Any] = {
    "called": False,
    "torch_imported_first": None,
    "warned": False,
    "defaults": {},
    "torch_applied": False,
}


def pin_numerics() -> None:
    """Pin CPU code paths, thread counts and deterministic algorithms (see the module docstring).

    Idempotent, and imports nothing: it sets the environment variables, which torch reads when it loads.
    If torch was imported first, applies the torch settings at once and warns once that the CPU code
    paths may be the machine's own.
    """
    first_call = not _state["called"]
    if first_call:  # later calls find torch imported by the package itself: only the first one tells
        _state["torch_imported_first"] = "torch" in sys.modules
    defaults = _defaults()
    _state["defaults"] = defaults
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
    _state["called"] = True

    if "torch" in sys.modules:  # already loaded (by the caller, or by the package earlier): no import cost
        apply_torch_settings()

    if _state["torch_imported_first"] and not _state["warned"]:
        _state["warned"] = True
        torch = sys.modules["torch"]
        capability = torch.backends.cpu.get_cpu_capability()
        wanted = os.environ["ATEN_CPU_CAPABILITY"].upper()
        status = (
            "ATen reports the pinned capability, but oneDNN and MKL may already have chosen theirs"
            if capability == wanted or (wanted == PINNED_CAPABILITY and capability in _NOT_ABOVE)
            else f"ATen already runs {capability} kernels instead of {wanted}"
        )
        warnings.warn(
            f"torch was imported before ausil_lib, so its CPU code paths may not be pinned ({status}); "
            "numbers can then differ from other machines'. Import ausil_lib first, or set "
            "ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA and MKL_CBWR in the environment.",
            RuntimeWarning,
            stacklevel=2,
        )


def apply_torch_settings() -> None:
    """torch's side of the pinning: intra-op threads, one inter-op thread, deterministic cuDNN.

    Idempotent; called by every module of the package that imports torch, right when it is imported.
    Imports torch, so the environment variables are pinned first (`pin_numerics`, which importing
    ausil_lib has already run).
    """
    if not _state["called"]:
        pin_numerics()  # the variables must precede torch's first operation

    import torch

    first_call = not _state["torch_applied"]
    threads = int(os.environ.get(THREADS_ENV, str(NUM_THREADS)))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if first_call and torch.get_num_interop_threads() != INTEROP_THREADS:
        with contextlib.suppress(RuntimeError):  # inter-op work already ran (torch was used first): keep its pool
            torch.set_num_interop_threads(INTEROP_THREADS)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    _state["torch_applied"] = True


def _cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def numerics_settings() -> dict[str, Any]:
    """The numerical settings in force now, JSON-serialisable, for results files.

    Keys: env (each variable of RECORDED_ENV, None where unset), overridden (pinned variables whose value
    differs from the project default: a deliberate override or something set before ausil_lib ran),
    cpu_capability (ATen's kernels: AVX2 when pinned on an AVX2-capable machine), num_threads,
    num_interop_threads, cudnn_deterministic, cudnn_benchmark, torch, numpy, machine, cpu,
    pinned (pin_numerics ran), torch_imported_first (torch was already imported when it first ran: then the
    CPU code paths may not be the pinned ones).
    """
    import numpy
    import torch

    apply_torch_settings()  # what is recorded is what the package's torch code runs with
    defaults = _state["defaults"] or _defaults()
    env = {name: os.environ.get(name) for name in RECORDED_ENV}
    return {
        "env": env,
        "overridden": sorted(n for n, v in defaults.items() if env.get(n) != v),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "torch": str(torch.__version__),  # a TorchVersion would not load back with weights_only
        "numpy": numpy.__version__,
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "pinned": bool(_state["called"]),
        "torch_imported_first": _state["torch_imported_first"],
    }
