"""Log-mel parity with librosa, segment geometry for every time step of the paper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ausil_lib.features import FeatureConfig, LogMel, SegmentFrontEnd, segment

from .helpers import SR, chords

# Agreement stated in the README: torchaudio front end vs librosa within 2e-3 dB (float32).
LIBROSA_TOLERANCE_DB = 2e-3


@pytest.fixture(scope="module")
def librosa():
    return pytest.importorskip("librosa")


def test_mel_filterbank_matches_librosa(librosa) -> None:
    cfg = FeatureConfig()
    ours = LogMel(cfg).mel.mel_scale.fb.numpy().T  # (n_mels, n_freqs)
    ref = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("seconds", [1.3, 7.0])
def test_logmel_matches_librosa_power_to_db(librosa, seconds: float) -> None:
    audio = chords(seconds, seed=3)
    audio[: SR // 2] *= 1e-4  # a quiet stretch exercises the 80 dB floor
    ref = librosa.power_to_db(librosa.feature.melspectrogram(y=audio, sr=SR, n_fft=1024, hop_length=512,
                                                             n_mels=128)).T
    ours = LogMel(FeatureConfig())(torch.from_numpy(audio)).numpy()
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < LIBROSA_TOLERANCE_DB


def test_db_floor_is_relative_to_the_whole_video() -> None:
    audio = chords(4.0, seed=1)
    audio[SR:2 * SR] *= 1e-6
    db = LogMel(FeatureConfig())(torch.from_numpy(audio))
    assert float(db.max() - db.min()) == pytest.approx(80.0, abs=1e-3)


@pytest.mark.parametrize("step_ms, step, window", [(1000, 87, 174), (500, 44, 176), (250, 22, 176), (125, 11, 176)])
def test_segment_geometry_per_time_step(step_ms: int, step: int, window: int) -> None:
    cfg = FeatureConfig(time_step_ms=step_ms)
    assert (cfg.step_frames, cfg.window_frames) == (step, window)
    assert window * cfg.hop_length / cfg.sample_rate >= 2.0  # every segment covers at least 2 s


def test_segments_are_slices_of_the_spectrogram_with_zero_padding() -> None:
    frames, mels = 300, 4
    logmel = torch.arange(frames * mels, dtype=torch.float32).reshape(frames, mels) + 1
    segs = segment(logmel, step_frames=87, window_frames=174)
    # ceil((300 - 174) / 87) + 1 = 3 segments, padded to 2 * 87 + 174 = 348 frames
    assert segs.shape == (3, 1, 174, mels)
    assert torch.equal(segs[1, 0], logmel[87:261])
    assert torch.equal(segs[2, 0, : 300 - 174], logmel[174:300])
    assert torch.all(segs[2, 0, 300 - 174:] == 0)


def test_short_input_gives_one_padded_segment() -> None:
    segs = segment(torch.ones(20, 128), step_frames=87, window_frames=174)
    assert segs.shape == (1, 1, 174, 128) and segs[0, 0, 20:].abs().sum() == 0


def test_front_end_segment_count_for_100s() -> None:
    # 100 s -> 8614 frames (center=True); at 1 s: ceil((8614 - 174) / 87) + 1 = 99 segments
    segs = SegmentFrontEnd(FeatureConfig())(np.zeros(100 * SR, np.float32))
    assert segs.shape == (99, 1, 174, 128)
