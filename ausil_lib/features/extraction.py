"""Video files -> AuSiL segment descriptors on disk, resumable, with a failure report.

Feature file format (one per video, `<output_dir>/<safe id>.npz`, written atomically):
  descriptors  float32 (n_segments, 2528), rows in time order, each the concatenation of
               12 L2-normalised MAC vectors (so its norm is sqrt(12)); with a partner network
               (params `backbone.partner`) each row is both networks' halves (features/join.py)
  meta         JSON string: video id, source path, backbone (source, label, fingerprint),
               time step and frame counts, audio duration, format version
A file is reused on a later run only when its meta matches the current backbone, front end and code.
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
from typing import TYPE_CHECKING, Any, Iterator, Mapping, NamedTuple
from urllib.parse import quote

import numpy as np
import torch
from tqdm import tqdm

from ..audio.decode import AudioError, ffmpeg_build, load_audio
from ..core.config import AudioConfig, ExtractConfig, Params, resolve_device
from ..core.formats import atomic_write, atomic_write_text
from ..core.numerics import apply_torch_settings
from ..core.provenance import code_digest
from ..models.backbone import BackboneInfo, MacExtractor, load_backbone
from .join import join_descriptors
from .logmel import FeatureConfig, SegmentFrontEnd

if TYPE_CHECKING:
    from ..models.musicnn import Partner

apply_torch_settings()  # torch's threads and cuDNN settings, before any tensor work (core/numerics.py)

FORMAT_VERSION = 1
FAILURES_FILE = "failures.tsv"
#: the modules a descriptor's values can depend on: extraction's imports, minus the packages' __init__
#: files (a test keeps the two equal). An edit of any of them makes stored descriptors stale.
DESCRIPTOR_CODE = (
    "audio/decode.py",
    "core/config.py",
    "core/download.py",
    "core/formats.py",
    "core/numerics.py",
    "core/provenance.py",
    "features/extraction.py",
    "features/join.py",
    "features/logmel.py",
    "features/store.py",
    "models/backbone.py",
    "models/musicnn.py",
    "models/tf_checkpoint.py",
    "models/weights.py",
)
DESCRIPTOR_PACKAGES = ("torch", "numpy", "imageio-ffmpeg")


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


def run_signature(cfg: FeatureConfig, backbone: BackboneInfo, ffmpeg: str | None = None) -> dict[str, Any]:
    """What must match for a stored feature file to be reused: the settings, and the code, libraries and
    ffmpeg build that turn them into numbers (an edit of the front end extracts again)."""
    return {
        "format_version": FORMAT_VERSION,
        "code": code_digest(DESCRIPTOR_CODE, DESCRIPTOR_PACKAGES, [f"ffmpeg {ffmpeg_build(ffmpeg)}"]),
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


def stored_time_step_ms(features: Path, default: int | None = None) -> int:
    """The step the descriptors in `features` were cut at, as their first file's signature records it
    (the pipeline's extractor records it; files without one, or no files, give `default`, else an error)."""
    first = next(iter(sorted(features.glob("*.npz"))), None)
    step = load_features(first).meta.get("signature", {}).get("time_step_ms") if first else None
    if step is None and default is None:
        raise ValueError(f"{features}: {'no feature files' if first is None else f'{first.name} records no time step'}")
    return int(default if step is None else step)


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


class Prepared(NamedTuple):
    """A decoded file, ready for the networks: the backbone's segments, the audio's length, and the
    partner network's own audio (None without a partner)."""

    segments: torch.Tensor
    duration: float
    partner_audio: np.ndarray | None = None


def side_by_side(backbone: BackboneInfo, partner: Partner) -> BackboneInfo:
    """The joined descriptors' identity: the backbone's source (so controls stay controls), both labels, and
    a fingerprint of both, so neither network's descriptors alone are reused for the joined ones."""
    return BackboneInfo(
        backbone.source,
        f"{backbone.label}, side by side with {partner.label}",
        f"{backbone.fingerprint}+{partner.fingerprint}",
    )


def partner_from_params(params: Params, cfg: FeatureConfig, device: torch.device) -> Partner | None:
    """musicnn's network that params `backbone.partner` puts beside the backbone, cutting the same windows."""
    bb = params.backbone
    if bb.partner == "none":
        return None
    from ..models.musicnn import Partner, checkpoint  # torchaudio and the checkpoint reader, only when needed

    return Partner(
        bb.partner,
        checkpoint(bb.partner, Path(bb.partner_cache)),
        cfg.window_s,
        cfg.time_step_ms / 1000,
        device,
        ffmpeg=params.audio.ffmpeg,
        timeout_s=params.audio.decode_timeout_s,
    )


class Extractor:
    """Decode -> log-mel -> segments -> MAC descriptors for one file at a time (beside them, the partner
    network's descriptors of the same windows, when there is one)."""

    def __init__(
        self,
        model_extractor: MacExtractor,
        backbone: BackboneInfo,
        cfg: FeatureConfig,
        audio: AudioConfig = AudioConfig(),
        batch_size: int = ExtractConfig.batch_size,
        partner: Partner | None = None,
    ) -> None:
        self.mac = model_extractor
        self.backbone = backbone if partner is None else side_by_side(backbone, partner)
        self.cfg = cfg
        self.audio = audio
        self.batch_size = batch_size
        self.partner = partner
        # the front end runs in decode threads; keep it on the CPU unless the backbone is on a GPU
        self.front_end = SegmentFrontEnd(cfg, model_extractor.device)
        self.signature = run_signature(cfg, self.backbone, audio.ffmpeg)

    @classmethod
    def from_params(cls, params: Params, time_step_ms: int | None = None) -> Extractor:
        """The extractor params.yaml describes: backbone source and partner, device, front end, batch size."""
        model, info = load_backbone(params)
        bb = params.backbone
        device = resolve_device(params.device)
        mac = MacExtractor(model, device, fuse_bn=bb.fuse_bn, channels_last=bb.channels_last)
        cfg = FeatureConfig.from_params(params, time_step_ms)
        return cls(mac, info, cfg, params.audio, params.extract.batch_size, partner_from_params(params, cfg, device))

    def decode(self, path: str | os.PathLike[str]) -> np.ndarray:
        return load_audio(
            path,
            sample_rate=self.cfg.sample_rate,
            ffmpeg=self.audio.ffmpeg,
            min_duration_s=self.audio.min_duration_s,
            timeout_s=self.audio.decode_timeout_s,
        )

    def prepare(self, path: str | os.PathLike[str]) -> Prepared:
        """Decode and segment one file (runs in a worker thread, ahead of the networks)."""
        audio = self.decode(path)
        partner_audio = self.partner.decode(str(path)) if self.partner is not None else None
        return Prepared(self.front_end(audio), audio.size / self.cfg.sample_rate, partner_audio)

    def descriptors(self, video_id: str, prepared: Prepared) -> np.ndarray:
        """The backbone's segment descriptors, joined with the partner's where there is one."""
        desc = self.mac.extract(prepared.segments, self.batch_size)
        if self.partner is None:
            return desc
        if prepared.partner_audio is None:
            raise ValueError(f"{video_id}: decoded without the audio the partner network ({self.partner.model}) needs")
        return join_descriptors(desc, self.partner.describe(prepared.partner_audio), video_id, self.cfg.time_step_ms)

    def store(self, video_id: str, path: str, prepared: Prepared, output_dir: str | os.PathLike[str]) -> np.ndarray:
        """Descriptors of a decoded file, written to its feature file."""
        desc = self.descriptors(video_id, prepared)
        meta = self.meta(video_id, path, prepared.duration, desc.shape[0])
        save_features(feature_path(output_dir, video_id), desc, meta)
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
                try:
                    self.store(vid, path, result, output_dir)
                except (ValueError, RuntimeError) as exc:  # a file the networks cannot describe (a partner's
                    # segment count that cannot be joined, its network failing): reported, the run goes on
                    report.failed[vid] = (path, f"{type(exc).__name__}: {exc}")
                else:
                    report.extracted.append(vid)
                    report.audio_seconds += result.duration
            bar.update(1)
            bar.set_postfix(failed=len(report.failed))
        bar.close()
        report.wall_seconds = time.perf_counter() - start
        write_failures(output_dir / FAILURES_FILE, report.failed)
        return report

    def _prepared(self, todo: list[tuple[str, str]], workers: int) -> Iterator[tuple[str, str, Prepared | Exception]]:
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
    def _resolve(vid: str, path: str, fut: Future) -> tuple[str, str, Prepared | Exception]:
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
