"""A minimal writer of TensorFlow tensor-bundle checkpoints, for tests of ausil_lib.models.tf_checkpoint only.

It is written independently of the reader (its own varint, protobuf, CRC-mask and block code) so
that a mistake shared by both cannot cancel out in a round trip; tests also check that it
reproduces the released AuSiL index byte for byte. It mirrors TensorFlow's (LevelDB's) table
builder: prefix-compressed keys with restart points, a data block flushed once it reaches
``block_size``, index keys shortened with FindShortestSeparator / FindShortSuccessor, an empty
metaindex block, and the 48-byte footer. Low-level pieces (``write_table``, ``entry_proto``,
``header_proto``) are public so that tests can build deliberately broken or unsupported files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import crc32c
import numpy as np

MAGIC = 0xDB4775248B80FB57
TF_BLOCK_SIZE = 262144  # tensorflow::table::Options::block_size default
TF_RESTART_INTERVAL = 16

# numpy dtype -> tensorflow DataType enum value.
DTYPE_ENUM = {
    np.dtype(np.float32): 1,
    np.dtype(np.float64): 2,
    np.dtype(np.int32): 3,
    np.dtype(np.uint8): 4,
    np.dtype(np.int16): 5,
    np.dtype(np.int8): 6,
    np.dtype(np.int64): 9,
    np.dtype(np.bool_): 10,
    np.dtype(np.float16): 19,
}


def mask(crc: int) -> int:
    """LevelDB's CRC mask: rotate right by 15 bits and add a constant."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def varint(value: int) -> bytes:
    """Base-128 varint; negative numbers as 64-bit two's complement, as protobuf encodes int32/int64."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_varint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def _field_bytes(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def shape_proto(shape: Sequence[int]) -> bytes:
    """TensorShapeProto: one ``dim`` message (field 2) per dimension, each with its size (field 1)."""
    return b"".join(_field_bytes(2, _field_varint(1, d) if d else b"") for d in shape)


def entry_proto(
    dtype: int,
    shape: Sequence[int],
    offset: int,
    size: int,
    crc: int,
    shard_id: int = 0,
    slices: int = 0,
) -> bytes:
    """BundleEntryProto as TensorFlow serialises it (fields in number order, zero scalars omitted)."""
    out = _field_varint(1, dtype) if dtype else b""
    out += _field_bytes(2, shape_proto(shape))
    if shard_id:
        out += _field_varint(3, shard_id)
    if offset:
        out += _field_varint(4, offset)
    if size:
        out += _field_varint(5, size)
    out += varint(6 << 3 | 5) + crc.to_bytes(4, "little")
    for _ in range(slices):  # an empty TensorSliceProto per slice: enough to mark a partitioned variable
        out += _field_bytes(7, b"")
    return out


def header_proto(num_shards: int = 1, endianness: int = 0, producer: int = 1, min_consumer: int = 0) -> bytes:
    """BundleHeaderProto: num_shards, endianness (0 little, 1 big), version (VersionDef)."""
    out = _field_varint(1, num_shards) if num_shards else b""
    if endianness:
        out += _field_varint(2, endianness)
    version = (_field_varint(1, producer) if producer else b"") + (
        _field_varint(2, min_consumer) if min_consumer else b""
    )
    return out + _field_bytes(3, version)


class _BlockBuilder:
    def __init__(self, restart_interval: int) -> None:
        self.restart_interval = restart_interval
        self.buf = bytearray()
        self.restarts = [0]
        self.counter = 0
        self.last_key = b""
        self.empty = True

    def add(self, key: bytes, value: bytes) -> None:
        shared = 0
        if self.counter < self.restart_interval:
            limit = min(len(key), len(self.last_key))
            while shared < limit and key[shared] == self.last_key[shared]:
                shared += 1
        else:
            self.restarts.append(len(self.buf))
            self.counter = 0
        self.buf += varint(shared) + varint(len(key) - shared) + varint(len(value)) + key[shared:] + value
        self.last_key = key
        self.counter += 1
        self.empty = False

    def size_estimate(self) -> int:
        return len(self.buf) + 4 * len(self.restarts) + 4

    def finish(self) -> bytes:
        tail = b"".join(r.to_bytes(4, "little") for r in self.restarts)
        return bytes(self.buf) + tail + len(self.restarts).to_bytes(4, "little")


def shortest_separator(start: bytes, limit: bytes) -> bytes:
    """LevelDB BytewiseComparator::FindShortestSeparator: a short key in [start, limit)."""
    n = min(len(start), len(limit))
    diff = 0
    while diff < n and start[diff] == limit[diff]:
        diff += 1
    if diff < n:
        byte = start[diff]
        if byte < 0xFF and byte + 1 < limit[diff]:
            return start[:diff] + bytes([byte + 1])
    return start


def short_successor(key: bytes) -> bytes:
    """LevelDB BytewiseComparator::FindShortSuccessor: a short key >= ``key``."""
    for i, byte in enumerate(key):
        if byte != 0xFF:
            return key[:i] + bytes([byte + 1])
    return key


@dataclass
class TableLayout:
    """Where the writer put each block: (offset, size) handles, for tests that damage one of them."""

    data_blocks: list[tuple[int, int]] = field(default_factory=list)
    metaindex: tuple[int, int] = (0, 0)
    index: tuple[int, int] = (0, 0)


def write_table(
    path: str | os.PathLike[str],
    items: Sequence[tuple[bytes, bytes]],
    block_size: int = TF_BLOCK_SIZE,
    restart_interval: int = TF_RESTART_INTERVAL,
    compression_type: int = 0,
    check_order: bool = True,
) -> TableLayout:
    """Write (key, value) items as an uncompressed LevelDB table; keys must be strictly increasing.

    ``compression_type`` only labels the blocks (their contents stay raw) and ``check_order=False``
    lets unsorted keys through: both exist to build files the reader must refuse.
    """
    if check_order:
        keys = [k for k, _ in items]
        assert all(a < b for a, b in zip(keys, keys[1:])), "keys must be strictly increasing"
    out = bytearray()
    layout = TableLayout()

    def emit(contents: bytes) -> tuple[int, int]:
        handle = (len(out), len(contents))
        trailer_type = bytes([compression_type])
        out.extend(contents + trailer_type + mask(crc32c.crc32c(contents + trailer_type)).to_bytes(4, "little"))
        return handle

    index = _BlockBuilder(1)  # LevelDB's index block uses restart interval 1
    block = _BlockBuilder(restart_interval)
    pending: tuple[bytes, tuple[int, int]] | None = None  # (last key of flushed block, its handle)
    for key, value in items:
        if pending is not None:
            index.add(shortest_separator(pending[0], key), varint(pending[1][0]) + varint(pending[1][1]))
            pending = None
        block.add(key, value)
        if block.size_estimate() >= block_size:
            handle = emit(block.finish())
            layout.data_blocks.append(handle)
            pending = (block.last_key, handle)
            block = _BlockBuilder(restart_interval)
    if not block.empty:
        handle = emit(block.finish())
        layout.data_blocks.append(handle)
        pending = (block.last_key, handle)
    if pending is not None:
        index.add(short_successor(pending[0]), varint(pending[1][0]) + varint(pending[1][1]))
    layout.metaindex = emit(_BlockBuilder(restart_interval).finish())
    layout.index = emit(index.finish())
    footer = b"".join(varint(n) for n in (*layout.metaindex, *layout.index))
    out += footer.ljust(40, b"\0") + MAGIC.to_bytes(8, "little")
    Path(path).write_bytes(bytes(out))
    return layout


@dataclass
class BundleLayout:
    """What write_bundle wrote: the index table's blocks and each tensor's (offset, size) in the data file."""

    table: TableLayout
    tensors: dict[str, tuple[int, int]]
    index_path: Path
    data_path: Path


def write_bundle(
    prefix: str | os.PathLike[str],
    tensors: Mapping[str, np.ndarray],
    block_size: int = 4096,
    restart_interval: int = TF_RESTART_INTERVAL,
) -> BundleLayout:
    """Write ``tensors`` as a one-shard bundle: ``prefix.index`` and ``prefix.data-00000-of-00001``.

    Tensor bytes go into the data file in the mapping's order (as TensorFlow writes them in the
    order they are added); index keys are sorted bytewise, with the header under the empty key.
    """
    prefix = os.fspath(prefix)
    data = bytearray()
    placed: dict[str, tuple[int, int]] = {}
    values: dict[bytes, bytes] = {b"": header_proto(num_shards=1)}
    for name, array in tensors.items():
        array = np.asarray(array)
        dtype = array.dtype.newbyteorder("=") if array.dtype.byteorder in "<>" else array.dtype
        raw = np.ascontiguousarray(array, dtype=dtype.newbyteorder("<")).tobytes()
        placed[name] = (len(data), len(raw))
        values[name.encode("utf-8")] = entry_proto(
            DTYPE_ENUM[np.dtype(dtype)], array.shape, len(data), len(raw), mask(crc32c.crc32c(raw))
        )
        data += raw
    index_path = Path(prefix + ".index")
    data_path = Path(prefix + ".data-00000-of-00001")
    data_path.write_bytes(bytes(data))
    table = write_table(index_path, sorted(values.items()), block_size, restart_interval)
    return BundleLayout(table, placed, index_path, data_path)
