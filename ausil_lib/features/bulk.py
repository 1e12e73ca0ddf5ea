"""Extraction at corpus scale: decoding in worker processes, large backbone batches, a sharded store.

Extractor.run describes one file per backbone call, which leaves a GPU mostly idle on short
videos. Here DataLoader worker processes decode ahead (ffmpeg dominates the CPU time), the main
process turns audio into segments, and the segments of consecutive videos are packed into
batches of `batch_segments` rows: several short videos share one batch and a long one spans
several. Rows are split back per video in order, so the descriptors equal the per-video path.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..audio.decode import AudioError
from ..core.config import AudioConfig
from ..core.numerics import apply_torch_settings
from .extraction import FAILURES_FILE, Extractor, ExtractReport, write_failures
from .logmel import FeatureConfig
from .store import FeatureStore, StoreError

apply_torch_settings()  # torch's threads and cuDNN settings, before any tensor work (core/numerics.py)

# what a decode worker hands over: id, path, audio (None on failure), failure reason (None on success)
Decoded = tuple[str, str, np.ndarray | None, str | None]


@dataclass(frozen=True)
class AudioDecoder:
    """The part of an Extractor that decoding needs, without the network.

    It is what DataLoader workers receive (pickled when they are spawned), so it holds plain data
    only; `decode` is Extractor.decode itself, which reads nothing but `cfg` and `audio`,
    so both paths decode a file identically.
    """

    cfg: FeatureConfig
    audio: AudioConfig

    decode = Extractor.decode

    @classmethod
    def of(cls, extractor: Extractor) -> AudioDecoder:
        return cls(extractor.cfg, extractor.audio)


class DecodeDataset(Dataset):
    """(id, path) pairs -> decoded audio; a bad file becomes a failure item, never an exception,
    so one broken video neither kills a worker nor the run."""

    def __init__(self, items: list[tuple[str, str]], decoder: AudioDecoder) -> None:
        self.items = items
        self.decoder = decoder

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Decoded:
        vid, path = self.items[index]
        try:
            return vid, path, self.decoder.decode(path), None
        except AudioError as exc:
            return vid, path, None, exc.reason
        except Exception as exc:  # noqa: BLE001 - every failure is reported per file, the run goes on
            return vid, path, None, f"{type(exc).__name__}: {exc}"


def pass_through(item: Decoded) -> Decoded:
    """Collate that keeps the item as is (the default would turn the audio into a tensor)."""
    return item


@dataclass
class _Job:
    """A video whose segments are (partly) waiting for the backbone."""

    vid: str
    path: str
    duration: float
    segments: torch.Tensor
    sent: int = 0
    parts: list[np.ndarray] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return self.segments.shape[0] - self.sent


class SegmentPacker:
    """Packs the segments of consecutive videos into backbone batches of `batch_segments` rows
    and hands back each video, in input order, once all its rows are described."""

    def __init__(self, extractor: Extractor, batch_segments: int, amp: bool) -> None:
        if batch_segments < 1:
            raise ValueError(f"batch_segments must be at least 1, got {batch_segments}")
        self.mac = extractor.mac
        self.batch_segments = batch_segments
        self.amp = amp and self.mac.device.type == "cuda"
        self.queue: deque[_Job] = deque()
        self.queued_rows = 0

    def push(self, job: _Job) -> list[_Job]:
        """Queue a video; run every full batch now pending; the videos that are complete."""
        self.queue.append(job)
        self.queued_rows += job.remaining
        done: list[_Job] = []
        while self.queued_rows >= self.batch_segments:
            done += self._run_batch()
        return done

    def drain(self) -> list[_Job]:
        """Describe what is left (a last, smaller batch)."""
        done: list[_Job] = []
        while self.queued_rows:
            done += self._run_batch()
        return done

    def _run_batch(self) -> list[_Job]:
        chunks, takers = [], []
        room = self.batch_segments
        for job in self.queue:
            if room == 0:
                break
            take = min(room, job.remaining)
            chunks.append(job.segments[job.sent : job.sent + take])
            takers.append((job, take))
            job.sent += take
            room -= take
        with torch.autocast("cuda", dtype=torch.float16) if self.amp else nullcontext():
            rows = self.mac.extract(torch.cat(chunks), batch_size=self.batch_segments)
        start = 0
        for job, take in takers:
            job.parts.append(rows[start : start + take])
            start += take
        self.queued_rows -= start
        done = []
        while self.queue and self.queue[0].remaining == 0:
            done.append(self.queue.popleft())
        return done


def extract_to_store(
    extractor: Extractor,
    videos: Mapping[str, str],
    store: FeatureStore,
    *,
    workers: int = 2,
    batch_segments: int = 2048,
    amp: bool = False,
    progress: bool = True,
    failures_path: Path | None = None,
) -> ExtractReport:
    """Describe every video not yet in `store`; bad files are reported, never fatal.

    `workers` decode processes (0: decode in this process). `amp` runs the backbone in float16
    autocast on a CUDA device (descriptors are returned in float32); on a CPU it is ignored,
    because CPU autocast would use bfloat16, slower and less exact than float32 there. The store is
    flushed on return and when an exception escapes (KeyboardInterrupt included), so a rerun skips
    the videos already stored. Failures go to `failures_path` (default: failures.tsv in the store).
    """
    if extractor.partner is not None:
        raise ValueError(
            f"{store.root}: the sharded-store extraction runs the backbone alone; params backbone.partner "
            f"({extractor.partner.model}) runs in the per-file extraction only (`ausil extract` without --store)"
        )
    if store.readonly:
        raise StoreError(store.root, "opened read-only, cannot extract into it")
    store.require_signature(extractor.signature)
    if workers < 0:
        raise ValueError(f"workers must be 0 or more, got {workers}")
    report = ExtractReport()
    todo = []
    for vid, path in videos.items():
        if vid in store:
            report.skipped.append(vid)
        else:
            todo.append((vid, str(path)))
    packer = SegmentPacker(extractor, batch_segments, amp)
    loader = DataLoader(
        DecodeDataset(todo, AudioDecoder.of(extractor)),
        batch_size=None,
        num_workers=workers,
        collate_fn=pass_through,
        persistent_workers=False,
    )
    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc="extract", unit="video", disable=not progress, file=sys.stderr)
    bar.set_postfix(failed=0)

    def finish(jobs: list[_Job]) -> None:
        for job in jobs:
            desc = np.concatenate(job.parts)
            store.add(job.vid, desc, extractor.meta(job.vid, job.path, job.duration, desc.shape[0]))
            report.extracted.append(job.vid)
            report.audio_seconds += job.duration
        bar.update(len(jobs))

    try:
        for vid, path, audio, reason in loader:
            if audio is None:
                report.failed[vid] = (path, str(reason))
                bar.update(1)
                bar.set_postfix(failed=len(report.failed))
                continue
            duration = audio.size / extractor.cfg.sample_rate
            finish(packer.push(_Job(vid, path, duration, extractor.front_end(audio))))
        finish(packer.drain())
    finally:
        bar.close()
        store.flush()
    report.wall_seconds = time.perf_counter() - start
    write_failures(failures_path or store.root / FAILURES_FILE, report.failed)
    return report
