# The two README commands are `make repro` and `make test`; both set up (or refresh) .venv first.
SHELL := /bin/bash
VENV := $(CURDIR)/.venv/bin
export PATH := $(VENV):$(PATH)
export DVC_NO_ANALYTICS := 1
export NUMBA_CACHE_DIR := $(CURDIR)/.pytest_cache/numba

.PHONY: setup lint test test-e2e test-fast repro benchmark-speed plots

setup:
	@bash scripts/setup.sh

## lint: ruff check and ruff format --check (CI runs it before the tests)
lint: setup
	ruff check .
	ruff format --check .

## test: the suite without the whole-pipeline run (what CI runs)
test: setup
	python -m pytest -q -m "not e2e"

## test-e2e: the whole dvc.yaml reproduced on a tiny generated corpus, notebooks included (~25 min)
test-e2e: setup
	python -m pytest -q -m e2e

## test-fast: skip the slow end-to-end runs
test-fast: setup
	python -m pytest -q -m "not slow"

## repro: the main job, `dvc repro` on the embedded default corpus
repro: setup
	ausil fetch-sources --cross-output-dir data/cross_sources --backbone-output-dir data/backbone_sources \
		--verify data.dvc
	ausil fetch-weights --optional --no-progress
	dvc repro
	dvc metrics show

benchmark-speed: setup
	dvc repro benchmark_speed

## plots: every PR and training curve, methods overlaid per set, drawn offline (reports/plots/index.html)
plots: setup
	dvc plots show
