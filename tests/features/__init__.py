"""Tests of ausil_lib.features."""
