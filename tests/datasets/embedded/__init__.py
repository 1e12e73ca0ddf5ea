"""Tests of ausil_lib.datasets.embedded."""
