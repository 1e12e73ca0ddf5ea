"""Tests of ausil_lib.retrieval."""
