"""Dry run: the disk, time and GPU budget of a real dataset, printed before anything is fetched.

Sizes come from params.yaml (`datasets.<name>.stats`: the published video counts and mean
durations); speeds come from measurements, never from guesses: the extraction speed from a
`benchmark-speed` report, and the similarity cost per pair from a timing run on this machine
(`measure_pair_ms`). Every estimate says which measurement it scales.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ...core.config import DatasetConfig, DatasetsConfig, Params
from ...core.numerics import apply_torch_settings
from ...models.ausil import AuSiL
from ...models.backbone import DESCRIPTOR_DIM
from ...retrieval.runner import score_stored

apply_torch_settings()  # torch's threads and cuDNN settings, before any tensor work (core/numerics.py)

GB = 1e9
FLAC_BYTES_PER_S = 44100 * 2 * 0.6  # mono 16-bit at 44.1 kHz, FLAC at about 60 % of PCM


class ArraySource:
    """In-memory descriptors behind the store interface (timing only)."""

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.arrays = arrays

    def __contains__(self, vid: object) -> bool:
        return vid in self.arrays

    def n_segments(self, vid: str) -> int:
        return self.arrays[vid].shape[0]

    def get(self, vid: str) -> np.ndarray:
        return self.arrays[vid]


def time_scorer(
    device: torch.device,
    n_queries: int,
    n_videos: int,
    min_segments: int,
    max_segments: int,
    batch_bytes: int = 1 << 30,
    seed: int = 0,
) -> dict[str, Any]:
    """Time the evaluation stage's batched AuSiL scorer (`score_stored`) on random descriptors of videos whose
    lengths spread uniformly over [min_segments, max_segments], after a warm-up; random weights, since the
    cost does not depend on them. Mixed lengths make smaller batches than one shared length."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_segments, max_segments + 1, size=n_queries + n_videos)
    source = ArraySource(
        {f"v{i:06d}": rng.random((int(n), DESCRIPTOR_DIM), dtype=np.float32) for i, n in enumerate(lengths)}
    )
    ids = sorted(source.arrays)
    model = AuSiL()
    score_stored(model, source, ids[:1], ids[n_queries : n_queries + 8], device, batch_bytes, progress=False)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    _, _, timing = score_stored(model, source, ids[:n_queries], ids[n_queries:], device, batch_bytes, progress=False)
    wall = time.perf_counter() - start
    out = {
        "device": str(device),
        "queries": n_queries,
        "videos": n_videos,
        "segments": [min_segments, max_segments],
        "mean_segments": float(lengths.mean()),
        "pairs": timing["pairs"],
        "buckets": timing["buckets"],
        "wall_s": round(wall, 2),
        "ms_per_pair": 1000 * wall / timing["pairs"],
    }
    if device.type == "cuda":
        out["peak_gpu_gb"] = torch.cuda.max_memory_allocated(device) / GB
    return out


def measure_pair_ms(device: torch.device, n_segments: int = 100) -> dict[str, Any]:
    """Milliseconds per pair of `n_segments`-segment videos (100 s at t = 1 s) on `device`."""
    return {**time_scorer(device, 4, 256, n_segments, n_segments), "n_segments": n_segments}


def segments(duration_s: float, step_ms: int, window_s: float = 2.0) -> int:
    return max(1, int((duration_s - window_s) * 1000 // step_ms) + 1)


def estimate(
    name: str,
    cfg: DatasetConfig,
    params: Params,
    speed: Mapping[str, Any],
    pair: Mapping[str, float],
    bulk: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The budget of one dataset; `speed` is a benchmark-speed report, `pair` a measure_pair_ms result,
    `bulk` an optional `benchmark-speed --bulk-videos` report (parallel decoding: the better estimate)."""
    stats = cfg.stats
    videos, duration = stats.videos, stats.mean_duration_s
    if not videos or not duration:
        raise ValueError(f"datasets.{name}.stats needs videos and mean_duration_s for a budget")
    dsets = params.datasets
    step = cfg.time_step_ms or params.features.time_step_ms
    n_seg = segments(duration, step, float(params.features.window_s))
    dtype_bytes = 2 if dsets.store_dtype == "float16" else 4
    queries = stats.queries
    factors = dsets.speed_factors if cfg.kind in ("fivr", "svd") else ()
    hours = videos * duration / 3600
    media_gb = videos * duration * float(dsets.budget_audio_kbps) * 125 / GB
    steps = speed.get("time_steps", {})
    per100 = steps.get(str(step), {}).get("end_to_end_s_per_100s")
    if per100 is None and steps:  # scale the backbone cost with the number of segments
        ref_step, ref = min(steps.items(), key=lambda kv: abs(int(kv[0]) - step))
        per100 = ref["end_to_end_s_per_100s"] * int(ref_step) / step
    source = f"sequential decode + backbone on {speed.get('machine', {}).get('device')}"
    if bulk and step == 1000 and bulk.get("runs"):  # the bulk benchmark runs at the default 1 s step
        best = min(bulk["runs"].items(), key=lambda kv: kv[1]["s_per_100s_of_audio"])
        per100 = best[1]["s_per_100s_of_audio"]
        source = (
            f"`extract --store`, {bulk['decode_workers']} decoding workers, {best[0]}, on "
            f"{bulk['machine'].get('gpu', bulk['machine'].get('device'))}"
        )
    extract_h = videos * duration / 100 * per100 / 3600 if per100 else None
    # similarity cost grows with both matrix sides; scale the measured pair by the segment counts
    pair_ms = pair["ms_per_pair"] * (n_seg / pair["n_segments"]) ** 2
    pairs = queries * videos * (2 if factors else 1)
    return {
        "dataset": name,
        "kind": cfg.kind,
        "videos": videos,
        "queries": queries,
        "hours_of_audio": round(hours, 1),
        "time_step_ms": step,
        "segments_per_video": n_seg,
        "disk_gb": {
            "media": round(media_gb, 1),
            "features": round(videos * n_seg * DESCRIPTOR_DIM * dtype_bytes / GB, 1),
            "speed_copies": round(queries * sum(1 / f for f in factors) * duration * FLAC_BYTES_PER_S / GB, 2),
        },
        "time_h": {
            "download_at_rate_limit": _download_hours(videos, media_gb, dsets) if cfg.kind == "fivr" else None,
            "extraction": round(extract_h, 2) if extract_h is not None else None,
            "similarity": round(pairs * pair_ms / 1000 / 3600, 2),
        },
        "pairs": pairs,
        "measured": {
            "extraction_s_per_100s": round(per100, 4) if per100 else None,
            "extraction_source": source,
            "pair_ms_at_measured_size": round(pair["ms_per_pair"], 4),
            "pair_device": pair["device"],
            "pair_ms_scaled": round(pair_ms, 4),
            "peak_gpu_gb": pair.get("peak_gpu_gb"),
        },
    }


def _download_hours(videos: int, media_gb: float, dsets: DatasetsConfig) -> float | None:
    """Lower bound from the politeness settings: one request per sleep_s, each at most rate_limit."""
    yt = dsets.youtube
    rate = yt.rate_limit or ""
    units = {"K": 1e3, "M": 1e6, "G": 1e9}
    bytes_s = float(rate[:-1]) * units[rate[-1].upper()] if rate and rate[-1].upper() in units else None
    transfer = media_gb * GB / bytes_s if bytes_s else 0.0
    return round(max(videos * float(yt.sleep_s), transfer) / 3600, 1)


def render(budget: Mapping[str, Any]) -> str:
    """A plain-text table for the terminal."""
    d, t, m = budget["disk_gb"], budget["time_h"], budget["measured"]
    lines = [
        f"Budget for {budget['dataset']} ({budget['kind']}): {budget['videos']:,} videos, "
        f"{budget['hours_of_audio']:,} h of audio, {budget['queries']} queries, t = {budget['time_step_ms']} ms "
        f"({budget['segments_per_video']} segments per mean video)",
        f"  disk: media {d['media']:,} GB, features {d['features']:,} GB, speed copies {d['speed_copies']} GB",
        "  time: "
        + (
            f"download >= {t['download_at_rate_limit']} h (yt-dlp rate limit and pauses), "
            if t["download_at_rate_limit"] is not None
            else "download: archives (size above), "
        )
        + "extraction "
        f"{t['extraction']} h at {m['extraction_s_per_100s']} s per 100 s ({m['extraction_source']}), "
        f"similarity {t['similarity']} h for {budget['pairs']:,} pairs at {m['pair_ms_scaled']} ms "
        f"(measured {m['pair_ms_at_measured_size']} ms per 100-segment pair on {m['pair_device']})",
    ]
    if m.get("peak_gpu_gb") is not None:
        lines.append(f"  GPU memory: {m['peak_gpu_gb']:.2f} GB peak for the similarity batches measured")
    else:
        lines.append("  GPU memory: not measured (no GPU here)")
    return "\n".join(lines)


def load_speed_report(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no speed report; run `ausil benchmark-speed --output {path}` first")
    return json.loads(path.read_text(encoding="utf-8"))
