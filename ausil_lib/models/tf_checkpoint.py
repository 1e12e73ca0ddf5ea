"""Read TensorFlow "tensor bundle" (V2) checkpoints without TensorFlow.

The AuSiL authors released their trained model as a TensorFlow checkpoint: ``PREFIX.index`` plus
``PREFIX.data-00000-of-00001``. Installing TensorFlow only to copy a few float arrays out of it
would drag a second deep-learning stack into the environment, so this module reads the format
directly, with numpy and the ``crc32c`` package, and checks every checksum the format carries so
that a damaged or truncated download is refused instead of silently producing wrong weights.

Format (TensorFlow ``core/util/tensor_bundle`` on top of ``core/lib/io/table``, i.e. LevelDB's
table format):

(docs/ausil-reference-facts.md, "The tensor-bundle checkpoint", has what was verified on the released index.)

* ``PREFIX.index`` is an SSTable. It ends in a 48-byte footer: the metaindex and index
  BlockHandles (varint64 offset, varint64 size), zero padding to 40 bytes, then the magic
  0xdb4775248b80fb57 as 8 little-endian bytes. Each block is followed by a 5-byte trailer: the
  compression type (only 0, none, is accepted) and the masked CRC32C of block contents plus that
  type byte. A block holds prefix-compressed entries (varint32 shared key length, varint32
  unshared key length, varint32 value length, unshared key bytes, value), then uint32 restart
  offsets and a uint32 restart count. The index block maps separator keys to the BlockHandles
  of the data blocks.
* Keys are tensor names; values are ``BundleEntryProto`` messages (dtype, shape, shard_id,
  offset, size, masked crc32c, slices). The empty key holds the ``BundleHeaderProto``
  (num_shards, endianness, version).
* A tensor's bytes are raw little-endian at ``offset`` (``size`` bytes long) in
  ``PREFIX.data-%05d-of-%05d % (shard_id, num_shards)``.

Only what a plain (non-partitioned) checkpoint of numeric tensors needs is supported; anything
else (string or resource tensors, partitioned variables, big-endian bundles, compressed blocks)
is refused with a :class:`CheckpointError` naming the file, the tensor where there is one, and
the reason.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import crc32c as _crc32c
import numpy as np

__all__ = [
    "TABLE_MAGIC",
    "BundleHeader",
    "CheckpointError",
    "CheckpointNotFoundError",
    "TFCheckpoint",
    "TensorEntry",
    "is_checkpoint_prefix",
    "mask_crc32c",
    "read_index",
    "read_table",
    "unmask_crc32c",
]

PathLike = str | os.PathLike[str]

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48  # two BlockHandles padded to 40 bytes, then the 8-byte magic
BLOCK_TRAILER_SIZE = 5  # 1 byte compression type + 4 bytes masked CRC32C
_CRC_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF

# tensorflow/core/framework/types.proto values -> little-endian numpy dtypes (the bundle is LE).
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL (one byte, 0 or 1)
    19: np.dtype("<f2"),  # DT_HALF
}
# Names of the DataType values that are refused, so that the refusal says what the tensor is.
_UNSUPPORTED_DTYPE_NAMES = {
    0: "DT_INVALID",
    7: "DT_STRING",
    8: "DT_COMPLEX64",
    11: "DT_QINT8",
    12: "DT_QUINT8",
    13: "DT_QINT32",
    14: "DT_BFLOAT16",
    15: "DT_QINT16",
    16: "DT_QUINT16",
    17: "DT_UINT16",
    18: "DT_COMPLEX128",
    20: "DT_RESOURCE",
    21: "DT_VARIANT",
    22: "DT_UINT32",
    23: "DT_UINT64",
}
# The tensor bundle format version this reader implements (kTensorBundleVersion in TensorFlow).
_BUNDLE_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged or uses a feature this reader does not support.

    The message names the file and, where the problem concerns one tensor, the tensor, so that a
    bad download or an unsupported checkpoint is identified without a debugger.
    """


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint file does not exist; also a FileNotFoundError so callers may catch either."""


def mask_crc32c(crc: int) -> int:
    """Mask a CRC32C as LevelDB/TensorFlow store it (CRCs of data holding CRCs are then not trivial)."""
    crc &= _U32
    return ((((crc >> 15) | (crc << 17)) & _U32) + _CRC_MASK_DELTA) & _U32


def unmask_crc32c(masked: int) -> int:
    """Invert :func:`mask_crc32c`."""
    rot = (masked - _CRC_MASK_DELTA) & _U32
    return ((rot >> 17) | (rot << 15)) & _U32


@dataclass(frozen=True)
class BundleHeader:
    """The ``BundleHeaderProto`` stored under the empty key: how many data shards there are, and versions."""

    num_shards: int
    endianness: str  # always "little": big-endian bundles are refused
    producer: int
    min_consumer: int
    bad_consumers: tuple[int, ...]


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lies in the data files, and what it must look like once read."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int  # masked, as stored in the index

    @property
    def expected_size(self) -> int:
        """Bytes the tensor must occupy: itemsize x number of elements (a scalar has one element)."""
        return self.dtype.itemsize * math.prod(self.shape)


# --------------------------------------------------------------------------------------------
# Low-level decoding helpers. They raise _DecodeError with a bare reason; callers add the file
# (and tensor) names and turn it into a CheckpointError.


class _DecodeError(Exception):
    pass


def _read_varint(buf: bytes | memoryview, pos: int, max_bytes: int = 10) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; return (value, position after it)."""
    result = 0
    shift = 0
    for i in range(max_bytes):
        if pos + i >= len(buf):
            raise _DecodeError(f"truncated varint at byte {pos}")
        byte = buf[pos + i]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if result > _U64:
                raise _DecodeError(f"varint at byte {pos} overflows 64 bits")
            return result, pos + i + 1
        shift += 7
    raise _DecodeError(f"varint at byte {pos} longer than {max_bytes} bytes")


def _as_int64(value: int) -> int:
    """Reinterpret a 64-bit varint as two's complement, as protobuf does for int64/int32 fields."""
    return value - (1 << 64) if value >= 1 << 63 else value


# Wire types of the protobuf encoding.
_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


def _parse_proto(buf: bytes) -> dict[int, list[tuple[int, int | bytes]]]:
    """Split a serialized protobuf message into {field number: [(wire type, value), ...]}.

    Just enough of the wire format for the checkpoint's messages: varints, fixed32, fixed64 and
    length-delimited fields. Groups (wire types 3/4) are obsolete and refused. Unknown fields are
    kept (and then ignored by the callers), as protobuf itself does.
    """
    fields: dict[int, list[tuple[int, int | bytes]]] = {}
    pos = 0
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise _DecodeError("protobuf field number 0")
        value: int | bytes
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire == _FIXED64:
            if pos + 8 > len(buf):
                raise _DecodeError(f"truncated fixed64 field {number}")
            value = int.from_bytes(buf[pos : pos + 8], "little")
            pos += 8
        elif wire == _FIXED32:
            if pos + 4 > len(buf):
                raise _DecodeError(f"truncated fixed32 field {number}")
            value = int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        elif wire == _LENGTH_DELIMITED:
            length, pos = _read_varint(buf, pos)
            if pos + length > len(buf):
                raise _DecodeError(f"truncated length-delimited field {number}")
            value = bytes(buf[pos : pos + length])
            pos += length
        else:
            raise _DecodeError(f"unsupported protobuf wire type {wire} (field {number})")
        fields.setdefault(number, []).append((wire, value))
    return fields


def _scalar(fields: dict[int, list[tuple[int, int | bytes]]], number: int, wire: int, default: int = 0) -> int:
    """The last value of a scalar numeric field (protobuf semantics: last one wins), type-checked."""
    values = fields.get(number)
    if not values:
        return default
    got_wire, value = values[-1]
    if got_wire != wire or not isinstance(value, int):
        raise _DecodeError(f"field {number} has wire type {got_wire}, expected {wire}")
    return value


def _messages(fields: dict[int, list[tuple[int, int | bytes]]], number: int) -> list[bytes]:
    """All values of a repeated (or singular) sub-message field."""
    out: list[bytes] = []
    for got_wire, value in fields.get(number, []):
        if got_wire != _LENGTH_DELIMITED or not isinstance(value, bytes):
            raise _DecodeError(f"field {number} has wire type {got_wire}, expected a message")
        out.append(value)
    return out


# --------------------------------------------------------------------------------------------
# The SSTable layer.


def _decode_handle(buf: bytes | memoryview, pos: int) -> tuple[int, int, int]:
    """Decode a BlockHandle (varint64 offset, varint64 size); return (offset, size, position after)."""
    offset, pos = _read_varint(buf, pos)
    size, pos = _read_varint(buf, pos)
    return offset, size, pos


def _read_block(data: bytes, offset: int, size: int, limit: int, what: str) -> bytes:
    """Return a block's contents after checking that it lies in the file, is uncompressed and has a good CRC."""
    if offset + size + BLOCK_TRAILER_SIZE > limit:
        raise _DecodeError(
            f"{what} at offset {offset} with size {size} (+{BLOCK_TRAILER_SIZE} trailer bytes) "
            f"runs past byte {limit} (file truncated?)"
        )
    contents = data[offset : offset + size]
    ctype = data[offset + size]
    stored = int.from_bytes(data[offset + size + 1 : offset + size + BLOCK_TRAILER_SIZE], "little")
    computed = _crc32c.crc32c(data[offset : offset + size + 1])
    if unmask_crc32c(stored) != computed:
        raise _DecodeError(
            f"{what} at offset {offset}: block CRC32C mismatch "
            f"(stored 0x{unmask_crc32c(stored):08x}, computed 0x{computed:08x})"
        )
    if ctype != 0:
        raise _DecodeError(f"{what} at offset {offset}: compression type {ctype} not supported (only 0, none)")
    return contents


def _block_entries(block: bytes, what: str) -> list[tuple[bytes, bytes]]:
    """Decode the prefix-compressed (key, value) entries of one block, checking its restart array."""
    if len(block) < 4:
        raise _DecodeError(f"{what}: block of {len(block)} bytes is too short for its restart count")
    num_restarts = int.from_bytes(block[-4:], "little")
    restarts_start = len(block) - 4 - 4 * num_restarts
    if num_restarts == 0 or restarts_start < 0:
        raise _DecodeError(f"{what}: bad restart count {num_restarts} for a block of {len(block)} bytes")
    restarts = [
        int.from_bytes(block[restarts_start + 4 * i : restarts_start + 4 * i + 4], "little")
        for i in range(num_restarts)
    ]
    restart_set = set(restarts)
    entries: list[tuple[bytes, bytes]] = []
    entry_starts: set[int] = set()
    key = b""
    pos = 0
    while pos < restarts_start:
        start = pos
        shared, pos = _read_varint(block, pos, 5)
        unshared, pos = _read_varint(block, pos, 5)
        value_len, pos = _read_varint(block, pos, 5)
        if shared > len(key):
            raise _DecodeError(f"{what}: entry at byte {start} shares {shared} bytes with a {len(key)}-byte key")
        if pos + unshared + value_len > restarts_start:
            raise _DecodeError(f"{what}: entry at byte {start} runs past the end of the block's entries")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + value_len]))
        pos += value_len
        entry_starts.add(start)
        if start in restart_set and shared != 0:
            raise _DecodeError(f"{what}: entry at restart point {start} shares a key prefix")
    for restart in restart_set:
        if restart not in entry_starts and not (restart == 0 and not entries):
            raise _DecodeError(f"{what}: restart offset {restart} is not the start of an entry")
    return entries


def read_table(path: PathLike) -> list[tuple[bytes, bytes]]:
    """Read every (key, value) of an uncompressed LevelDB-format table, in file order.

    All block CRCs are verified and the keys must be strictly increasing (bytewise), as the
    format requires; a table breaking either is refused rather than half-read.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointNotFoundError(f"{path}: index file not found") from None
    try:
        return _read_table_bytes(data)
    except _DecodeError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def _read_table_bytes(data: bytes) -> list[tuple[bytes, bytes]]:
    if len(data) < FOOTER_SIZE:
        raise _DecodeError(
            f"file of {len(data)} bytes is shorter than the {FOOTER_SIZE}-byte table footer (truncated?)"
        )
    footer_start = len(data) - FOOTER_SIZE
    magic = int.from_bytes(data[-8:], "little")
    if magic != TABLE_MAGIC:
        raise _DecodeError(f"bad table magic 0x{magic:016x} (expected 0x{TABLE_MAGIC:016x}): not a checkpoint index")
    footer = data[footer_start:-8]
    meta_offset, meta_size, pos = _decode_handle(footer, 0)
    index_offset, index_size, pos = _decode_handle(footer, pos)
    # The metaindex block (empty in TensorFlow's bundles) is verified but otherwise ignored.
    _block_entries(_read_block(data, meta_offset, meta_size, footer_start, "metaindex block"), "metaindex block")
    index_block = _read_block(data, index_offset, index_size, footer_start, "index block")
    entries: list[tuple[bytes, bytes]] = []
    for separator, handle in _block_entries(index_block, "index block"):
        offset, size, end = _decode_handle(handle, 0)
        if end != len(handle):
            raise _DecodeError(f"index block: handle for key {separator!r} has {len(handle) - end} trailing bytes")
        what = f"data block at offset {offset}"
        block_entries = _block_entries(_read_block(data, offset, size, footer_start, "data block"), what)
        for key, value in block_entries:
            if entries and key <= entries[-1][0]:
                raise _DecodeError(f"{what}: key {key!r} does not sort after the previous key {entries[-1][0]!r}")
            if key > separator:
                raise _DecodeError(f"{what}: key {key!r} sorts after its index separator {separator!r}")
            entries.append((key, value))
    return entries


# --------------------------------------------------------------------------------------------
# The tensor bundle layer.


def _decode_header(value: bytes) -> BundleHeader:
    fields = _parse_proto(value)
    num_shards = _as_int64(_scalar(fields, 1, _VARINT))
    endianness = _scalar(fields, 2, _VARINT)
    producer = min_consumer = 0
    bad: tuple[int, ...] = ()
    versions = _messages(fields, 3)
    if versions:
        vfields = _parse_proto(versions[-1])
        producer = _as_int64(_scalar(vfields, 1, _VARINT))
        min_consumer = _as_int64(_scalar(vfields, 2, _VARINT))
        bad = tuple(_as_int64(v) for w, v in vfields.get(3, []) if w == _VARINT and isinstance(v, int))
    if num_shards < 1:
        raise _DecodeError(f"header: num_shards is {num_shards}")
    if endianness != 0:
        what = "big-endian" if endianness == 1 else f"endianness {endianness}"
        raise _DecodeError(f"header: {what} bundle not supported (only little-endian)")
    if min_consumer > _BUNDLE_VERSION or _BUNDLE_VERSION in bad:
        raise _DecodeError(
            f"header: bundle version (producer {producer}, min_consumer {min_consumer}, bad_consumers "
            f"{list(bad)}) cannot be read by a version-{_BUNDLE_VERSION} reader"
        )
    return BundleHeader(num_shards, "little", producer, min_consumer, bad)


def _decode_shape(value: bytes) -> tuple[int, ...]:
    fields = _parse_proto(value)
    if _scalar(fields, 3, _VARINT):
        raise _DecodeError("shape has unknown rank")
    dims: list[int] = []
    for dim in _messages(fields, 2):
        size = _as_int64(_scalar(_parse_proto(dim), 1, _VARINT))
        if size < 0:
            raise _DecodeError(f"shape has a dimension of size {size}")
        dims.append(size)
    return tuple(dims)


def _decode_entry(name: str, value: bytes, num_shards: int) -> TensorEntry:
    fields = _parse_proto(value)
    if fields.get(7):
        raise _DecodeError(f"partitioned variable ({len(fields[7])} slices) not supported")
    dtype_code = _scalar(fields, 1, _VARINT)
    if dtype_code not in _DTYPES:
        label = _UNSUPPORTED_DTYPE_NAMES.get(dtype_code, "unknown")
        supported = ", ".join(str(d) for d in _DTYPES.values())
        raise _DecodeError(f"dtype {dtype_code} ({label}) not supported (supported: {supported})")
    shapes = _messages(fields, 2)
    shape = _decode_shape(shapes[-1]) if shapes else ()
    shard_id = _as_int64(_scalar(fields, 3, _VARINT))
    offset = _as_int64(_scalar(fields, 4, _VARINT))
    size = _as_int64(_scalar(fields, 5, _VARINT))
    crc = _scalar(fields, 6, _FIXED32)
    if not 0 <= shard_id < num_shards:
        raise _DecodeError(f"shard_id {shard_id} outside 0..{num_shards - 1}")
    if offset < 0 or size < 0:
        raise _DecodeError(f"negative offset {offset} or size {size}")
    return TensorEntry(name, _DTYPES[dtype_code], shape, shard_id, offset, size, crc)


def read_index(index_path: PathLike) -> tuple[BundleHeader, dict[str, TensorEntry]]:
    """Read a bundle's ``.index`` file: its header and every tensor's entry, keyed by name.

    Block CRCs, key order, the header (one little-endian bundle of a readable version) and each
    entry (supported dtype, no slices, shard within range) are checked here; the tensor bytes
    themselves are checked when read (:meth:`TFCheckpoint.get`).
    """
    index_path = Path(index_path)
    table = read_table(index_path)
    if not table or table[0][0] != b"":
        raise CheckpointError(f"{index_path}: no bundle header (empty key): not a tensor bundle index")
    try:
        header = _decode_header(table[0][1])
    except _DecodeError as exc:
        raise CheckpointError(f"{index_path}: {exc}") from None
    entries: dict[str, TensorEntry] = {}
    for key, value in table[1:]:
        try:
            name = key.decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError(f"{index_path}: tensor name {key!r} is not UTF-8") from None
        try:
            entries[name] = _decode_entry(name, value, header.num_shards)
        except _DecodeError as exc:
            raise CheckpointError(f"{index_path}: tensor {name}: {exc}") from None
    return header, entries


def is_checkpoint_prefix(path: PathLike) -> bool:
    """True when ``path + ".index"`` exists: tells a TF checkpoint prefix from a plain model file."""
    return os.path.isfile(os.fspath(path) + ".index")


class TFCheckpoint:
    """A TensorFlow V2 checkpoint opened by prefix, e.g. ``data/weights/ausil_released/model``.

    Opening reads and checks the index and that every data shard it refers to exists, so that a
    missing file is reported before any work starts; tensors are read (and CRC-checked) on demand.
    """

    def __init__(self, prefix: PathLike) -> None:
        self.prefix = os.fspath(prefix)
        self.index_path = Path(self.prefix + ".index")
        self.header, self.entries = read_index(self.index_path)
        for shard_id in sorted({entry.shard_id for entry in self.entries.values()}):
            path = self.data_path(shard_id)
            if not path.is_file():
                users = sorted(name for name, e in self.entries.items() if e.shard_id == shard_id)
                raise CheckpointNotFoundError(
                    f"{path}: data file not found (holds {len(users)} tensors of {self.index_path}, e.g. {users[0]})"
                )

    def __repr__(self) -> str:
        return f"TFCheckpoint({self.prefix!r}, {len(self.entries)} tensors)"

    def data_path(self, shard_id: int) -> Path:
        """Path of data shard ``shard_id``: ``PREFIX.data-%05d-of-%05d``."""
        if not 0 <= shard_id < self.header.num_shards:
            raise ValueError(f"{self.index_path}: shard {shard_id} outside 0..{self.header.num_shards - 1}")
        return Path(f"{self.prefix}.data-{shard_id:05d}-of-{self.header.num_shards:05d}")

    def names(self) -> list[str]:
        """Tensor names, sorted bytewise as in the index."""
        return list(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def get(self, name: str) -> np.ndarray:
        """Read one tensor, checking its size against dtype x shape and its CRC32C; KeyError if absent."""
        entry = self.entries.get(name)
        if entry is None:
            raise KeyError(f"{self.index_path}: no tensor named {name!r}")
        path = self.data_path(entry.shard_id)
        try:
            with open(path, "rb") as f:
                return self._read(entry, path, f)
        except FileNotFoundError:
            raise CheckpointNotFoundError(f"{path}: data file not found (needed for tensor {name})") from None

    def read_all(self, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Read several tensors (all by default), opening each data shard once; same checks as :meth:`get`."""
        wanted = list(self.entries) if names is None else list(names)
        missing = [n for n in wanted if n not in self.entries]
        if missing:
            raise KeyError(f"{self.index_path}: no tensor named {', '.join(map(repr, missing))}")
        out: dict[str, np.ndarray] = {}
        by_shard: dict[int, list[TensorEntry]] = {}
        for name in wanted:
            by_shard.setdefault(self.entries[name].shard_id, []).append(self.entries[name])
        for shard_id, entries in sorted(by_shard.items()):
            path = self.data_path(shard_id)
            try:
                with open(path, "rb") as f:
                    for entry in sorted(entries, key=lambda e: e.offset):
                        out[entry.name] = self._read(entry, path, f)
            except FileNotFoundError:
                raise CheckpointNotFoundError(f"{path}: data file not found") from None
        return {name: out[name] for name in wanted}

    def _read(self, entry: TensorEntry, path: Path, f: BinaryIO) -> np.ndarray:
        where = f"{path}: tensor {entry.name}"
        if entry.size != entry.expected_size:
            raise CheckpointError(
                f"{where}: size {entry.size} bytes does not match dtype {entry.dtype} x shape {entry.shape} "
                f"({entry.expected_size} bytes)"
            )
        file_size = os.fstat(f.fileno()).st_size
        if entry.offset + entry.size > file_size:
            raise CheckpointError(
                f"{where}: bytes {entry.offset}..{entry.offset + entry.size} run past the end of the "
                f"{file_size}-byte data file (truncated?)"
            )
        f.seek(entry.offset)
        buf = bytearray(f.read(entry.size))
        if len(buf) != entry.size:
            raise CheckpointError(f"{where}: read {len(buf)} of {entry.size} bytes (file truncated while reading?)")
        computed = _crc32c.crc32c(buf)
        stored = unmask_crc32c(entry.crc32c)
        if computed != stored:
            raise CheckpointError(f"{where}: CRC32C mismatch (stored 0x{stored:08x}, computed 0x{computed:08x})")
        if entry.dtype == np.bool_ and buf and max(buf) > 1:
            raise CheckpointError(f"{where}: bool tensor holds bytes other than 0 and 1")
        array = np.frombuffer(buf, dtype=entry.dtype).reshape(entry.shape)
        # Native byte order for callers (a no-op on little-endian machines).
        return array.astype(entry.dtype.newbyteorder("="), copy=False)
