"""Scoring and judging: the runner every method shares, and the FIVR evaluation protocol (no torch)."""
