"""Sharded on-disk store of segment descriptors for corpora of hundreds of thousands of videos.

One `.npz` file per video (features/extraction.py) means 225k files for FIVR-200K: slow to list, to
copy and to hash. Here the rows of many videos share one shard, read back through memory maps,
so a retrieval run touches only the pages it needs.

Layout of a store directory:
  store.json          {"format": 1, "dtype": ..., "dim": ..., "signature": {...}}, written once
  shard-00000.npy     2-D array in the store dtype: the rows of every video of the shard, in order
  shard-00000.json    {"videos": [{"id", "offset", "n_segments", "meta"}]}: its index
A shard is committed only once its index exists: the `.npy` is written (temporary file, then
rename) before the index, so a crash leaves at most an `.npy` without index or a temporary file;
both are ignored, and removed when the store is next opened for writing. Videos added since the
last committed shard are lost in a crash, nothing else. One writer at a time.

Precision: float32 keeps descriptors exactly as computed. A float16 store halves the disk and
page-cache footprint (FIVR-200K at a 1 s step: ~265 GB in float32, ~132 GB in float16) at a
relative rounding error of at most 2^-11 per value; descriptor values lie in [0, 1], so each is
off by less than 2.5e-4, far below what changes a similarity ranking. Values are rounded once,
when added, and always read back as float32.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..core.formats import TMP_SUFFIX, atomic_write, atomic_write_json
from ..models.backbone import DESCRIPTOR_DIM

FORMAT = 1
HEADER_FILE = "store.json"
DTYPES = ("float32", "float16")
_SHARD = re.compile(r"^shard-(\d+)\.(npy|json)$")


class StoreError(ValueError):
    """A store that cannot be opened or written as asked; the message names the directory and why."""

    def __init__(self, root: str | os.PathLike[str], reason: str) -> None:
        self.root = str(root)
        self.reason = reason
        super().__init__(f"feature store {self.root}: {reason}")

    def __reduce__(self) -> tuple[type[StoreError], tuple[str, str]]:
        # picklable despite the custom __init__ (errors cross process boundaries in workers)
        return (self.__class__, (self.root, self.reason))


@dataclass(frozen=True)
class _Entry:
    """Where a video's rows are: `shard` is None while they are still pending in memory."""

    shard: int | None
    offset: int
    n_segments: int
    meta: dict[str, Any]


def _json_copy(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The value as it reads back from JSON (tuples become lists), so comparisons are stable."""
    return json.loads(json.dumps(dict(obj), sort_keys=True, allow_nan=False))


def shard_name(number: int, suffix: str) -> str:
    return f"shard-{number:05d}.{suffix}"


class FeatureStore:
    """Append-only map video id -> float32 (n_segments, dim) descriptors, sharded on disk.

    Opening an existing store with a `signature` (backbone and front-end settings) that differs
    from the stored one is refused, so descriptors of different networks are never mixed. `dtype`
    and `dim` default to the stored values (float32 and DESCRIPTOR_DIM for a new store).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        signature: Mapping[str, Any] | None = None,
        dtype: str | None = None,
        dim: int | None = None,
        shard_videos: int = 256,
        readonly: bool = False,
    ) -> None:
        self.root = Path(root)
        self.readonly = readonly
        if shard_videos < 1:
            raise StoreError(self.root, f"shard_videos must be at least 1, got {shard_videos}")
        self.shard_videos = shard_videos
        header_path = self.root / HEADER_FILE
        if header_path.is_file():
            header = self._read_json(header_path)
            if (
                header.get("format") != FORMAT
                or header.get("dtype") not in DTYPES
                or not isinstance(header.get("dim"), int)
                or not isinstance(header.get("signature"), dict)
            ):
                raise StoreError(self.root, f"{HEADER_FILE} is not a format-{FORMAT} store header")
            self.dtype: str = header["dtype"]
            self.dim: int = header["dim"]
            self.signature: dict[str, Any] = header["signature"]
            if dtype is not None and dtype != self.dtype:
                raise StoreError(self.root, f"stored dtype is {self.dtype}, asked for {dtype}")
            if dim is not None and dim != self.dim:
                raise StoreError(self.root, f"stored descriptor dimension is {self.dim}, asked for {dim}")
            if signature is not None:
                self.require_signature(signature)
        else:
            if readonly:
                raise StoreError(self.root, f"no {HEADER_FILE}: not a feature store")
            if signature is None:
                raise StoreError(self.root, "a new store needs the signature of the extractor that fills it")
            self.dtype = dtype or DTYPES[0]
            self.dim = DESCRIPTOR_DIM if dim is None else dim
            if self.dtype not in DTYPES:
                raise StoreError(self.root, f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
            self.signature = _json_copy(signature)
            atomic_write_json(
                header_path, {"format": FORMAT, "dtype": self.dtype, "dim": self.dim, "signature": self.signature}
            )
        self._entries: dict[str, _Entry] = {}
        self._pending: dict[str, np.ndarray] = {}
        self._maps: dict[int, np.ndarray] = {}
        self._next_shard = self._load_shards()

    # ------------------------------------------------------------------ opening

    def _read_json(self, path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(self.root, f"{path.name} is unreadable ({exc})") from exc
        if not isinstance(data, dict):
            raise StoreError(self.root, f"{path.name} is not a JSON object")
        return data

    def _load_shards(self) -> int:
        """Index the committed shards, drop leftovers of an interrupted write; the next shard number."""
        indexed: set[int] = set()
        arrays: dict[int, Path] = {}
        for path in sorted(self.root.iterdir()):
            if path.name.startswith(".") and path.name.endswith(TMP_SUFFIX):
                if not self.readonly:
                    path.unlink(missing_ok=True)
                continue
            match = _SHARD.match(path.name)
            if match and match[2] == "json":
                indexed.add(int(match[1]))
            elif match:
                arrays[int(match[1])] = path
        for number in sorted(arrays.keys() - indexed):
            if not self.readonly:
                arrays[number].unlink(missing_ok=True)
        for number in sorted(indexed):
            if number not in arrays:
                raise StoreError(self.root, f"{shard_name(number, 'json')} has no {shard_name(number, 'npy')}")
            for video in self._read_json(self.root / shard_name(number, "json")).get("videos", []):
                self._entries[video["id"]] = _Entry(
                    number, int(video["offset"]), int(video["n_segments"]), video["meta"]
                )
        return max(indexed, default=-1) + 1

    def require_signature(self, signature: Mapping[str, Any]) -> None:
        """Refuse a signature other than the stored one, naming the settings that differ."""
        given = _json_copy(signature)
        differ = sorted(k for k in given.keys() | self.signature.keys() if given.get(k) != self.signature.get(k))
        if differ:
            detail = ", ".join(f"{k}: stored {self.signature.get(k)!r}, given {given.get(k)!r}" for k in differ)
            raise StoreError(
                self.root,
                f"signature differs from the stored one ({detail}); use another store directory for other settings",
            )

    # ------------------------------------------------------------------ reading

    def __contains__(self, vid: object) -> bool:
        return vid in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def ids(self) -> list[str]:
        """Committed then pending ids, in the order they were added."""
        return list(self._entries)

    def _entry(self, vid: str) -> _Entry:
        try:
            return self._entries[vid]
        except KeyError:
            raise KeyError(f"video {vid!r} is not in the feature store {self.root}") from None

    def n_segments(self, vid: str) -> int:
        return self._entry(vid).n_segments

    def meta(self, vid: str) -> dict[str, Any]:
        return dict(self._entry(vid).meta)

    def total_segments(self) -> int:
        return sum(e.n_segments for e in self._entries.values())

    def get(self, vid: str) -> np.ndarray:
        """float32 (n_segments, dim) copy; committed rows are read through a cached memory map."""
        entry = self._entry(vid)
        if entry.shard is None:
            return self._pending[vid].astype(np.float32)
        rows = self._shard_map(entry.shard)
        return np.array(rows[entry.offset : entry.offset + entry.n_segments], dtype=np.float32)

    def _shard_map(self, number: int) -> np.ndarray:
        if number not in self._maps:
            self._maps[number] = np.load(self.root / shard_name(number, "npy"), mmap_mode="r", allow_pickle=False)
        return self._maps[number]

    # ------------------------------------------------------------------ writing

    def add(self, vid: str, descriptors: np.ndarray, meta: Mapping[str, Any]) -> None:
        """Queue a video's descriptors; a full shard's worth of pending videos is written at once."""
        if self.readonly:
            raise StoreError(self.root, f"opened read-only, cannot add {vid!r}")
        if not isinstance(vid, str) or not vid:
            raise StoreError(self.root, f"video id {vid!r} is not a non-empty string")
        if vid in self._entries:
            raise StoreError(self.root, f"video {vid!r} is already stored")
        arr = np.asarray(descriptors)
        if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] != self.dim:
            raise StoreError(
                self.root, f"video {vid!r}: descriptors of shape {arr.shape}, expected (n >= 1, {self.dim})"
            )
        with np.errstate(over="ignore"):  # an overflow shows up as inf, refused just below
            rows = arr.astype(self.dtype)
        if not np.isfinite(rows).all():
            raise StoreError(
                self.root, f"video {vid!r}: non-finite descriptor values (NaN, inf, or beyond the {self.dtype} range)"
            )
        try:
            clean_meta = _json_copy(meta)
        except (TypeError, ValueError) as exc:
            raise StoreError(self.root, f"video {vid!r}: meta is not JSON-serialisable ({exc})") from exc
        self._pending[vid] = rows
        self._entries[vid] = _Entry(None, 0, rows.shape[0], clean_meta)
        if len(self._pending) >= self.shard_videos:
            self.flush()

    def flush(self) -> None:
        """Commit the pending videos as the next shard: array first, index last."""
        if not self._pending:
            return
        number = self._next_shard
        index, offset = [], 0
        for vid, rows in self._pending.items():
            index.append({"id": vid, "offset": offset, "n_segments": rows.shape[0], "meta": self._entries[vid].meta})
            offset += rows.shape[0]
        rows = np.concatenate(list(self._pending.values()))
        atomic_write(self.root / shard_name(number, "npy"), lambda handle: np.save(handle, rows, allow_pickle=False))
        atomic_write_json(self.root / shard_name(number, "json"), {"videos": index})
        for item in index:
            self._entries[item["id"]] = _Entry(number, item["offset"], item["n_segments"], item["meta"])
        self._pending.clear()
        self._next_shard = number + 1

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # also on an exception: the videos finished before it are worth keeping
        self.flush()
