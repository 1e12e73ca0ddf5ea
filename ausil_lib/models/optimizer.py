"""The optimiser of both trainings (the backbone's and AuSiL's), chosen for the same bytes on every CPU.

torch.optim.Adam's default step takes the second moment's square root with `torch.sqrt`, which on the CPU
goes through MKL's vector maths: its rounding depends on the processor. On an AMD EPYC about one value in
five came out otherwise than under emulation, and the backbone's loss curve left an Intel run's at step 2
(docs/reproducibility.md). The fused kernel does the whole step in torch's own vector code, whose square
root is the processor's correctly rounded instruction, so every x86-64 CPU computes the same update.
"""

from __future__ import annotations

from typing import Iterable

import torch

#: recorded in checkpoints: a run resumes only with the optimiser that wrote its state
KIND = "adam-fused"


def adam(parameters: Iterable[torch.nn.Parameter], learning_rate: float) -> torch.optim.Adam:
    """Adam with torch's defaults (betas 0.9 / 0.999, eps 1e-8), fused: one kernel for the whole step."""
    return torch.optim.Adam(parameters, lr=learning_rate, fused=True)
