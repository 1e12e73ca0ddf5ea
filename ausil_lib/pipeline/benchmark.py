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
from typing import Any, Callable

import numpy as np
import torch

from ..audio.decode import encode, load_audio
from ..core.config import Params, resolve_device
from ..core.numerics import apply_torch_settings, numerics_settings
from ..features.extraction import partner_from_params
from ..features.logmel import FeatureConfig, SegmentFrontEnd
from ..models.backbone import KumarCNN, MacExtractor

apply_torch_settings()  # torch's threads and cuDNN settings, before any tensor work (core/numerics.py)


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
    desc = {
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device),
        "python": platform.python_version(),
        "numerics": numerics_settings(),
    }
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


def run_speed_benchmark(params: Params) -> dict[str, Any]:
    """Seconds per 100 s of audio and segments per second for each step, per time step."""
    cfg_b = params.benchmark_speed
    seconds = float(cfg_b.audio_seconds)
    repeats = cfg_b.repeats
    device = resolve_device(params.device)
    sr = params.audio.sample_rate
    bb = params.backbone
    torch.manual_seed(0)
    mac = MacExtractor(KumarCNN(), device, fuse_bn=bb.fuse_bn, channels_last=bb.channels_last)
    batch = params.extract.batch_size
    per100 = 100.0 / seconds
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_description(device),
        "audio_seconds": seconds,
        "repeats": repeats,
        "note": "best of `repeats`; backbone weights are random (speed does not depend on them)",
        "time_steps": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "bench.mp4"
        encode(
            video, test_signal(seconds, sr), sr, ["-c:v", "libx264", "-c:a", "aac", "-b:a", "128k"], still_image=True
        )
        t_decode, audio = _best_of(lambda: load_audio(video, sample_rate=sr), repeats)
        results["decode_s_per_100s"] = t_decode * per100
        for step in cfg_b.time_steps_ms:
            cfg = FeatureConfig.from_params(params, step)
            front = SegmentFrontEnd(cfg, device)
            t_mel, segments = _best_of(lambda front=front: front(audio), repeats)
            mac.extract(segments[:batch], batch)  # warm-up (allocator, kernels)
            t_cnn, _ = _best_of(lambda segments=segments: mac.extract(segments, batch), repeats)
            row = {
                "segments": int(segments.shape[0]),
                "logmel_s_per_100s": t_mel * per100,
                "backbone_s_per_100s": t_cnn * per100,
                "backbone_segments_per_s": segments.shape[0] / t_cnn,
            }
            total = t_decode + t_mel + t_cnn
            partner = partner_from_params(params, cfg, device)
            if partner is not None:  # the extractor runs it on every file too: part of end to end
                t_p_decode, p_audio = _best_of(lambda partner=partner: partner.decode(str(video)), repeats)
                t_partner, _ = _best_of(lambda partner=partner, p_audio=p_audio: partner.describe(p_audio), repeats)
                results["partner"] = partner.label
                row |= {"partner_decode_s_per_100s": t_p_decode * per100, "partner_s_per_100s": t_partner * per100}
                total += t_p_decode + t_partner
            results["time_steps"][str(step)] = row | {
                "end_to_end_s_per_100s": total * per100,
                "end_to_end_x_real_time": seconds / total,
            }
    return results


def run_bulk_benchmark(params: Params, n_videos: int, seconds: float = 100.0) -> dict[str, Any]:
    """Throughput of the real-dataset extraction path (`ausil extract --store`): `n_videos` distinct
    synthetic mp4 files through the DataLoader decoding workers, packed backbone batches and the
    sharded store, with and without mixed precision (which only acts on CUDA)."""
    from concurrent.futures import ThreadPoolExecutor

    from ..features.bulk import extract_to_store
    from ..features.extraction import Extractor
    from ..features.store import FeatureStore
    from ..models.backbone import BackboneInfo

    device = resolve_device(params.device)
    sr = params.audio.sample_rate
    bb, dsets = params.backbone, params.datasets
    workers = dsets.decode_workers
    torch.manual_seed(0)
    mac = MacExtractor(KumarCNN(), device, fuse_bn=bb.fuse_bn, channels_last=bb.channels_last)
    extractor = Extractor(
        mac,
        BackboneInfo("random", "random (speed benchmark)", "bench"),
        FeatureConfig.from_params(params),
        params.audio,
    )
    out: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_description(device),
        "videos": n_videos,
        "video_seconds": seconds,
        "decode_workers": workers,
        "batch_segments": dsets.batch_segments,
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        videos = {f"v{i:05d}": str(Path(tmp) / f"v{i:05d}.mp4") for i in range(n_videos)}

        def make(item: tuple[int, str]) -> None:
            encode(
                item[1],
                test_signal(seconds, sr, seed=item[0]),
                sr,
                ["-c:v", "libx264", "-c:a", "aac", "-b:a", "128k"],
                still_image=True,
            )

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            list(pool.map(make, enumerate(videos.values())))
        for amp in (False, True):
            with FeatureStore(
                Path(tmp) / f"store_amp{int(amp)}", extractor.signature, dtype=dsets.store_dtype
            ) as store:
                report = extract_to_store(
                    extractor,
                    videos,
                    store,
                    workers=workers,
                    batch_segments=out["batch_segments"],
                    amp=amp,
                    progress=False,
                )
            wall = report.wall_seconds
            out["runs"]["amp" if amp else "fp32"] = {
                "failed": len(report.failed),
                "wall_s": round(wall, 2),
                "videos_per_s": round(n_videos / wall, 2),
                "s_per_100s_of_audio": round(wall / (n_videos * seconds) * 100, 4),
                "x_real_time": round(n_videos * seconds / wall, 1),
                "amp_active": amp and device.type == "cuda",
            }
    return out


def run_similarity_benchmark(
    params: Params,
    n_queries: int,
    n_videos: int,
    min_segments: int = 20,
    max_segments: int = 300,
    seed: int = 0,
) -> dict[str, Any]:
    """`dataset evaluate`'s scorer at collection scale: `n_queries` against `n_videos` videos of
    [min_segments, max_segments] segments (real collections do not share one length)."""
    from ..datasets.real.budget import time_scorer

    device = resolve_device(params.device)
    batch_bytes = params.datasets.similarity_batch_mb << 20
    timing = time_scorer(device, n_queries, n_videos, min_segments, max_segments, batch_bytes, seed)
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_description(device),
        **timing,
        "ms_per_pair": round(timing["ms_per_pair"], 4),
    }
