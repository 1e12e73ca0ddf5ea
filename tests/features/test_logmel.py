"""Log-mel parity with librosa, segment geometry for every time step of the paper, and the released
extractor's segment padding (docs/ausil-reference-facts.md, "Segments as the released extractor")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ausil_lib.core.config import load_params, parse_params
from ausil_lib.features.extraction import is_current, run_signature, save_features
from ausil_lib.features.logmel import (
    FeatureConfig,
    LogMel,
    SegmentFrontEnd,
    frame_count,
    padded_length,
    portable_log10,
    segment,
    segment_count,
)
from ausil_lib.models.backbone import BackboneInfo

from ..helpers import SR, chords

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


@pytest.mark.parametrize("pad_mode", ["reflect", "constant"])
@pytest.mark.parametrize("seconds", [1.3, 7.0])
def test_logmel_matches_librosa_power_to_db(librosa, seconds: float, pad_mode: str) -> None:
    audio = chords(seconds, seed=3)
    audio[: SR // 2] *= 1e-4  # a quiet stretch exercises the 80 dB floor
    ref = librosa.power_to_db(
        librosa.feature.melspectrogram(y=audio, sr=SR, n_fft=1024, hop_length=512, n_mels=128, pad_mode=pad_mode)
    ).T
    ours = LogMel(FeatureConfig(pad_mode=pad_mode))(torch.from_numpy(audio)).numpy()
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < LIBROSA_TOLERANCE_DB


def test_db_floor_is_relative_to_the_whole_video() -> None:
    audio = chords(4.0, seed=1)
    audio[SR : 2 * SR] *= 1e-6
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
    segs = segment(logmel, step_frames=87, window_frames=174, padding="minimal")
    # ceil((300 - 174) / 87) + 1 = 3 segments, padded to 2 * 87 + 174 = 348 frames
    assert segs.shape == (3, 1, 174, mels)
    assert torch.equal(segs[1, 0], logmel[87:261])
    assert torch.equal(segs[2, 0, : 300 - 174], logmel[174:300])
    assert torch.all(segs[2, 0, 300 - 174 :] == 0)


def test_short_input_gives_one_padded_segment() -> None:
    segs = segment(torch.ones(20, 128), step_frames=87, window_frames=174, padding="minimal")
    assert segs.shape == (1, 1, 174, 128) and segs[0, 0, 20:].abs().sum() == 0


def test_front_end_segment_count_for_100s() -> None:
    # 100 s -> 8614 frames (center=True); at 1 s both paddings give 99 segments:
    # minimal ceil((8614 - 174) / 87) + 1; released 8614 + 10 = 8624 (176 x 49), + 76 = 8700 (87 x 100), 100 - 1
    audio = np.zeros(100 * SR, np.float32)
    assert frame_count(audio.size, FeatureConfig()) == 8614
    for padding in ("released", "minimal"):
        segs = SegmentFrontEnd(FeatureConfig(segment_padding=padding))(audio)
        assert segs.shape == (99, 1, 174, 128)


# --- the released extractor's padding, rules written out from the facts (not from the library) ---


def released_count_1s(frames: int) -> int:
    """t = 1 s: append 176 - F % 176 zero rows (1..176), then 87 - L % 87 more (1..87); pair 87-frame blocks."""
    padded = frames + 176 - frames % 176
    padded2 = padded + 87 - padded % 87
    return padded2 // 87 - 1


def released_count_176(frames: int, step: int) -> int:
    """125 ms: int(L / 11 - 15) windows of 176 frames from the 176-padded length L; the same rule for
    the 22- and 44-frame steps: windows of 176 at `step` that fit in L."""
    padded = frames + 176 - frames % 176
    return (padded - 176) // step + 1


def minimal_count(frames: int, step: int, window: int) -> int:
    return max(1, -(-(frames - window) // step) + 1)


def test_released_125ms_rule_is_the_released_formula() -> None:
    for frames in range(1, 2000):
        padded = frames + 176 - frames % 176
        assert released_count_176(frames, 11) == int(padded / 11 - 15)


def front_end_counts(cfg: FeatureConfig, max_frames: int) -> dict[int, int]:
    """Segments SegmentFrontEnd cuts from a log-mel of F frames, for F = 1 .. max_frames; from F = 2 on, also
    from audio of exactly F frames (a single frame is under n_fft / 2 samples: too short to reflect-pad)."""
    front = SegmentFrontEnd(cfg)
    audio = chords(max_frames * cfg.hop_length / SR, seed=5)
    out = {}
    for frames in range(1, max_frames + 1):
        segs = front.cut(torch.zeros(frames, cfg.n_mels))
        assert segs.shape[1:] == (1, cfg.window_frames, cfg.n_mels)
        out[frames] = segs.shape[0]
        if frames >= 2:
            # centred STFT: samples // hop + 1 frames; 1 or hop - 1 samples past a frame start, in turn
            samples = (frames - 1) * cfg.hop_length + (cfg.hop_length - 1 if frames % 2 else 1)
            assert frame_count(samples, cfg) == frames
            assert front(audio[:samples]).shape == segs.shape, frames
    return out


def test_front_end_segment_count_released_1s_for_every_length_to_600() -> None:
    cfg = FeatureConfig(time_step_ms=1000)
    assert cfg.segment_padding == "released" and (cfg.step_frames, cfg.window_frames) == (87, 174)
    counts = front_end_counts(cfg, 600)
    for frames, n in counts.items():
        assert n == released_count_1s(frames) == segment_count(frames, cfg), frames


def test_front_end_segment_count_released_125ms_for_every_length_to_600() -> None:
    cfg = FeatureConfig(time_step_ms=125)
    assert (cfg.step_frames, cfg.window_frames) == (11, 176)
    counts = front_end_counts(cfg, 600)
    for frames, n in counts.items():
        assert n == released_count_176(frames, 11) == segment_count(frames, cfg), frames


@pytest.mark.parametrize("step_ms, step", [(500, 44), (250, 22)])
def test_released_padding_at_500_and_250ms_is_the_176_rule(step_ms: int, step: int) -> None:
    cfg = FeatureConfig(time_step_ms=step_ms)
    assert (cfg.step_frames, cfg.window_frames) == (step, 176)
    for frames in range(1, 601):
        n = released_count_176(frames, step)
        assert segment_count(frames, cfg) == n, frames
        assert segment(torch.zeros(frames, 1), step, 176, padding="released").shape[0] == n


@pytest.mark.parametrize("step_ms", [1000, 500, 250, 125])
def test_minimal_padding_keeps_the_previous_counts(step_ms: int) -> None:
    cfg = FeatureConfig(time_step_ms=step_ms, segment_padding="minimal")
    step, window = cfg.step_frames, cfg.window_frames
    for frames in range(1, 601):
        n = minimal_count(frames, step, window)
        assert segment_count(frames, cfg) == n, frames
        assert segment(torch.zeros(frames, 1), step, window, padding="minimal").shape[0] == n
    if step_ms in (1000, 125):  # through the front end too, on a few lengths
        front = SegmentFrontEnd(cfg)
        for frames in (2, 173, 174, 175, 176, 177, 261, 262, 600):
            audio = np.zeros((frames - 1) * cfg.hop_length + 1, np.float32)
            assert front(audio).shape[0] == minimal_count(frames, step, window)


def hand_padded(logmel: np.ndarray, rows: int) -> np.ndarray:
    out = np.zeros((rows, logmel.shape[1]), np.float32)
    out[: logmel.shape[0]] = logmel
    return out


@pytest.mark.parametrize("frames", [1, 100, 174, 175, 176, 261, 300, 352, 527, 528, 600])
def test_released_segments_are_slices_of_the_hand_padded_spectrogram_1s(frames: int) -> None:
    mels = 3
    logmel = np.arange(frames * mels, dtype=np.float32).reshape(frames, mels) - 1000.0  # no zero inside
    padded2 = frames + 176 - frames % 176
    padded2 += 87 - padded2 % 87
    ref = hand_padded(logmel, padded2)
    segs = segment(torch.from_numpy(logmel), 87, 174, padding="released").numpy()[:, 0]
    assert segs.shape == (padded2 // 87 - 1, 174, mels)
    np.testing.assert_array_equal(segs[0], ref[0:174])
    blocks = ref.reshape(padded2 // 87, 87, mels)
    for k in range(segs.shape[0]):  # block k paired with block k + 1
        np.testing.assert_array_equal(segs[k], np.concatenate([blocks[k], blocks[k + 1]]))
    last_start = 87 * (segs.shape[0] - 1)
    assert last_start + 174 == padded2
    tail = segs[-1][max(0, frames - last_start) :]
    assert tail.shape[0] >= 2 and np.all(tail == 0.0)  # 0 dB padding: at least 1 + 1 rows
    if frames > last_start:
        np.testing.assert_array_equal(segs[-1][: frames - last_start], logmel[last_start:])


@pytest.mark.parametrize("frames", [1, 175, 176, 177, 300, 352, 600])
def test_released_segments_are_slices_of_the_hand_padded_spectrogram_125ms(frames: int) -> None:
    mels = 2
    logmel = np.arange(frames * mels, dtype=np.float32).reshape(frames, mels) + 1.0
    padded = frames + 176 - frames % 176
    ref = hand_padded(logmel, padded)
    segs = segment(torch.from_numpy(logmel), 11, 176, padding="released").numpy()[:, 0]
    assert segs.shape == (int(padded / 11 - 15), 176, mels)
    np.testing.assert_array_equal(segs[0], ref[0:176])
    for k in range(segs.shape[0]):
        np.testing.assert_array_equal(segs[k], ref[11 * k : 11 * k + 176])
    assert 11 * (segs.shape[0] - 1) + 176 == padded  # the last window ends on the padded end
    assert np.all(segs[-1][176 - (padded - frames) :] == 0.0)


def test_front_end_released_segments_match_hand_padded_logmel() -> None:
    cfg = FeatureConfig()
    audio = chords(3.3, seed=4)
    logmel = LogMel(cfg)(torch.from_numpy(audio)).numpy()
    frames = logmel.shape[0]
    padded2 = frames + 176 - frames % 176
    padded2 += 87 - padded2 % 87
    ref = hand_padded(logmel, padded2)
    segs = SegmentFrontEnd(cfg)(audio).numpy()[:, 0]
    assert segs.shape[0] == released_count_1s(frames)
    for k in range(segs.shape[0]):
        np.testing.assert_array_equal(segs[k], ref[87 * k : 87 * k + 174])
    assert np.all(segs[-1][frames - 87 * (segs.shape[0] - 1) :] == 0.0)
    assert logmel.min() < 0.0  # real bins are below 0 dB: the padding is louder


def test_reflect_padding_refuses_audio_under_half_a_window() -> None:
    with pytest.raises(ValueError, match="too short"):
        SegmentFrontEnd(FeatureConfig())(np.zeros(512, np.float32))
    assert SegmentFrontEnd(FeatureConfig(pad_mode="constant"))(np.zeros(512, np.float32)).shape[0] == 2


def test_padded_length_rules() -> None:
    assert padded_length(176, 87, 174, "released") == 352 + 83  # a full 176 rows, then 87 - 352 % 87
    assert padded_length(261, 87, 174, "released") == 352 + 83  # 261 -> 352 (not a multiple of 87)
    assert padded_length(176, 11, 176, "released") == 352
    assert padded_length(175, 11, 176, "released") == 176
    assert padded_length(300, 87, 174, "minimal") == 348
    with pytest.raises(ValueError, match="released, minimal"):
        padded_length(10, 87, 174, "exact")


def test_default_config_and_params_yaml_agree() -> None:
    default = FeatureConfig()
    assert (default.segment_padding, default.pad_mode) == ("released", "reflect")
    from_params = FeatureConfig.from_params(load_params("params.yaml"))
    assert from_params == default  # and tests/core/test_config.py: the defaults are params.yaml's


@pytest.mark.parametrize("key, allowed", [("segment_padding", "released, minimal"), ("pad_mode", "reflect, constant")])
def test_unknown_values_are_refused(key: str, allowed: str) -> None:
    with pytest.raises(ValueError, match=f"features.{key} must be one of {allowed}"):
        FeatureConfig(**{key: "bogus"})
    with pytest.raises(ValueError, match=f"features.{key}"):
        FeatureConfig.from_params(parse_params({"features": {key: "bogus"}}))


def test_released_padding_refuses_windows_longer_than_its_block() -> None:
    with pytest.raises(ValueError, match="minimal"):
        FeatureConfig(window_s=3.0)
    assert FeatureConfig(window_s=3.0, segment_padding="minimal").window_frames == 261


def test_features_of_another_padding_are_not_reused(tmp_path: Path) -> None:
    info = BackboneInfo("random", "UNTRAINED test backbone", "random-test")
    released = run_signature(FeatureConfig(), info)
    minimal = run_signature(FeatureConfig(segment_padding="minimal"), info)
    assert released["segment_padding"] == "released" and minimal["segment_padding"] == "minimal"
    path = tmp_path / "x.npz"
    save_features(path, np.zeros((2, 4), np.float32), {"video_id": "x", "signature": minimal})
    assert is_current(path, minimal) and not is_current(path, released)
    constant = {**released, "pad_mode": "constant"}
    save_features(path, np.zeros((2, 4), np.float32), {"video_id": "x", "signature": constant})
    assert not is_current(path, released)
    old = {k: v for k, v in released.items() if k != "segment_padding"}  # a file written before the key existed
    save_features(path, np.zeros((2, 4), np.float32), {"video_id": "x", "signature": old})
    assert not is_current(path, released)


def test_portable_log10_is_the_logarithm_rounded_to_float32() -> None:
    g = torch.Generator().manual_seed(0)
    powers = torch.exp(torch.empty(200_000, dtype=torch.float64).uniform_(-23.0, 14.0, generator=g)).float()
    got = portable_log10(powers)
    assert got.dtype == torch.float32
    np.testing.assert_array_max_ulp(got.numpy(), np.log10(powers.double().numpy()).astype(np.float32), maxulp=1)


@pytest.mark.parametrize("k", range(11))
def test_portable_log10_of_a_power_of_ten_is_its_exponent(k: int) -> None:
    assert float(portable_log10(torch.tensor([10.0**k]))[0]) == k  # 10^0 ... 10^10 are exact in float32
