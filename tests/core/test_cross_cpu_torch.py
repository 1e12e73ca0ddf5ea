"""The torch steps whose bits depended on the processor give the same bits on an emulated CPU of the other maker.

On an AMD EPYC, `torch.log10` and the square root in torch.optim.Adam's default step (both MKL vector maths)
rounded otherwise than under an emulated Intel CPU, so the log-mel front end and the backbone's training left
an Intel run's numbers (docs/reproducibility.md). The front end now takes `portable_log10` and both trainings
the fused Adam step (`models/optimizer.py`). Native against emulated, in a fresh interpreter each, so that
numerics are pinned as in a stage; the emulated CPU is of the other maker than the host's.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

QEMU = shutil.which("qemu-x86_64")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        platform.machine().lower() not in {"x86_64", "amd64"} or QEMU is None,
        reason="needs qemu-x86_64 on an x86-64 machine (scripts/setup.sh installs qemu-user as root)",
    ),
]
ROOT = Path(__file__).resolve().parents[2]

_STEPS = """
import hashlib, json
import ausil_lib
import numpy as np
import torch
from ausil_lib.core.config import load_params
from ausil_lib.features.logmel import FeatureConfig, LogMel, portable_log10
from ausil_lib.models.optimizer import adam
from tests.helpers import chords

def digest(t):
    return hashlib.sha256(t.detach().contiguous().numpy().tobytes()).hexdigest()
cfg = FeatureConfig.from_params(load_params())
x = chords(20.0, seed=3) + 0.01 * np.random.default_rng(0).standard_normal(int(20.0 * cfg.sample_rate))
out = {"logmel": digest(LogMel(cfg)(torch.from_numpy(x.astype(np.float32))))}
# power values over the whole range the front end sees: torch.log10 differed on about 1 in 7,000 of them
powers = torch.exp(torch.empty(1_000_000).uniform_(-23.0, 14.0, generator=torch.Generator().manual_seed(1)))
out["log10"] = digest(portable_log10(powers))
torch.manual_seed(0)
layer = torch.nn.Linear(400, 256)
opt = adam(layer.parameters(), 1e-3)
for _ in range(3):
    loss = layer(torch.randn(32, 400)).square().mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
out["adam"] = digest(layer.weight)
print(json.dumps(out))
"""


def _other_maker() -> str:
    """An emulated CPU model of the other maker than the host's (both with AVX2, as the pinned kernels need)."""
    cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    return "Haswell" if "AuthenticAMD" in cpuinfo else "EPYC-Rome"


def _digests(prefix: list[str]) -> dict[str, str]:
    cmd = [*prefix, sys.executable, "-c", _STEPS]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_front_end_and_training_step_give_the_same_bits_on_the_other_makers_cpu() -> None:
    native = _digests([])
    emulated = _digests([QEMU, "-cpu", _other_maker()])
    assert set(native) == {"logmel", "log10", "adam"}
    assert native == emulated
