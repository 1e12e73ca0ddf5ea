"""ausil_lib: audio-based near-duplicate video retrieval with AuSiL and its baselines."""

__version__ = "0.1.0"
