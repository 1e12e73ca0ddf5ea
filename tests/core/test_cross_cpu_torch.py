"""The torch steps whose bits depended on the processor give the same bits on an emulated CPU of the other maker.

On an AMD EPYC, `torch.log10` and the square root in torch.optim.Adam's default step (both MKL vector maths)
rounded otherwise than under an emulated Intel CPU, so the log-mel front end and the backbone's training left
an Intel run's numbers (docs/reproducibility.md). The front end now takes `portable_log10` and both trainings
the fused Adam step (`models/optimizer.py`). Native against emulated, in a fresh interpreter each, so that
numerics are pinned as in a stage; the emulated CPU is of the other maker than the host's.
"""

from __future__ import annotations

from pathlib import Path

from ..helpers import CROSS_CPU_MARKS, QEMU, script_digests

pytestmark = CROSS_CPU_MARKS

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


def test_front_end_and_training_step_give_the_same_bits_on_the_other_makers_cpu() -> None:
    native = script_digests(_STEPS, [])
    emulated = script_digests(_STEPS, [QEMU, "-cpu", _other_maker()])
    assert set(native) == {"logmel", "log10", "adam"}
    assert native == emulated
