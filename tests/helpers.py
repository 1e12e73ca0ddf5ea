"""Test signals and the container/codec table used across the test modules."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ausil_lib.audio.decode import encode, find_ffmpeg
from ausil_lib.core.config import Params, SourcesConfig, SpeechConfig
from ausil_lib.datasets.embedded.sources import fetch_sources

SR = 44100
ROOT = Path(__file__).resolve().parents[1]

#: qemu-user runs this machine's binaries on an emulated CPU of another maker or SIMD level
QEMU = shutil.which("qemu-x86_64")
#: the marks of tests that compare native and emulated runs (scripts/setup.sh installs qemu-user as root)
CROSS_CPU_MARKS = [
    pytest.mark.slow,
    pytest.mark.skipif(
        platform.machine().lower() not in {"x86_64", "amd64"} or QEMU is None,
        reason="needs qemu-x86_64 on an x86-64 machine (scripts/setup.sh installs qemu-user as root)",
    ),
]


def script_digests(script: str, prefix: list[str]) -> dict[str, str]:
    """The JSON a Python snippet prints last, run in a fresh interpreter from the repository root, under
    `prefix` (e.g. [QEMU, "-cpu", model]) or natively: numerics are pinned as in a stage."""
    proc = subprocess.run(
        [*prefix, sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# container extension -> ffmpeg codec arguments, and whether the file carries a (still) video stream
MEDIA_FORMATS: dict[str, tuple[list[str], bool]] = {
    "mp4": (["-c:v", "libx264", "-c:a", "aac"], True),
    "mkv": (["-c:v", "libx264", "-c:a", "libvorbis"], True),
    "webm": (["-c:v", "libvpx", "-c:a", "libopus"], True),
    "mov": (["-c:v", "mpeg4", "-c:a", "aac"], True),
    "avi": (["-c:v", "mpeg4", "-c:a", "libmp3lame"], True),
    "flv": (["-c:v", "libx264", "-c:a", "aac"], True),
    "ogg": (["-c:a", "libvorbis"], False),
    "opus": (["-c:a", "libopus"], False),
    "mp3": (["-c:a", "libmp3lame"], False),
    "m4a": (["-c:a", "aac"], False),
    "wav": (["-c:a", "pcm_s16le"], False),
    "flac": (["-c:a", "flac"], False),
}


def tone(seconds: float, freq: float = 440.0, amp: float = 0.5, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def chords(seconds: float, seed: int, sr: int = SR) -> np.ndarray:
    """Random three-tone chords of 40-120 ms plus faint noise: audio that changes at the frame scale."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * sr), np.float32)
    pos = 0
    while pos < out.size:
        n = int(rng.uniform(0.04, 0.12) * sr)
        t = np.arange(min(n, out.size - pos)) / sr
        out[pos : pos + t.size] = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(150, 5000, 3)) / 3
        pos += n
    return (0.6 * out + 0.02 * rng.standard_normal(out.size)).astype(np.float32)


def run_checked(cwd: Path, env: dict[str, str], *cmd: str) -> str:
    """Run a command (dvc, ausil, git) in `cwd`; fail the test with the end of its output if it fails."""
    import subprocess

    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}"
    return proc.stdout


def video_without_audio(path: Path) -> Path:
    """A 2 s black H.264 video with no audio stream: the "no audio" failure case."""
    subprocess.run(
        [find_ffmpeg(), "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "color=c=black:s=16x16:r=5:d=2"]
        + ["-c:v", "libx264", str(path)],
        check=True,
    )
    return path


def textures(seconds: float, seed: int, sr: int = SR) -> np.ndarray:
    """Sounds of 0.3-1.2 s each - band noise, harmonic tone, chirp, click train, near silence - in random
    order: audio whose 2 s windows differ from one another, as music's do, and keep their kind when sped up."""
    from scipy.signal import butter, sosfilt

    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * sr), np.float32)
    pos = 0
    while pos < out.size:
        t = np.arange(min(int(rng.uniform(0.3, 1.2) * sr), out.size - pos)) / sr
        kind = int(rng.integers(5))
        if kind == 0:
            lo = min(rng.uniform(100, 4000), 0.3 * sr)
            band = butter(4, [lo, min(lo * rng.uniform(1.5, 4), 0.45 * sr)], "bandpass", fs=sr, output="sos")
            x = sosfilt(band, rng.standard_normal(t.size))
        elif kind == 1:
            f0 = rng.uniform(100, 800)
            x = sum(np.sin(2 * np.pi * f0 * k * t) * rng.uniform(0.2, 1) / k for k in range(1, 8))
        elif kind == 2:
            f0, f1 = rng.uniform(200, 4000, 2)
            x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * max(t[-1], 1e-3))))
        elif kind == 3:
            x = np.zeros(t.size)
            x[:: int(sr / rng.uniform(5, 40))] = 1.0
        else:
            x = 0.01 * rng.standard_normal(t.size)
        out[pos : pos + t.size] = x / (np.abs(x).max() + 1e-9)
        pos += t.size
    return (0.5 * out).astype(np.float32)


MUSICNN_TEST_CHANNELS = 4  # the real network has 128; the graph is the same


def musicnn_tensors(rng: np.random.Generator, channels: int = MUSICNN_TEST_CHANNELS) -> dict[str, np.ndarray]:
    """Random weights under the names of musicnn's VGG checkpoint (models/musicnn.py), `channels` wide."""
    out: dict[str, np.ndarray] = {}
    for i, name in enumerate(["batch_normalization"] + [f"batch_normalization_{k}" for k in range(1, 6)]):
        n = 1 if i == 0 else channels
        out[f"{name}/gamma"] = rng.uniform(0.5, 1.5, n).astype(np.float32)
        out[f"{name}/beta"] = rng.normal(0, 0.2, n).astype(np.float32)
        out[f"{name}/moving_mean"] = rng.normal(0, 0.5, n).astype(np.float32)
        out[f"{name}/moving_variance"] = rng.uniform(0.5, 2.0, n).astype(np.float32)
    for k in range(1, 6):
        out[f"{k}CNN/kernel"] = rng.normal(0, 0.3, (3, 3, 1 if k == 1 else channels, channels)).astype(np.float32)
        out[f"{k}CNN/bias"] = rng.normal(0, 0.1, channels).astype(np.float32)
    return out


def encode_clips(folder: Path, clips: dict[str, tuple[str, float]]) -> dict[str, str]:
    """id -> path of media files made from `clips` (id -> (file name, seconds)): chords seeded by position,
    in each name's container and codecs (MEDIA_FORMATS), a still video stream where the container has one."""
    from ausil_lib.audio.decode import encode

    videos = {}
    for seed, (vid, (name, seconds)) in enumerate(clips.items()):
        codec_args, video = MEDIA_FORMATS[name.rsplit(".", 1)[1]]
        encode(folder / name, chords(seconds, seed=seed), SR, codec_args, still_image=video)
        videos[vid] = str(folder / name)
    return videos


def materialised_sources(root: Path, folder: str, stems: dict[str, int]) -> Path:
    """A materialised sources folder (manifest included) of generated music, one album."""
    for stem, seed in stems.items():
        encode(root / f"{folder}_in" / "album" / f"{stem}.flac", chords(6.0, seed=seed), SR, ["-c:a", "flac"])
    cfg = SourcesConfig(
        music_dir=str(root / f"{folder}_in"),
        music_licence="generated by the test",
        exclude=(),
        min_recording_s=4,
        variant_groups=(),
        speech=SpeechConfig(enabled=False),
    )
    fetch_sources(replace(Params(), sources=cfg), root / folder)
    return root / folder
