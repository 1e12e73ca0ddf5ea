"""Video files -> AuSiL segment descriptors on disk, resumable, with a failure report.

Feature file format (one per video, `<output_dir>/<safe id>.npz`, written atomically):
  descriptors  float32 (n_segments, 2528), rows in time order, each the concatenation of
               12 L2-normalised MAC vectors (so its norm is sqrt(12))
  meta         JSON string: video id, source path, backbone (source, label, fingerprint),
               time step and frame counts, audio duration, format version
A file is reused on a later run only when its meta matches the current backbone and front end.
Failures go to `<output_dir>/failures.tsv` (id, path, reason), rewritten after every run.
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping
from urllib.parse import quote

import numpy as np
import torch
from tqdm import tqdm

from ..audio.decode import AudioError, load_audio
from ..core.config import AudioConfig, ExtractConfig, Params, resolve_device
from ..core.formats import atomic_write, atomic_write_text
from ..core.numerics import apply_torch_settings
from ..models.backbone import BackboneInfo, MacExtractor, load_backbone
from .logmel import FeatureConfig, SegmentFrontEnd

apply_torch_settings()  # torch's threads and cuDNN settings, before any tensor work (core/numerics.py)

FORMAT_VERSION = 1
FAILURES_FILE = "failures.tsv"


def feature_path(output_dir: str | os.PathLike[str], video_id: str) -> Path:
    """File name for a video id; ids are percent-encoded so any id is a safe single file name."""
    if not video_id:
        raise ValueError("empty video id")
    name = quote(video_id, safe="-_.")
    if name.startswith("."):
        name = "%2E" + name[1:]
    return Path(output_dir) / f"{name}.npz"


@dataclass(frozen=True)
class VideoFeatures:
    video_id: str
    descriptors: np.ndarray
    meta: dict[str, Any]


def save_features(path: Path, descriptors: np.ndarray, meta: Mapping[str, Any]) -> None:
    atomic_write(
        path,
        lambda fh: np.savez(
            fh, descriptors=descriptors.astype(np.float32), meta=np.array(json.dumps(dict(meta), sort_keys=True))
        ),
    )


def load_features(path: str | os.PathLike[str]) -> VideoFeatures:
    """Read a feature file; a damaged one raises ValueError naming it."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            desc = data["descriptors"]
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable ausil feature file ({exc})") from exc
    return VideoFeatures(meta["video_id"], desc, meta)


def run_signature(cfg: FeatureConfig, backbone: BackboneInfo) -> dict[str, Any]:
    """What must match for a stored feature file to be reused."""
    return {
        "format_version": FORMAT_VERSION,
        "backbone": backbone.fingerprint,
        "sample_rate": cfg.sample_rate,
        "n_mels": cfg.n_mels,
        "n_fft": cfg.n_fft,
        "hop_length": cfg.hop_length,
        "pad_mode": cfg.pad_mode,
        "top_db": cfg.top_db,
        "time_step_ms": cfg.time_step_ms,
        "window_frames": cfg.window_frames,
        "step_frames": cfg.step_frames,
        "segment_padding": cfg.segment_padding,
    }


def is_current(path: Path, signature: Mapping[str, Any]) -> bool:
    if not path.is_file():
        return False
    try:
        meta = load_features(path).meta
    except ValueError:
        return False
    return all(meta.get("signature", {}).get(k) == v for k, v in signature.items())


@dataclass
class ExtractReport:
    extracted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (path, reason)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    def summary(self) -> str:
        speed = (
            f", {self.audio_seconds / self.wall_seconds:.0f}x real time"
            if self.wall_seconds > 0 and self.audio_seconds > 0
            else ""
        )
        return f"{len(self.extracted)} extracted, {len(self.skipped)} already done, {len(self.failed)} failed{speed}"


class Extractor:
    """Decode -> log-mel -> segments -> MAC descriptors for one file at a time."""

    def __init__(
        self,
        model_extractor: MacExtractor,
        backbone: BackboneInfo,
        cfg: FeatureConfig,
        audio: AudioConfig = AudioConfig(),
        batch_size: int = ExtractConfig.batch_size,
    ) -> None:
        self.mac = model_extractor
        self.backbone = backbone
        self.cfg = cfg
        self.audio = audio
        self.batch_size = batch_size
        # the front end runs in decode threads; keep it on the CPU unless the backbone is on a GPU
        self.front_end = SegmentFrontEnd(cfg, model_extractor.device)
        self.signature = run_signature(cfg, backbone)

    @classmethod
    def from_params(cls, params: Params, time_step_ms: int | None = None) -> Extractor:
        """The extractor params.yaml describes: backbone source, device, front end, batch size."""
        model, info = load_backbone(params)
        bb = params.backbone
        mac = MacExtractor(model, resolve_device(params.device), fuse_bn=bb.fuse_bn, channels_last=bb.channels_last)
        return cls(mac, info, FeatureConfig.from_params(params, time_step_ms), params.audio, params.extract.batch_size)

    def decode(self, path: str | os.PathLike[str]) -> np.ndarray:
        return load_audio(
            path,
            sample_rate=self.cfg.sample_rate,
            ffmpeg=self.audio.ffmpeg,
            min_duration_s=self.audio.min_duration_s,
            timeout_s=self.audio.decode_timeout_s,
        )

    def prepare(self, path: str | os.PathLike[str]) -> tuple[torch.Tensor, float]:
        """Decode and segment one file (runs in a worker thread, ahead of the backbone)."""
        audio = self.decode(path)
        return self.front_end(audio), audio.size / self.cfg.sample_rate

    def descriptors(self, segments: torch.Tensor) -> np.ndarray:
        return self.mac.extract(segments, self.batch_size)

    def store(
        self, video_id: str, path: str, prepared: tuple[torch.Tensor, float], output_dir: str | os.PathLike[str]
    ) -> np.ndarray:
        """Descriptors of a decoded file, written to its feature file."""
        segments, duration = prepared
        desc = self.descriptors(segments)
        save_features(feature_path(output_dir, video_id), desc, self.meta(video_id, path, duration, desc.shape[0]))
        return desc

    def extract_to(self, video_id: str, path: str, output_dir: str | os.PathLike[str]) -> np.ndarray:
        """Decode, describe and store one file now; AudioError for a bad file (no report is touched)."""
        return self.store(video_id, path, self.prepare(path), output_dir)

    def meta(self, video_id: str, path: str, duration: float, n_segments: int) -> dict[str, Any]:
        return {
            "video_id": video_id,
            "path": str(path),
            "duration_s": round(duration, 4),
            "n_segments": n_segments,
            "backbone": self.backbone.to_dict(),
            "signature": self.signature,
        }

    def run(
        self, videos: Mapping[str, str], output_dir: str | os.PathLike[str], workers: int = 2, progress: bool = True
    ) -> ExtractReport:
        """Extract every video not already done; bad files are reported, never fatal."""
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        report = ExtractReport()
        todo = []
        for vid, path in videos.items():
            if is_current(feature_path(output_dir, vid), self.signature):
                report.skipped.append(vid)
            else:
                todo.append((vid, path))
        start = time.perf_counter()
        bar = tqdm(total=len(todo), desc="extract", unit="video", disable=not progress, file=sys.stderr)
        for vid, path, result in self._prepared(todo, workers):
            if isinstance(result, Exception):
                report.failed[vid] = (
                    path,
                    str(result.reason) if isinstance(result, AudioError) else f"{type(result).__name__}: {result}",
                )
            else:
                self.store(vid, path, result, output_dir)
                report.extracted.append(vid)
                report.audio_seconds += result[1]
            bar.update(1)
            bar.set_postfix(failed=len(report.failed))
        bar.close()
        report.wall_seconds = time.perf_counter() - start
        write_failures(output_dir / FAILURES_FILE, report.failed)
        return report

    def _prepared(
        self, todo: list[tuple[str, str]], workers: int
    ) -> Iterator[tuple[str, str, tuple[torch.Tensor, float] | Exception]]:
        """Yield decoded files in input order while up to `workers` more decode in the background."""
        window = max(1, workers)
        with ThreadPoolExecutor(max_workers=window) as pool:
            pending: list[tuple[str, str, Future]] = []
            for vid, path in todo:
                pending.append((vid, path, pool.submit(self.prepare, path)))
                if len(pending) > window:
                    yield self._resolve(*pending.pop(0))
            for entry in pending:
                yield self._resolve(*entry)

    @staticmethod
    def _resolve(vid: str, path: str, fut: Future) -> tuple[str, str, tuple[torch.Tensor, float] | Exception]:
        try:
            return vid, path, fut.result()
        except Exception as exc:  # noqa: BLE001 - every failure is reported per file, the run goes on
            return vid, path, exc


def write_failures(path: Path, failed: Mapping[str, tuple[str, str]]) -> None:
    """One tab-separated line per failed video: id, path, reason (header line first)."""
    lines = ["video_id\tpath\treason"]
    lines += [f"{vid}\t{p}\t{reason}".replace("\n", " ") for vid, (p, reason) in sorted(failed.items())]
    atomic_write_text(path, "\n".join(lines) + "\n")


class FeatureDir:
    """A directory of per-video feature files, read through the same calls as a FeatureStore."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __contains__(self, video_id: object) -> bool:
        return isinstance(video_id, str) and bool(video_id) and feature_path(self.root, video_id).is_file()

    def get(self, video_id: str) -> np.ndarray:
        return load_features(feature_path(self.root, video_id)).descriptors

    def n_segments(self, video_id: str) -> int:
        return int(self.get(video_id).shape[0])


def open_features(root: str | os.PathLike[str]):
    """The descriptors under `root`, whichever layout wrote them: a sharded store (`ausil extract --store`,
    real datasets) or one file per video (the embedded corpus)."""
    from .store import HEADER_FILE, FeatureStore

    return FeatureStore(root, readonly=True) if (Path(root) / HEADER_FILE).is_file() else FeatureDir(root)
