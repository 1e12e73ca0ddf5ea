"""Tests of ausil_lib.datasets.real."""
