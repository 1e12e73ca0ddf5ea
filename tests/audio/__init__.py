"""Tests of ausil_lib.audio."""
