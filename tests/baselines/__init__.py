"""Tests of ausil_lib.baselines."""
