"""Tests of the TensorFlow tensor-bundle reader (ausil_lib.models.tf_checkpoint).

The released AuSiL index (vendored under tests/data/ausil_released) pins the reader to what
TensorFlow really writes; synthetic bundles from tests/tf_bundle_writer.py exercise round trips
and every refusal. The released data file is not available, so tensor bytes are only ever
synthetic.
"""

from __future__ import annotations

import hashlib
import math
import shutil
from pathlib import Path

import crc32c
import numpy as np
import pytest

from ausil_lib.models.tf_checkpoint import (
    BundleHeader,
    CheckpointError,
    CheckpointNotFoundError,
    TFCheckpoint,
    is_checkpoint_prefix,
    mask_crc32c,
    read_index,
    read_table,
    unmask_crc32c,
)

from ..tf_bundle_writer import (
    DTYPE_ENUM,
    entry_proto,
    header_proto,
    mask,
    write_bundle,
    write_table,
)

RELEASED_DIR = Path(__file__).resolve().parents[1] / "data" / "ausil_released"
RELEASED_INDEX = RELEASED_DIR / "model.index"
RELEASED_BLOB_ID = "a42726a9cf5c2daa5fa9e2e4ce971ab1208ab355"
RELEASED_DATA_SIZE = 26_717_212

# The model's own variables in the released checkpoint (all float32).
MODEL_TENSORS = {
    "PCA/mean_sift": (2528,),
    "PCA/weights": (2528, 2528),
    "attention_layer/context_vector": (2528, 1),
    "video_comparator/conv2d/kernel": (3, 3, 1, 32),
    "video_comparator/conv2d/bias": (32,),
    "video_comparator/conv2d_1/kernel": (3, 3, 32, 64),
    "video_comparator/conv2d_1/bias": (64,),
    "video_comparator/conv2d_2/kernel": (3, 3, 64, 128),
    "video_comparator/conv2d_2/bias": (128,),
    "video_comparator/conv2d_3/kernel": (1, 1, 128, 1),
    "video_comparator/conv2d_3/bias": (1,),
}
# Variables Adam trained (and so has two slots for); the PCA variables are frozen and have none.
TRAINED = [name for name in MODEL_TENSORS if not name.startswith("PCA/")]


def _flip(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x40
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------ the released index


def test_vendored_index_is_the_released_file() -> None:
    data = RELEASED_INDEX.read_bytes()
    blob_id = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert blob_id == RELEASED_BLOB_ID
    assert (RELEASED_DIR / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_released_header() -> None:
    header, _ = read_index(RELEASED_INDEX)
    assert header == BundleHeader(num_shards=1, endianness="little", producer=1, min_consumer=0, bad_consumers=())


@pytest.mark.parametrize(("name", "shape"), sorted(MODEL_TENSORS.items()))
def test_released_model_tensors(name: str, shape: tuple[int, ...]) -> None:
    _, entries = read_index(RELEASED_INDEX)
    entry = entries[name]
    assert entry.name == name
    assert entry.dtype == np.float32
    assert entry.shape == shape
    assert entry.shard_id == 0
    assert entry.size == 4 * math.prod(shape) == entry.expected_size


def test_released_optimiser_state() -> None:
    _, entries = read_index(RELEASED_INDEX)
    slots = {f"{name}/{slot}" for name in TRAINED for slot in ("Adam", "Adam_1")}
    expected = set(MODEL_TENSORS) | slots | {"beta1_power", "beta2_power", "global_step"}
    assert set(entries) == expected
    assert len(entries) == 32
    for slot in slots:
        owner = entries[slot.rsplit("/", 1)[0]]
        assert (entries[slot].dtype, entries[slot].shape) == (owner.dtype, owner.shape)
    assert (entries["global_step"].dtype, entries["global_step"].shape) == (np.dtype(np.int64), ())
    for power in ("beta1_power", "beta2_power"):
        assert (entries[power].dtype, entries[power].shape) == (np.dtype(np.float32), ())


def test_released_layout_is_contiguous() -> None:
    """Tensors tile the data file without gaps or overlaps, ending at the data file's size."""
    _, entries = read_index(RELEASED_INDEX)
    by_offset = sorted(entries.values(), key=lambda e: e.offset)
    assert by_offset[0].offset == 0
    for entry in by_offset:
        assert entry.size == entry.expected_size, entry.name
    for before, after in zip(by_offset, by_offset[1:]):
        assert before.offset + before.size == after.offset, (before.name, after.name)
    assert max(e.offset + e.size for e in entries.values()) == RELEASED_DATA_SIZE
    assert by_offset[1].name == "PCA/weights" and by_offset[1].offset == 10112


def test_released_scalar_crcs_match_their_values() -> None:
    """The stored masked CRCs of the scalars are those of plausible values, so the mask is TF's.

    After 270,001 steps Adam's beta powers (0.9**t, 0.999**t) have underflowed to 0.0 in float32;
    the global step's CRC is that of int64 270001 (found by searching small integers).
    """
    _, entries = read_index(RELEASED_INDEX)
    zero = mask_crc32c(crc32c.crc32c(np.float32(0.0).tobytes()))
    assert entries["beta1_power"].crc32c == entries["beta2_power"].crc32c == zero
    step = np.int64(270001).astype("<i8").tobytes()
    assert entries["global_step"].crc32c == mask_crc32c(crc32c.crc32c(step))


def test_released_table_is_what_tensorflow_writes() -> None:
    """The test writer, with TF's default block options, reproduces the released index exactly."""
    items = read_table(RELEASED_INDEX)
    assert [k for k, _ in items][:2] == [b"", b"PCA/mean_sift"]
    _, entries = read_index(RELEASED_INDEX)
    assert items[0][1] == header_proto(num_shards=1)
    for key, value in items[1:]:
        e = entries[key.decode()]
        assert value == entry_proto(DTYPE_ENUM[np.dtype(e.dtype.char)], e.shape, e.offset, e.size, e.crc32c, e.shard_id)


def test_released_table_rewritten_byte_for_byte(tmp_path: Path) -> None:
    layout = write_table(tmp_path / "model.index", read_table(RELEASED_INDEX))
    assert (tmp_path / "model.index").read_bytes() == RELEASED_INDEX.read_bytes()
    assert len(layout.data_blocks) == 1


def test_released_checkpoint_without_data_file(tmp_path: Path) -> None:
    shutil.copy(RELEASED_INDEX, tmp_path / "model.index")
    prefix = tmp_path / "model"
    assert is_checkpoint_prefix(prefix)
    with pytest.raises(CheckpointNotFoundError) as info:
        TFCheckpoint(prefix)
    assert isinstance(info.value, FileNotFoundError)
    assert str(prefix) + ".data-00000-of-00001" in str(info.value)


# ------------------------------------------------------------------ synthetic round trips


def _sample_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    floats = rng.standard_normal((7, 5)).astype(np.float32)
    floats[0, :3] = [np.nan, np.inf, -0.0]
    tensors: dict[str, np.ndarray] = {
        "global_step": np.array(270001, dtype=np.int64),
        "beta1_power": np.array(0.5, dtype=np.float32),
        "PCA/weights": floats,
        "PCA/mean_sift": rng.standard_normal(11).astype(np.float64),
        "half": rng.standard_normal((2, 3, 4)).astype(np.float16),
        "ints/i8": rng.integers(-128, 128, 9, dtype=np.int8),
        "ints/u8": rng.integers(0, 256, (3, 3), dtype=np.uint8),
        "ints/i16": rng.integers(-(2**15), 2**15, 5, dtype=np.int16),
        "ints/i32": rng.integers(-(2**31), 2**31, (2, 2), dtype=np.int32),
        "ints/i64": rng.integers(-(2**63), 2**63 - 1, 3, dtype=np.int64),
        "mask": rng.integers(0, 2, (4, 4)).astype(bool),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "naïve/ünïcode": np.arange(3, dtype=np.int32),
        "a_b": np.ones(1, np.float32),
        "a/b": np.ones(2, np.float32),
        "aB": np.ones(3, np.float32),
    }
    long = "video_comparator/" * 6
    for i in range(60):
        tensors[f"{long}layer_{i:03d}/kernel"] = rng.standard_normal((i % 4 + 1, 3)).astype(np.float32)
        tensors[f"{long}layer_{i:03d}/kernel/Adam"] = rng.standard_normal(i % 5).astype(np.float32)
    return tensors


@pytest.mark.parametrize(("block_size", "restart_interval"), [(64, 1), (256, 3), (1024, 16), (1 << 20, 16)])
def test_round_trip(tmp_path: Path, block_size: int, restart_interval: int) -> None:
    tensors = _sample_tensors()
    layout = write_bundle(tmp_path / "model", tensors, block_size=block_size, restart_interval=restart_interval)
    if block_size <= 1024:
        assert len(layout.table.data_blocks) >= 3
    else:
        assert len(layout.table.data_blocks) == 1

    ckpt = TFCheckpoint(tmp_path / "model")
    assert ckpt.header.num_shards == 1
    assert ckpt.names() == sorted(tensors, key=lambda n: n.encode())
    assert ckpt.names()[:3] == ["PCA/mean_sift", "PCA/weights", "a/b"]
    for name, expected in tensors.items():
        entry = ckpt.entries[name]
        assert (entry.offset, entry.size) == layout.tensors[name]
        got = ckpt.get(name)
        assert got.dtype == expected.dtype, name
        assert got.shape == expected.shape, name
        assert got.tobytes() == expected.tobytes(), name
    everything = ckpt.read_all()
    assert list(everything) == ckpt.names()
    for name, expected in tensors.items():
        assert everything[name].tobytes() == expected.tobytes()
    some = ckpt.read_all(["half", "global_step"])
    assert list(some) == ["half", "global_step"]
    assert int(some["global_step"]) == 270001


def test_round_trip_results_are_writable_arrays(tmp_path: Path) -> None:
    write_bundle(tmp_path / "m", {"w": np.arange(6, dtype=np.float32).reshape(2, 3)})
    got = TFCheckpoint(tmp_path / "m").get("w")
    got[0, 0] = 42.0
    assert got.flags.writeable and got[0, 0] == 42.0


def test_unknown_name(tmp_path: Path) -> None:
    write_bundle(tmp_path / "m", {"w": np.zeros(2, np.float32)})
    ckpt = TFCheckpoint(tmp_path / "m")
    assert "w" in ckpt and "x" not in ckpt
    with pytest.raises(KeyError, match="x"):
        ckpt.get("x")
    with pytest.raises(KeyError, match="x"):
        ckpt.read_all(["w", "x"])


@pytest.mark.parametrize("value", [0, 1, 0x12345678, 0xA282EAD8, 0xFFFFFFFF])
def test_mask_round_trip(value: int) -> None:
    assert mask_crc32c(value) == mask(value)
    assert unmask_crc32c(mask_crc32c(value)) == value


def test_is_checkpoint_prefix(tmp_path: Path) -> None:
    write_bundle(tmp_path / "m", {"w": np.zeros(2, np.float32)})
    (tmp_path / "plain.pt").write_bytes(b"x")
    assert is_checkpoint_prefix(tmp_path / "m")
    assert is_checkpoint_prefix(str(tmp_path / "m"))
    assert not is_checkpoint_prefix(tmp_path / "m.index")
    assert not is_checkpoint_prefix(tmp_path / "plain.pt")
    assert not is_checkpoint_prefix(tmp_path / "absent")


# ------------------------------------------------------------------ refusals: data file


@pytest.fixture
def bundle(tmp_path: Path):
    tensors = _sample_tensors(1)
    layout = write_bundle(tmp_path / "model", tensors, block_size=256)
    return tmp_path / "model", tensors, layout


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_flipped_data_byte_names_the_tensor(bundle, where: str) -> None:
    prefix, tensors, layout = bundle
    offset, size = layout.tensors["PCA/weights"]
    position = {"first": offset, "middle": offset + size // 2, "last": offset + size - 1}[where]
    _flip(layout.data_path, position)
    ckpt = TFCheckpoint(prefix)
    with pytest.raises(CheckpointError) as info:
        ckpt.get("PCA/weights")
    message = str(info.value)
    assert "tensor PCA/weights" in message and "CRC32C mismatch" in message
    assert str(layout.data_path) in message
    with pytest.raises(CheckpointError, match="PCA/weights"):
        ckpt.read_all()
    # Other tensors are unaffected.
    assert ckpt.get("PCA/mean_sift").tobytes() == tensors["PCA/mean_sift"].tobytes()


def test_truncated_data_file_names_the_tensor_that_no_longer_fits(bundle) -> None:
    prefix, tensors, layout = bundle
    last = max(layout.tensors, key=lambda n: layout.tensors[n][0] + layout.tensors[n][1])
    offset, size = layout.tensors[last]
    assert size > 1
    data = layout.data_path.read_bytes()
    layout.data_path.write_bytes(data[: offset + size - 1])
    ckpt = TFCheckpoint(prefix)
    with pytest.raises(CheckpointError) as info:
        ckpt.get(last)
    assert f"tensor {last}:" in str(info.value) and "past the end" in str(info.value)
    first = min(layout.tensors, key=lambda n: layout.tensors[n][0])
    assert ckpt.get(first).tobytes() == tensors[first].tobytes()


def test_extra_trailing_data_bytes_are_harmless(bundle) -> None:
    prefix, tensors, layout = bundle
    with open(layout.data_path, "ab") as f:
        f.write(b"\xff" * 1000)
    everything = TFCheckpoint(prefix).read_all()
    assert all(everything[n].tobytes() == a.tobytes() for n, a in tensors.items())


def test_missing_data_file(bundle) -> None:
    prefix, _, layout = bundle
    layout.data_path.unlink()
    with pytest.raises(CheckpointNotFoundError, match=str(layout.data_path)):
        TFCheckpoint(prefix)


def test_missing_index_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError) as info:
        TFCheckpoint(tmp_path / "nothing")
    assert isinstance(info.value, FileNotFoundError)
    assert str(tmp_path / "nothing.index") in str(info.value)


# ------------------------------------------------------------------ refusals: index file


@pytest.mark.parametrize("block", ["first data", "last data", "metaindex", "index"])
@pytest.mark.parametrize("part", ["contents", "crc"])
def test_corrupt_index_block(bundle, block: str, part: str) -> None:
    _, _, layout = bundle
    handle = {
        "first data": layout.table.data_blocks[0],
        "last data": layout.table.data_blocks[-1],
        "metaindex": layout.table.metaindex,
        "index": layout.table.index,
    }[block]
    offset, size = handle
    _flip(layout.index_path, offset + size // 2 if part == "contents" else offset + size + 2)
    with pytest.raises(CheckpointError) as info:
        read_index(layout.index_path)
    message = str(info.value)
    assert message.startswith(f"{layout.index_path}:")
    assert "block CRC32C mismatch" in message
    assert block.split()[-1] + " block" in message


@pytest.mark.parametrize("position", [-1, -8])
def test_wrong_magic(bundle, position: int) -> None:
    _, _, layout = bundle
    _flip(layout.index_path, len(layout.index_path.read_bytes()) + position)
    with pytest.raises(CheckpointError, match="bad table magic") as info:
        read_index(layout.index_path)
    assert str(layout.index_path) in str(info.value)


@pytest.mark.parametrize("keep", [0, 20, 47])
def test_index_shorter_than_footer(bundle, keep: int) -> None:
    _, _, layout = bundle
    layout.index_path.write_bytes(layout.index_path.read_bytes()[-keep:] if keep else b"")
    with pytest.raises(CheckpointError, match="footer"):
        read_index(layout.index_path)


def test_index_truncated_at_front(bundle) -> None:
    """Dropping leading bytes keeps the footer but leaves its handles pointing past the blocks."""
    _, _, layout = bundle
    layout.index_path.write_bytes(layout.index_path.read_bytes()[100:])
    with pytest.raises(CheckpointError, match=str(layout.index_path)):
        read_index(layout.index_path)


def test_compressed_blocks_refused(tmp_path: Path) -> None:
    items = [(b"", header_proto()), (b"w", entry_proto(1, (1,), 0, 4, 0))]
    write_table(tmp_path / "m.index", items, compression_type=1)
    with pytest.raises(CheckpointError, match="compression type 1"):
        read_index(tmp_path / "m.index")


def test_unsorted_keys_refused(tmp_path: Path) -> None:
    items = [(b"", header_proto()), (b"b", entry_proto(1, (), 0, 4, 0)), (b"a", entry_proto(1, (), 4, 4, 0))]
    write_table(tmp_path / "m.index", items, check_order=False)
    with pytest.raises(CheckpointError, match="does not sort after"):
        read_index(tmp_path / "m.index")


# ------------------------------------------------------------------ refusals: entries and header


def _one_entry_index(tmp_path: Path, value: bytes, header: bytes | None = None) -> Path:
    path = tmp_path / "m.index"
    items = [(b"", header if header is not None else header_proto()), (b"layer/w", value)]
    write_table(path, items)
    return path


@pytest.mark.parametrize(
    ("dtype", "label"), [(7, "DT_STRING"), (14, "DT_BFLOAT16"), (20, "DT_RESOURCE"), (99, "unknown"), (0, "DT_INVALID")]
)
def test_unsupported_dtype(tmp_path: Path, dtype: int, label: str) -> None:
    path = _one_entry_index(tmp_path, entry_proto(dtype, (2,), 0, 8, 0))
    with pytest.raises(CheckpointError) as info:
        read_index(path)
    message = str(info.value)
    assert "tensor layer/w" in message and f"dtype {dtype} ({label}) not supported" in message
    assert str(path) in message


def test_partitioned_variable_refused(tmp_path: Path) -> None:
    path = _one_entry_index(tmp_path, entry_proto(1, (4,), 0, 16, 0, slices=2))
    with pytest.raises(CheckpointError, match="tensor layer/w: partitioned variable"):
        read_index(path)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (header_proto(endianness=1), "big-endian"),
        (header_proto(num_shards=0), "num_shards is 0"),
        (header_proto(min_consumer=2), "cannot be read"),
    ],
)
def test_bad_header(tmp_path: Path, header: bytes, reason: str) -> None:
    path = _one_entry_index(tmp_path, entry_proto(1, (), 0, 4, 0), header=header)
    with pytest.raises(CheckpointError, match=reason):
        read_index(path)


def test_missing_header(tmp_path: Path) -> None:
    path = tmp_path / "m.index"
    write_table(path, [(b"w", entry_proto(1, (), 0, 4, 0))])
    with pytest.raises(CheckpointError, match="no bundle header"):
        read_index(path)


@pytest.mark.parametrize("shard_id", [1, -1])
def test_shard_out_of_range(tmp_path: Path, shard_id: int) -> None:
    path = _one_entry_index(tmp_path, entry_proto(1, (), 0, 4, 0, shard_id=shard_id))
    with pytest.raises(CheckpointError, match=f"tensor layer/w: shard_id {shard_id} outside"):
        read_index(path)


def _single_tensor_checkpoint(tmp_path: Path, value: bytes, data: bytes) -> TFCheckpoint:
    _one_entry_index(tmp_path, value)
    (tmp_path / "m.data-00000-of-00001").write_bytes(data)
    return TFCheckpoint(tmp_path / "m")


@pytest.mark.parametrize(("shape", "size"), [((3,), 8), ((3,), 16), ((), 8), ((2, 0), 4)])
def test_size_not_matching_dtype_and_shape(tmp_path: Path, shape: tuple[int, ...], size: int) -> None:
    data = bytes(range(size))
    ckpt = _single_tensor_checkpoint(tmp_path, entry_proto(1, shape, 0, size, mask(crc32c.crc32c(data))), data)
    with pytest.raises(CheckpointError) as info:
        ckpt.get("layer/w")
    message = str(info.value)
    assert "tensor layer/w" in message and f"size {size} bytes does not match" in message


def test_offset_past_end_of_data_file(tmp_path: Path) -> None:
    data = np.arange(4, dtype=np.float32).tobytes()
    ckpt = _single_tensor_checkpoint(tmp_path, entry_proto(1, (4,), 8, 16, mask(crc32c.crc32c(data))), data)
    with pytest.raises(CheckpointError, match="tensor layer/w: bytes 8..24 run past the end of the 16-byte"):
        ckpt.get("layer/w")


def test_bool_bytes_other_than_0_and_1_refused(tmp_path: Path) -> None:
    data = bytes([0, 1, 2])
    ckpt = _single_tensor_checkpoint(tmp_path, entry_proto(10, (3,), 0, 3, mask(crc32c.crc32c(data))), data)
    with pytest.raises(CheckpointError, match="tensor layer/w: bool"):
        ckpt.get("layer/w")


def test_negative_dimension_refused(tmp_path: Path) -> None:
    path = _one_entry_index(tmp_path, entry_proto(1, (-2,), 0, 8, 0))
    with pytest.raises(CheckpointError, match="tensor layer/w: shape has a dimension of size -2"):
        read_index(path)


def test_garbled_entry_proto_refused(tmp_path: Path) -> None:
    path = _one_entry_index(tmp_path, b"\x08")  # a tag with its varint missing
    with pytest.raises(CheckpointError, match="tensor layer/w: truncated varint"):
        read_index(path)
