"""Decoding every supported container, normalisation, and one clear error per kind of bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ausil_lib.audio.decode import AudioError, ffmpeg_build, find_ffmpeg, load_audio, normalise

from ..helpers import MEDIA_FORMATS, SR, tone, video_without_audio


def dominant_frequency(audio: np.ndarray, sr: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    return float(np.fft.rfftfreq(audio.size, 1 / sr)[spectrum.argmax()])


@pytest.mark.parametrize("ext", sorted(MEDIA_FORMATS))
def test_decodes_every_container(make_media, ext: str) -> None:
    path = make_media(f"clip.{ext}", tone(2.0, freq=440.0))
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size / SR - 2.0) < 0.1, f"{ext}: decoded {audio.size / SR:.3f} s of a 2 s clip"
    assert abs(dominant_frequency(audio) - 440.0) < 2.0
    assert np.abs(audio).max() == pytest.approx(1.0)  # peak-normalised
    assert abs(float(audio.mean())) < 1e-3  # mean removed


def test_decode_resamples_to_44k(tmp_path: Path) -> None:
    from ausil_lib.audio.decode import encode

    path = tmp_path / "low.wav"
    encode(path, tone(1.0, freq=1000.0, sr=16000), 16000, ["-c:a", "pcm_s16le"])
    audio = load_audio(path, sample_rate=44100)
    assert abs(audio.size - 44100) <= 50
    assert abs(dominant_frequency(audio) - 1000.0) < 2.0


def test_normalise_silence_gives_zeros_not_nan() -> None:
    out = normalise(np.zeros(1000, np.int16))
    assert np.all(out == 0.0) and not np.isnan(out).any()


def test_normalise_removes_mean_and_scales_peak() -> None:
    out = normalise(np.array([100, 300, 200, 0], np.int16))
    # mean 150 -> [-50, 150, 50, -150], peak 150
    np.testing.assert_allclose(out, [-1 / 3, 1.0, 1 / 3, -1.0], rtol=1e-6)


def test_silent_media_file_decodes_to_silence(make_media) -> None:
    audio = load_audio(make_media("silent.mp4", np.zeros(SR, np.float32)))
    assert audio.size > 0.9 * SR and np.all(audio == 0.0)


def _error(path: Path, **kw) -> AudioError:
    with pytest.raises(AudioError) as info:
        load_audio(path, **kw)
    assert str(path) in str(info.value), "the message must name the file"
    return info.value


def test_missing_file(tmp_path: Path) -> None:
    assert "missing file" in _error(tmp_path / "nope.mp4").reason


def test_directory_is_refused(tmp_path: Path) -> None:
    assert "directory" in _error(tmp_path).reason


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert "empty file" in _error(tmp_path / "empty.mp4").reason


def test_corrupt_container(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    assert "corrupt" in _error(path).reason


def test_garbage_with_audio_extension(tmp_path: Path) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt this is not audio")
    assert "corrupt" in _error(path).reason


def test_no_audio_stream(tmp_path: Path) -> None:
    path = tmp_path / "video_only.mp4"
    video_without_audio(path)
    assert "no audio stream" in _error(path).reason


def test_too_short(make_media) -> None:
    path = make_media("blip.wav", tone(0.05))
    assert "too short" in _error(path, min_duration_s=0.1).reason
    assert load_audio(path).size > 0  # accepted when no minimum is asked for


def test_explicit_ffmpeg_must_exist(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not an executable"):
        find_ffmpeg(str(tmp_path / "ffmpeg"))


def test_the_pinned_ffmpeg_comes_before_one_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # another build on PATH (a system ffmpeg) would encode other bytes; only an explicit setting picks it
    other = tmp_path / "ffmpeg"
    other.write_text("#!/bin/sh\necho 'ffmpeg version other-build'\n")
    other.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    find_ffmpeg.cache_clear()
    try:
        chosen = find_ffmpeg()
        assert chosen != str(other) and "imageio_ffmpeg" in chosen
        assert ffmpeg_build(str(other)) == "ffmpeg version other-build"
        assert ffmpeg_build().startswith("ffmpeg version") and ffmpeg_build() != ffmpeg_build(str(other))
    finally:
        find_ffmpeg.cache_clear()


def test_an_executable_that_is_not_ffmpeg_is_refused_by_name(tmp_path: Path) -> None:
    fake = tmp_path / "not-ffmpeg"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(FileNotFoundError, match=r"not-ffmpeg.*exit 3"):
        ffmpeg_build(str(fake))
