"""Whole-pipeline measurements: the speed benchmark."""
