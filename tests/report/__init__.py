"""Tests of ausil_lib.report."""
