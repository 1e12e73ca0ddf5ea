"""Tests of whole pipelines: the DVC pipeline on the embedded corpus and on a miniature real dataset."""
