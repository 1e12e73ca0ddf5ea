"""Speed of the feature pipeline (decode, log-mel, backbone, end to end) on this machine.

A benchmark, not a test: it measures and records, it asserts nothing.  Speed does not depend on
the weights, so the backbone is a seeded random network here; no retrieval number comes from it.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from .audio import encode, load_audio
from .backbone import KumarCNN, MacExtractor
from .config import resolve_device
from .features import FeatureConfig, SegmentFrontEnd


def _best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


def machine_description(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    desc = {"cpu": cpu, "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "device": str(device), "python": platform.python_version()}
    if device.type == "cuda":
        desc["gpu"] = torch.cuda.get_device_name(device)
    return desc


def test_signal(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """Chords with noise: real spectral content, so codecs and the front end do real work."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    freqs = rng.uniform(100, 4000, size=(int(seconds * 4) + 1, 3))
    idx = (t * 4).astype(int)
    sig = sum(np.sin(2 * np.pi * freqs[idx, k] * t) for k in range(3)) / 3
    return (0.5 * sig + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def run_speed_benchmark(params: Mapping[str, Any]) -> dict[str, Any]:
    """Seconds per 100 s of audio and segments per second for each step, per time step."""
    cfg_b = params.get("benchmark_speed", {})
    seconds = float(cfg_b.get("audio_seconds", 100))
    repeats = int(cfg_b.get("repeats", 3))
    device = resolve_device(params.get("device", "auto"))
    sr = int(params.get("audio", {}).get("sample_rate", 44100))
    bb = params.get("backbone", {})
    torch.manual_seed(0)
    mac = MacExtractor(KumarCNN(), device, fuse_bn=bool(bb.get("fuse_bn", True)),
                       channels_last=bool(bb.get("channels_last", True)))
    batch = int(params.get("extract", {}).get("batch_size", 128))
    per100 = 100.0 / seconds
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_description(device), "audio_seconds": seconds, "repeats": repeats,
        "note": "best of `repeats`; backbone weights are random (speed does not depend on them)",
        "time_steps": {}}
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "bench.mp4"
        encode(video, test_signal(seconds, sr), sr, ["-c:v", "libx264", "-c:a", "aac", "-b:a", "128k"],
               still_image=True)
        t_decode, audio = _best_of(lambda: load_audio(video, sample_rate=sr), repeats)
        results["decode_s_per_100s"] = t_decode * per100
        for step in cfg_b.get("time_steps_ms", [1000]):
            cfg = FeatureConfig.from_params(params, int(step))
            front = SegmentFrontEnd(cfg, device)
            t_mel, segments = _best_of(lambda: front(audio), repeats)
            mac.extract(segments[:batch], batch)  # warm-up (allocator, kernels)
            t_cnn, _ = _best_of(lambda: mac.extract(segments, batch), repeats)
            total = t_decode + t_mel + t_cnn
            results["time_steps"][str(step)] = {
                "segments": int(segments.shape[0]),
                "logmel_s_per_100s": t_mel * per100,
                "backbone_s_per_100s": t_cnn * per100,
                "backbone_segments_per_s": segments.shape[0] / t_cnn,
                "end_to_end_s_per_100s": total * per100,
                "end_to_end_x_real_time": seconds / total,
            }
    return results
