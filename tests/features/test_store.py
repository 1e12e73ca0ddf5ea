"""The sharded feature store: round trips, commit protocol, resume after a crash, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ausil_lib.features.store import HEADER_FILE, FeatureStore, StoreError, shard_name

DIM = 16
SIGNATURE = {"backbone": "random-test", "time_step_ms": 1000, "top_db": 80.0}
TOLERANCE = {"float32": 0.0, "float16": 1e-3}


def descriptors(n: int, seed: int) -> np.ndarray:
    """Rows like real descriptors: non-negative, L2-normalised."""
    rows = np.random.default_rng(seed).random((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def new_store(root: Path, dtype: str = "float32", **kwargs) -> FeatureStore:
    return FeatureStore(root, SIGNATURE, dtype=dtype, dim=DIM, **kwargs)


def fill(store: FeatureStore, count: int, first: int = 0) -> dict[str, np.ndarray]:
    added = {}
    for i in range(first, first + count):
        added[f"v{i}"] = descriptors(1 + i % 4, seed=i)
        store.add(f"v{i}", added[f"v{i}"], {"path": f"/videos/{i}.mp4", "i": i})
    return added


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_round_trip_before_and_after_flush_and_reopen(tmp_path: Path, dtype: str) -> None:
    store = new_store(tmp_path / "s", dtype)
    added = fill(store, 3)
    pending = {vid: store.get(vid) for vid in added}
    store.flush()
    reopened = FeatureStore(tmp_path / "s", readonly=True)
    assert reopened.dtype == dtype and reopened.dim == DIM and reopened.signature == SIGNATURE
    assert reopened.ids() == list(added) and len(reopened) == 3
    assert reopened.total_segments() == sum(a.shape[0] for a in added.values())
    for vid, rows in added.items():
        got = reopened.get(vid)
        assert got.dtype == np.float32 and got.shape == rows.shape
        np.testing.assert_allclose(got, rows, rtol=0, atol=TOLERANCE[dtype])
        np.testing.assert_array_equal(got, pending[vid])  # rounded once, on add
        assert reopened.n_segments(vid) == rows.shape[0]
        assert reopened.meta(vid)["path"].endswith(f"{vid[1:]}.mp4")
    header = json.loads((tmp_path / "s" / HEADER_FILE).read_text())
    assert header == {"format": 1, "dtype": dtype, "dim": DIM, "signature": SIGNATURE}
    assert np.load(tmp_path / "s" / shard_name(0, "npy")).dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_many_videos_over_several_shards_keep_order_and_contents(tmp_path: Path, dtype: str) -> None:
    with new_store(tmp_path / "s", dtype, shard_videos=3) as store:
        added = fill(store, 10)
        assert sorted(p.name for p in (tmp_path / "s").glob("shard-*.json")) == [
            shard_name(i, "json") for i in range(3)
        ]
        assert len(store) == 10 and "v9" in store  # the last video is pending, still visible
    reopened = FeatureStore(tmp_path / "s")
    assert reopened.ids() == [f"v{i}" for i in range(10)]
    for vid, rows in added.items():
        np.testing.assert_allclose(reopened.get(vid), rows, rtol=0, atol=TOLERANCE[dtype])
    added.update(fill(reopened, 2, first=10))  # appending after a reopen continues the shard numbering
    reopened.flush()
    assert FeatureStore(tmp_path / "s").ids() == list(added)


def test_crash_loses_only_unflushed_videos_and_resume_goes_on(tmp_path: Path) -> None:
    store = new_store(tmp_path / "s", shard_videos=4)
    added = fill(store, 6)  # one shard of 4 written, 2 pending
    del store  # a crash: no flush, no context exit
    resumed = new_store(tmp_path / "s", shard_videos=4)
    assert resumed.ids() == ["v0", "v1", "v2", "v3"]
    fill(resumed, 2, first=4)
    resumed.flush()
    final = FeatureStore(tmp_path / "s", readonly=True)
    assert final.ids() == list(added)
    np.testing.assert_array_equal(final.get("v5"), added["v5"])


def test_context_exit_flushes_when_an_exception_escapes(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        with new_store(tmp_path / "s") as store:
            fill(store, 2)
            raise KeyboardInterrupt
    assert FeatureStore(tmp_path / "s").ids() == ["v0", "v1"]


def test_uncommitted_shard_and_temporary_files_are_ignored_and_cleaned(tmp_path: Path) -> None:
    with new_store(tmp_path / "s") as store:
        fill(store, 2)
    root = tmp_path / "s"
    orphan = root / shard_name(1, "npy")  # a crash between the array and its index
    np.save(orphan, descriptors(5, seed=9))
    leftover = root / f".{shard_name(2, 'npy')}.123.abc.tmp"
    leftover.write_bytes(b"half a shard")
    readonly = FeatureStore(root, readonly=True)
    assert readonly.ids() == ["v0", "v1"] and orphan.exists()  # read-only: ignored, left alone
    store = FeatureStore(root, SIGNATURE)
    assert store.ids() == ["v0", "v1"] and not orphan.exists() and not leftover.exists()
    fill(store, 1, first=2)
    store.flush()
    assert (root / shard_name(1, "json")).exists()
    assert FeatureStore(root, readonly=True).ids() == ["v0", "v1", "v2"]


def test_signature_and_dtype_mismatch_are_refused(tmp_path: Path) -> None:
    new_store(tmp_path / "s").flush()
    with pytest.raises(StoreError, match="time_step_ms") as err:
        FeatureStore(tmp_path / "s", {**SIGNATURE, "time_step_ms": 125})
    assert str(tmp_path / "s") in str(err.value) and "backbone" not in str(err.value)
    with pytest.raises(StoreError, match="pad_mode"):
        FeatureStore(tmp_path / "s", {**SIGNATURE, "pad_mode": "reflect"})
    with pytest.raises(StoreError, match="dtype"):
        FeatureStore(tmp_path / "s", SIGNATURE, dtype="float16")
    assert FeatureStore(tmp_path / "s", SIGNATURE).signature == SIGNATURE


def test_signature_compares_as_json(tmp_path: Path) -> None:
    FeatureStore(tmp_path / "s", {"window": (1, 2)}, dim=DIM)
    assert FeatureStore(tmp_path / "s", {"window": [1, 2]}).signature == {"window": [1, 2]}


def test_new_store_needs_signature_and_readonly_needs_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="signature"):
        FeatureStore(tmp_path / "new")
    with pytest.raises(StoreError, match=HEADER_FILE):
        FeatureStore(tmp_path / "absent", readonly=True)
    with pytest.raises(StoreError, match="dtype"):
        FeatureStore(tmp_path / "bad", SIGNATURE, dtype="float64")


def test_readonly_store_refuses_add(tmp_path: Path) -> None:
    new_store(tmp_path / "s").flush()
    store = FeatureStore(tmp_path / "s", readonly=True)
    with pytest.raises(StoreError, match="read-only"):
        store.add("x", descriptors(1, 0), {})


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize(
    "vid, rows, match",
    [
        ("v0", descriptors(2, 1), "already stored"),
        ("", descriptors(2, 1), "non-empty"),
        ("x", np.ones((2, DIM + 1), np.float32), "shape"),
        ("x", np.ones(DIM, np.float32), "shape"),
        ("x", np.ones((0, DIM), np.float32), "shape"),
        ("x", np.full((2, DIM), np.nan, np.float32), "non-finite"),
    ],
)
def test_invalid_additions_are_refused(tmp_path: Path, dtype: str, vid: str, rows: np.ndarray, match: str) -> None:
    store = new_store(tmp_path / "s", dtype)
    fill(store, 1)
    with pytest.raises(StoreError, match=match):
        store.add(vid, rows, {})
    assert store.ids() == ["v0"]


def test_values_beyond_float16_range_are_refused_in_a_float16_store(tmp_path: Path) -> None:
    big = np.full((2, DIM), 1e6, np.float32)
    new_store(tmp_path / "f32").add("x", big, {})
    with pytest.raises(StoreError, match="float16 range"):
        new_store(tmp_path / "f16", "float16").add("x", big, {})


def test_meta_must_be_json(tmp_path: Path) -> None:
    store = new_store(tmp_path / "s")
    with pytest.raises(StoreError, match="JSON"):
        store.add("x", descriptors(1, 0), {"duration": float("nan")})
    assert "x" not in store


def test_missing_id_raises_key_error_naming_it(tmp_path: Path) -> None:
    store = new_store(tmp_path / "s")
    fill(store, 1)
    store.flush()
    with pytest.raises(KeyError, match="nope") as err:
        store.get("nope")
    assert str(tmp_path / "s") in str(err.value)
    with pytest.raises(KeyError, match="nope"):
        store.meta("nope")
