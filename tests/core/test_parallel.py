"""Per-file work in worker processes: the results, their order and their errors are a serial loop's."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from ausil_lib.audio.decode import AudioError
from ausil_lib.core.parallel import ordered_map


def square_or_refuse(item: tuple[str, int]) -> tuple[int, int]:
    """Module level, so spawned workers can import it; returns the worker's pid to see the spread."""
    name, value = item
    if value < 0:
        raise AudioError(name, "negative on purpose")
    return value * value, os.getpid()


def _collect(workers: int, items: list[tuple[str, int]]) -> list[int | str]:
    out: list[int | str] = []
    for result in ordered_map(square_or_refuse, items, workers):
        try:
            out.append(result()[0])
        except AudioError as exc:
            out.append(f"{exc.path}: {exc.reason}")
    return out


def test_workers_give_the_serial_results_in_order_and_one_error_spares_the_rest() -> None:
    items = [(f"f{i}.wav", -1 if i == 3 else i) for i in range(12)]
    serial = _collect(1, items)
    assert serial[3] == "f3.wav: negative on purpose"
    assert serial[:3] + serial[4:] == [i * i for i in range(12) if i != 3]
    assert _collect(2, items) == serial


def test_more_than_one_worker_runs_outside_this_process() -> None:
    pids = {result()[1] for result in ordered_map(square_or_refuse, [("a", i) for i in range(6)], 2)}
    assert os.getpid() not in pids


def test_stopping_early_leaves_no_worker_running() -> None:
    results = ordered_map(square_or_refuse, [("a", i) for i in range(50)], 2)
    assert next(results)()[0] == 0
    assert multiprocessing.active_children()
    results.close()  # what a consumer's error or break does; the pool shuts down with it
    assert not multiprocessing.active_children()


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="workers"):
        list(ordered_map(square_or_refuse, [("a", 1)], 0))
