"""ausil_lib: audio-based near-duplicate video retrieval with AuSiL and its baselines."""

# Before any module of the package imports torch: CPU code paths, threads and determinism are the
# project's, not the machine's (see core/numerics.py). Only then do the environment variables take effect.
# pin_numerics() sets only the environment and imports no torch; modules that import torch apply torch's
# own settings (core.numerics.apply_torch_settings) when they are imported.
from ausil_lib.core.numerics import numerics_settings, pin_numerics

pin_numerics()

__version__ = "0.1.0"
__all__ = ["numerics_settings", "pin_numerics"]
