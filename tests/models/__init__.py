"""Tests of ausil_lib.models."""
