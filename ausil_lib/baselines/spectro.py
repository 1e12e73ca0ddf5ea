"""Spectro Slides and Spectro Tiles: the two spectrogram baselines AuSiL compares against.

Implements docs/spectro-baselines.md (Ouali, Dumouchel, Gupta; AuSiL refs [14] and [16]).
Both methods share one front end (linear-magnitude STFT band, one 160 x 50 window per frame, K nested
binary images by mean pruning) so that only the slides/tiles step differs between them.  Matching is
exhaustive nearest-neighbour labelling inside one pair of videos followed by an offset vote histogram.

Fingerprints are computed with numpy on the CPU in float64 so that stored files do not depend on the
machine; only the labelling runs on `cfg.device` (torch), in float32 arithmetic that is integer-exact for
these sizes (sums of at most a few tens of thousands of small integers), so CPU and CUDA give the same labels.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Mapping

import numpy as np
import scipy.signal
import torch

from ..audio.decode import load_audio
from ..core.config import SpectroConfig, resolve_device
from ..core.formats import atomic_write
from ..core.numerics import apply_torch_settings
from ..core.provenance import code_digest
from ..features.extraction import feature_path
from ..retrieval.method import index_videos

apply_torch_settings()  # torch's threads and cuDNN settings, before any tensor work (core/numerics.py)

METHODS = ("slides", "tiles")
DB_PER_AMPLITUDE_DECADE = 20.0  # dBFS = 20 log10(amplitude): a unit definition, not a setting


@dataclass
class Fingerprints:
    """Per-frame fingerprints of one video for one method; row t starts at frame t (t x hop samples)."""

    method: str
    values: np.ndarray  # slides: (N, 78) uint16 counts; tiles: (N, 960) uint8 0/1 position matrix
    nonempty: np.ndarray  # (N,) bool; False for silent windows, which neither vote nor serve as neighbours
    settings: str  # fingerprint_key(cfg, method): the settings and code that produced them

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.values.ndim != 2 or self.nonempty.shape != (self.values.shape[0],):
            raise ValueError(f"fingerprint shapes disagree: values {self.values.shape}, mask {self.nonempty.shape}")

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_nonempty(self) -> int:
        return int(self.nonempty.sum())

    def to_npz(self, path: str | os.PathLike[str]) -> None:
        """Write atomically so an interrupted run never leaves a half file."""
        atomic_write(
            path,
            lambda fh: np.savez_compressed(
                fh,
                method=np.array(self.method),
                values=self.values,
                nonempty=self.nonempty,
                settings=np.array(self.settings),
            ),
        )

    @classmethod
    def from_npz(cls, path: str | os.PathLike[str]) -> Fingerprints:
        """Read a file written by `to_npz`; a damaged one raises ValueError naming it."""
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(str(data["method"]), data["values"], data["nonempty"].astype(bool), str(data["settings"]))
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a readable spectro fingerprint file ({exc})") from exc


@dataclass(frozen=True)
class Labels:
    """Nearest-neighbour links as (query frame, reference frame) pairs, one per vote."""

    query_frames: np.ndarray
    ref_frames: np.ndarray
    n_labelled: int  # fingerprints that found a neighbour
    n_tied: int  # of those, how many had several equally near neighbours


@dataclass(frozen=True)
class MatchResult:
    score: int  # S: votes of the best alignment (after the tau window)
    offset: int | None  # d*: reference frame aligned with query frame 0; None without votes
    n_query: int  # N: non-empty query fingerprints
    tie_share: float  # share of labels decided by a tie


def load_audio_16k(path: str | os.PathLike[str], cfg: SpectroConfig | None = None) -> np.ndarray:
    """Mono float32 audio at the fingerprint sample rate; AudioError from the decoder propagates."""
    return load_audio(path, sample_rate=(cfg or SpectroConfig()).sample_rate)


def spectrogram(audio: np.ndarray, cfg: SpectroConfig) -> np.ndarray:
    """Band-limited linear magnitude (rows, T) in float64; no centring, short input zero-padded to one frame."""
    x = np.asarray(audio, dtype=np.float64)
    if x.size < cfg.n_fft:
        x = np.pad(x, (0, cfg.n_fft - x.size))
    frames = np.lib.stride_tricks.sliding_window_view(x, cfg.n_fft)[:: cfg.hop]
    window = scipy.signal.get_window(cfg.window, cfg.n_fft)  # periodic (DFT-even) form
    spec = np.fft.rfft(frames * window, axis=1)[:, cfg.band_lo : cfg.band_hi + 1]
    return np.ascontiguousarray(np.abs(spec).T)


def silent_windows(audio: np.ndarray, n_windows: int, cfg: SpectroConfig) -> np.ndarray:
    """True where the RMS of the samples a fingerprint window covers is below the silence floor."""
    if cfg.silence_dbfs is None:
        return np.zeros(n_windows, bool)
    x = np.asarray(audio, dtype=np.float64)
    energy = np.concatenate([[0.0], np.cumsum(x * x)])
    starts = np.minimum(np.arange(n_windows) * cfg.hop, x.size)
    ends = np.minimum(starts + (cfg.frames_per_fp - 1) * cfg.hop + cfg.n_fft, x.size)
    counts = np.maximum(ends - starts, 1)  # no samples at all counts as silent
    rms = np.sqrt(np.maximum(energy[ends] - energy[starts], 0.0) / counts)
    return rms < 10.0 ** (cfg.silence_dbfs / DB_PER_AMPLITUDE_DECADE)


def binary_images(windows: np.ndarray, cfg: SpectroConfig) -> np.ndarray:
    """(n, rows, W) windows -> (n, K, rows, W) nested bool images, each pruning more of the spectrum."""
    flat = np.asarray(windows, dtype=np.float64).reshape(windows.shape[0], -1)
    keep = np.ones(flat.shape, bool)
    mean = flat.mean(axis=1)
    images = []
    for k in range(cfg.n_images):
        if cfg.threshold_rule == "iterative":
            count = np.count_nonzero(keep, axis=1)
            total = np.where(keep, flat, 0.0).sum(axis=1)
            theta = np.full(count.shape, np.inf)  # nothing left to average: the image is empty
            np.divide(total, count, out=theta, where=count > 0)
        else:
            theta = cfg.multiples[k] * mean
        # the "&" only guards nesting against rounding; mathematically S > theta_k already lies in B_(k-1)
        keep = keep & (flat > theta[:, None])
        images.append(keep)
    return np.stack(images, axis=1).reshape(windows.shape[0], cfg.n_images, *windows.shape[1:])


def slides(images: np.ndarray, cfg: SpectroConfig) -> np.ndarray:
    """(n, K, rows, W) images -> (n, K (H + V)) uint16 counts: per image H horizontal then V vertical slides."""
    n, k, rows, width = images.shape
    cells = images.view(np.uint8)
    horizontal = cells.sum(axis=3, dtype=np.uint16).reshape(n, k, cfg.h_slides, -1).sum(axis=3, dtype=np.uint16)
    vertical = cells.sum(axis=2, dtype=np.uint16).reshape(n, k, cfg.v_slides, -1).sum(axis=3, dtype=np.uint16)
    return np.concatenate([horizontal, vertical], axis=2).reshape(n, -1)


def tile_sums(images: np.ndarray, cfg: SpectroConfig) -> np.ndarray:
    """(n, K, rows, W) images -> (n, K, tiles) sums; tile p = (time tiles) * a + b, a = frequency tile."""
    n, k, rows, width = images.shape
    cells = images.view(np.uint8).reshape(n, k, rows // cfg.tile, cfg.tile, width)
    bands = cells.sum(axis=3, dtype=np.uint16)  # summing a middle axis first is the fast order in numpy
    tiled = bands.reshape(n, k, rows // cfg.tile, width // cfg.tile, cfg.tile).sum(axis=4, dtype=np.uint16)
    return tiled.reshape(n, k, -1)


def tiles(images: np.ndarray, cfg: SpectroConfig) -> np.ndarray:
    """(n, K, rows, W) images -> (n, K tiles) uint8 0/1: the top kept_tiles non-empty tiles of each image."""
    sums = tile_sums(images, cfg)
    n_tiles = sums.shape[2]
    # unique keys ordering by larger sum first, then by smaller index
    key = sums.astype(np.int64) * n_tiles + (n_tiles - 1 - np.arange(n_tiles))
    top = np.argpartition(-key, cfg.kept_tiles - 1, axis=2)[:, :, : cfg.kept_tiles]
    out = np.zeros(sums.shape, np.uint8)
    np.put_along_axis(out, top, (np.take_along_axis(sums, top, axis=2) > 0).astype(np.uint8), axis=2)
    return out.reshape(sums.shape[0], -1)


def fingerprint(audio: np.ndarray, cfg: SpectroConfig, method: str) -> Fingerprints:
    """One fingerprint per spectrogram frame (or one for a clip shorter than a window).

    The front end runs in numpy, single-threaded and in float64, so stored fingerprints are the same
    on every machine.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"expected mono 1-D audio, got shape {audio.shape}")
    spec = spectrogram(audio, cfg)
    if spec.shape[1] < cfg.frames_per_fp:
        spec = np.pad(spec, ((0, 0), (0, cfg.frames_per_fp - spec.shape[1])))
    windows = np.lib.stride_tricks.sliding_window_view(spec, cfg.frames_per_fp, axis=1).transpose(1, 0, 2)
    encode, dtype = (slides, np.uint16) if method == "slides" else (tiles, np.uint8)
    values = np.concatenate(
        [
            encode(binary_images(windows[i : i + cfg.window_batch], cfg), cfg).astype(dtype)
            for i in range(0, windows.shape[0], cfg.window_batch)
        ]
    )
    nonempty = ~silent_windows(audio, values.shape[0], cfg)
    values[~nonempty] = 0
    return Fingerprints(method, values, nonempty, fingerprint_key(cfg, method))


def _neighbours(
    src: torch.Tensor, tgt: torch.Tensor, method: str, cfg: SpectroConfig
) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Exhaustive nearest neighbours of src rows among tgt rows: (src row, tgt row) links, labelled, tied."""
    src_rows, tgt_rows, n_labelled, n_tied = [], [], 0, 0
    tgt_t = tgt.T.contiguous()
    for start in range(0, src.shape[0], cfg.batch_size):
        block = src[start : start + cfg.batch_size]
        # higher is nearer: minus L1 for slides, intersection size for tiles; both integer-exact in float32
        closeness = -torch.cdist(block, tgt, p=1) if method == "slides" else block @ tgt_t
        best, first = closeness.max(dim=1)  # torch returns the first maximal index: ties -> smallest j
        labelled = torch.ones_like(best, dtype=torch.bool) if method == "slides" else best > 0
        tied = (closeness == best[:, None]) & labelled[:, None]
        n_labelled += int(labelled.sum())
        n_tied += int((torch.count_nonzero(tied, dim=1) > 1).sum())
        if cfg.tie_votes == "first":
            rows = torch.nonzero(labelled).squeeze(1)
            cols = first[rows]
        else:
            rows, cols = torch.nonzero(tied, as_tuple=True)
        src_rows.append(rows + start)
        tgt_rows.append(cols)
    return torch.cat(src_rows), torch.cat(tgt_rows), n_labelled, n_tied


def nearest_labels(query: Fingerprints, ref: Fingerprints, cfg: SpectroConfig) -> Labels:
    """Label every non-empty fingerprint of one side with its nearest of the other side (cfg.direction)."""
    if query.method != ref.method or query.settings != ref.settings:
        raise ValueError("query and reference fingerprints were made with different methods or settings")
    q_frames = np.flatnonzero(query.nonempty)
    r_frames = np.flatnonzero(ref.nonempty & (np.arange(len(ref)) % cfg.ref_stride == 0))
    if q_frames.size == 0 or r_frames.size == 0:
        empty = np.zeros(0, np.int64)
        return Labels(empty, empty, 0, 0)
    device = resolve_device(cfg.device)
    # float32 holds both methods' sums exactly. Not torch's int8 matmul: about 5x faster than float32 on an
    # Intel Xeon, 13x slower on an AMD EPYC (docs/reproducibility.md, twelfth session)
    q_vals = torch.from_numpy(query.values[q_frames]).to(device=device, dtype=torch.float32)
    r_vals = torch.from_numpy(ref.values[r_frames]).to(device=device, dtype=torch.float32)
    if cfg.direction == "query_to_ref":
        q_rows, r_rows, n_labelled, n_tied = _neighbours(q_vals, r_vals, query.method, cfg)
    else:
        r_rows, q_rows, n_labelled, n_tied = _neighbours(r_vals, q_vals, query.method, cfg)
    return Labels(q_frames[q_rows.cpu().numpy()], r_frames[r_rows.cpu().numpy()], n_labelled, n_tied)


def offset_votes(labels: Labels, n_query_frames: int, n_ref_frames: int, tau: int) -> np.ndarray:
    """Votes C(d) for offsets d = -(n_query_frames - 1) .. n_ref_frames - 1, summed over |e| <= tau."""
    size = n_query_frames + n_ref_frames - 1
    counts = np.bincount(labels.ref_frames - labels.query_frames + n_query_frames - 1, minlength=size)
    if tau == 0:
        return counts
    cumulative = np.concatenate([[0], np.cumsum(counts)])
    d = np.arange(size)
    return cumulative[np.minimum(d + tau + 1, size)] - cumulative[np.maximum(d - tau, 0)]


def match(query: Fingerprints, ref: Fingerprints, cfg: SpectroConfig) -> MatchResult:
    """Score a query against one reference: the vote count of the best alignment, and that alignment."""
    labels = nearest_labels(query, ref, cfg)
    tie_share = labels.n_tied / labels.n_labelled if labels.n_labelled else 0.0
    if labels.query_frames.size == 0:
        return MatchResult(0, None, query.n_nonempty, tie_share)
    votes = offset_votes(labels, len(query), len(ref), cfg.tau)
    best = int(votes.argmax())  # first maximum: the smallest maximising offset
    return MatchResult(int(votes[best]), best - (len(query) - 1), query.n_nonempty, tie_share)


#: what a stored fingerprint's values depend on beside its settings: the cache outlives an edit of this code
FINGERPRINT_CODE = ("baselines/spectro.py", "audio/decode.py", "core/numerics.py")


def fingerprint_key(cfg: SpectroConfig, method: str) -> str:
    """The settings and the code a fingerprint was made with: a cached one is reused only under the same key."""
    code = code_digest(FINGERPRINT_CODE, ("numpy", "scipy", "imageio-ffmpeg"))
    return f"{cfg.frontend_key(method)};code={code[:16]}"


def cached_fingerprints(
    item: tuple[str, str], method: str, cfg: SpectroConfig, cache_dir: str | os.PathLike[str]
) -> tuple[Fingerprints, float]:
    """One (video id, path) item's fingerprints from `cache_dir` when they were made with these settings,
    else made and stored there; with the seconds spent making them (0 for a cached file). The per-file
    work of indexing, which `SpectroMethod.index` runs in worker processes."""
    vid, path = item
    cached = feature_path(cache_dir, vid)
    if cached.is_file():
        fp = Fingerprints.from_npz(cached)
        if fp.settings == fingerprint_key(cfg, method):
            return fp, 0.0
    start = time.perf_counter()
    fp = fingerprint(load_audio_16k(path, cfg), cfg, method)
    seconds = time.perf_counter() - start
    fp.to_npz(cached)
    return fp, seconds


class SpectroMethod:
    """Spectro Slides or Tiles behind the retrieval runner's interface; fingerprints cached per video."""

    def __init__(self, method: str, cfg: SpectroConfig, cache_dir: str | os.PathLike[str]) -> None:
        if method not in ("slides", "tiles"):
            raise ValueError(f"method must be slides or tiles, got {method!r}")
        self.name = f"spectro-{method}"
        self.method, self.cfg = method, cfg
        self.cache_dir = Path(cache_dir) / method
        self.label = (
            f"Spectro {method.capitalize()} (re-implementation; direction {cfg.direction}, "
            f"tie_votes {cfg.tie_votes}, tau {cfg.tau}, ref_stride {cfg.ref_stride})"
        )
        self.db: dict[str, Fingerprints] = {}
        # fingerprint_s adds up the worker processes' seconds when several fingerprint the database
        self.timings: dict[str, float] = {"fingerprint_s": 0.0, "match_s": 0.0, "workers": cfg.workers}

    def fingerprints(self, vid: str, path: str) -> Fingerprints:
        fp, seconds = cached_fingerprints((vid, path), self.method, self.cfg, self.cache_dir)
        self.timings["fingerprint_s"] += seconds
        return fp

    def index(self, database: Mapping[str, str], progress: bool = True) -> dict[str, str]:
        """Fingerprint in `cfg.workers` processes; the index is filled here, in the videos' order."""
        prepare = partial(cached_fingerprints, method=self.method, cfg=self.cfg, cache_dir=self.cache_dir)
        return index_videos(self.name, database, self._add, progress, prepare, self.cfg.workers)

    def _add(self, vid: str, path: str, prepared: tuple[Fingerprints, float]) -> str | None:
        fp, seconds = prepared
        self.timings["fingerprint_s"] += seconds
        if not fp.nonempty.any():
            return "no non-empty fingerprint (silent or too short)"
        self.db[vid] = fp
        return None

    def query(self, query_id: str, path: str) -> dict[str, float]:
        q = self.fingerprints(query_id, path)
        start = time.perf_counter()
        out = {vid: float(match(q, ref, self.cfg).score) for vid, ref in self.db.items()}
        self.timings["match_s"] += time.perf_counter() - start
        return out
