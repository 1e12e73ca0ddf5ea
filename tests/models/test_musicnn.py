"""models/musicnn.py: musicnn's VGG read from a TensorFlow checkpoint must compute what the TensorFlow
graph computes (NHWC, HWIO kernels, conv -> ReLU -> BatchNorm, valid max pooling), its wheel is refused
unless its SHA-256 matches, and segments follow AuSiL's window and step."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ausil_lib.core.download import DownloadError
from ausil_lib.models import musicnn
from ausil_lib.models.tf_checkpoint import TFCheckpoint

from ..helpers import MUSICNN_TEST_CHANNELS as CHANNELS
from ..helpers import musicnn_tensors
from ..tf_bundle_writer import write_bundle

# musicnn's models.vgg: max_pooling2d after blocks 1-4 as (pool_size, strides), time x frequency
TF_POOLS = (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)))


def _bn(x: np.ndarray, t: dict[str, np.ndarray], name: str) -> np.ndarray:
    return (x - t[f"{name}/moving_mean"]) / np.sqrt(t[f"{name}/moving_variance"] + 1e-3) * t[f"{name}/gamma"] + t[
        f"{name}/beta"
    ]


def _conv_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """TensorFlow's 'same' 3x3 convolution, NHWC input and HWIO kernel, written out by offsets."""
    n, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((n, h, w, kernel.shape[3]), np.float64)
    for dy in range(3):
        for dx in range(3):
            out += np.einsum("nhwc,co->nhwo", padded[:, dy : dy + h, dx : dx + w], kernel[dy, dx])
    return out + bias


def _max_pool_valid(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    n, h, w, c = x.shape
    oh, ow = (h - kernel[0]) // stride[0] + 1, (w - kernel[1]) // stride[1] + 1
    out = np.empty((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            win = x[:, i * stride[0] : i * stride[0] + kernel[0], j * stride[1] : j * stride[1] + kernel[1]]
            out[:, i, j] = win.max(axis=(1, 2))
    return out


def _reference_mac(logmel: np.ndarray, t: dict[str, np.ndarray], pools) -> np.ndarray:
    """The TensorFlow graph of musicnn's vgg, in NumPy, then the same MAC per block."""
    x = _bn(logmel[..., None], t, "batch_normalization")  # (n, time, mel, 1)
    parts = []
    for k in range(1, 6):
        x = _bn(np.maximum(_conv_same(x, t[f"{k}CNN/kernel"], t[f"{k}CNN/bias"]), 0), t, f"batch_normalization_{k}")
        unit = x / np.linalg.norm(x, axis=3, keepdims=True).clip(1e-12)
        pooled = unit.max(axis=(1, 2))
        parts.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
        if k <= len(pools):
            x = _max_pool_valid(x, *pools[k - 1])
    return np.concatenate(parts, axis=1)


def test_network_matches_the_tensorflow_graph(tmp_path: Path) -> None:
    tensors = musicnn_tensors(np.random.default_rng(0))
    write_bundle(tmp_path / "model", tensors)
    net = musicnn.MusicnnVGG(TFCheckpoint(tmp_path / "model"))
    logmel = np.random.default_rng(1).uniform(0, 3, (2, 126, 96)).astype(np.float32)
    got = net(torch.from_numpy(logmel).unsqueeze(1)).numpy()
    assert got.shape == (2, 5 * CHANNELS)
    np.testing.assert_allclose(got, _reference_mac(logmel, tensors, TF_POOLS), atol=1e-4)


def test_a_kernel_read_transposed_would_be_caught(tmp_path: Path) -> None:
    """The test above can fail: swapping the kernel's two spatial axes changes the descriptors."""
    tensors = musicnn_tensors(np.random.default_rng(0))
    write_bundle(tmp_path / "model", tensors)
    swapped = dict(tensors, **{"1CNN/kernel": tensors["1CNN/kernel"].transpose(1, 0, 2, 3).copy()})
    logmel = np.random.default_rng(1).uniform(0, 3, (1, 126, 96)).astype(np.float32)
    got = musicnn.MusicnnVGG(TFCheckpoint(tmp_path / "model"))(torch.from_numpy(logmel).unsqueeze(1)).numpy()
    assert np.abs(got - _reference_mac(logmel, swapped, TF_POOLS)).max() > 1e-3


@pytest.mark.parametrize(("seconds", "expected"), [(0.5, 1), (2.0, 1), (2.5, 2), (4.0, 3)])
def test_segments_follow_the_window_and_step(seconds: float, expected: int) -> None:
    segments = musicnn.Segments(window_s=2.0, step_s=1.0)(np.zeros(round(seconds * musicnn.SAMPLE_RATE), np.float32))
    assert segments.shape == (expected, 1, 2 * musicnn.SAMPLE_RATE // 256 + 1, 96)  # centred frames
    assert torch.all(segments == 0)  # log10(1 + 0) of silence


def _wheel(path: Path) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("musicnn/MSD_vgg/.index", b"index bytes")
        zf.writestr("musicnn/MSD_vgg/.data-00000-of-00001", b"data bytes")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_wheel_is_verified_before_its_checkpoint_is_unpacked(tmp_path: Path, monkeypatch) -> None:
    wheel = tmp_path / "served.whl"
    digest = _wheel(wheel)
    cache = tmp_path / "cache"
    monkeypatch.setattr(musicnn, "WHEEL", {"url": wheel.as_uri(), "sha256": "0" * 64})
    with pytest.raises(DownloadError, match="does not match"):
        musicnn.checkpoint("MSD_vgg", cache)
    assert not (cache / "MSD_vgg").exists()
    monkeypatch.setattr(musicnn, "WHEEL", {"url": wheel.as_uri(), "sha256": digest})
    monkeypatch.setattr(musicnn, "TFCheckpoint", lambda prefix: Path(prefix))  # the bytes are no real bundle
    prefix = musicnn.checkpoint("MSD_vgg", cache)
    assert Path(f"{prefix}.index").read_bytes() == b"index bytes"
    assert Path(f"{prefix}.data-00000-of-00001").read_bytes() == b"data bytes"


def test_an_unknown_model_is_refused_before_any_download(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="MSD_vgg"):
        musicnn.checkpoint("MSD_musicnn_big", tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_clip_is_described_segment_by_segment_whatever_the_batch(tmp_path: Path) -> None:
    """`describe` batches segments through the network only for speed: each row is its own segment's."""
    write_bundle(tmp_path / "model", musicnn_tensors(np.random.default_rng(0)))
    net = musicnn.MusicnnVGG(TFCheckpoint(tmp_path / "model"))
    segments = musicnn.Segments(window_s=1.0, step_s=0.5)
    audio = np.random.default_rng(2).normal(0, 0.1, round(3.2 * musicnn.SAMPLE_RATE)).astype(np.float32)
    whole = musicnn.describe(net, segments, audio)
    assert whole.shape == (6, 5 * CHANNELS)
    np.testing.assert_allclose(musicnn.describe(net, segments, audio, batch=4), whole, atol=1e-5)
    alone = net(segments(audio[musicnn.SAMPLE_RATE : 2 * musicnn.SAMPLE_RATE])).numpy()  # the third window
    np.testing.assert_allclose(alone[0], whole[2], atol=1e-5)
