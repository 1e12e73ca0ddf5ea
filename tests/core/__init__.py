"""Tests of ausil_lib.core."""
