"""The embedded benchmark: duplicate-audio video retrieval built from real recordings.

Every clip is a list of *pieces* (a recording, a source interval, a speed factor, a role) plus a
transformation chain, all written to a construction log.  Labels are computed from the log alone:
for a query whose segment is [a, b) of recording R,
  DA    the clip holds a content piece of R sharing at least `min_shared_s` of [a, b) (source time);
  JUNK  otherwise, the clip holds anything from R's variant group: music repeats itself, so such a
        clip is neither a clean positive nor a clean negative and is left out of that query's
        ranking (as the "junk" images of Revisited Oxford/Paris);
  negative otherwise.
Splits are made by variant group, so no source recording (or variant of one) crosses a split.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from ...audio.decode import encode, ffmpeg_build, load_audio
from ...audio.transforms import apply_chain
from ...core.config import SPLITS, CorpusConfig, CorpusSize, Params, plain
from ...core.download import sha256_file
from ...core.formats import atomic_write_json, write_annotations, write_ids, write_video_list
from ...core.labels import DA, JUNK, speed_copy_id
from ...core.provenance import code_digest
from .sources import Recording, load_manifest

#: Each encoder here gives the same bytes on a real CPU and on emulated ones (docs/reproducibility.md).
#: Not libopus: the same samples came out as other bytes on an Intel Xeon than on every emulated CPU, at
#: every SIMD level, so WebM carries Vorbis.
CODECS: dict[str, tuple[list[str], bool]] = {
    "mp4": (["-c:v", "libx264", "-threads", "1", "-preset", "ultrafast", "-c:a", "aac", "-b:a", "128k"], True),
    "webm": (["-c:v", "libvpx", "-threads", "1", "-c:a", "libvorbis", "-b:a", "96k"], True),
    "ogg": (["-c:a", "libvorbis", "-q:a", "4"], False),
    "mp3": (["-c:a", "libmp3lame", "-b:a", "160k"], False),
    "m4a": (["-c:a", "aac", "-b:a", "128k"], False),
    "flac": (["-c:a", "flac"], False),
    "wav": (["-c:a", "pcm_s16le"], False),
}
FADE_S = 0.05
TARGET_RMS = 0.1


@dataclass
class Piece:
    rec: str
    src_start: float
    src_end: float
    role: str = "content"  # content | mix
    speed: float = 1.0


@dataclass
class Clip:
    clip_id: str
    split: str
    role: str  # query | positive | distractor | speed
    case: str  # full, partial, embedded, transformed, hard:<kind>, distractor, speech, x<factor>
    fmt: str
    pieces: list[Piece]
    transforms: list[dict[str, Any]] = field(default_factory=list)
    query: str | None = None  # the query a positive or speed copy was made for
    duration_s: float = 0.0
    sha256: str = ""
    audio_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _seed(*parts: Any) -> int:
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:8], 16)


# ------------------------------------------------------------------ splits


def assign_splits(recordings: Sequence[Recording], fractions: Mapping[str, float], seed: int) -> dict[str, str]:
    """Group id -> split. Music and speech are split separately, each by variant group, seeded."""
    out: dict[str, str] = {}
    for kind in ("music", "speech"):
        groups = sorted({r.group for r in recordings if r.kind == kind}, key=lambda g: _seed(seed, "split", g))
        if not groups:
            continue
        counts = _split_counts(len(groups), fractions)
        it = iter(groups)
        for split in SPLITS:
            for _ in range(counts[split]):
                out[next(it)] = split
    return out


def _split_counts(n: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Counts per split summing to n; every split with a positive fraction is non-empty when n allows.

    A zero fraction keeps its split empty (the cross-corpus set has only `val`)."""
    used = [s for s in SPLITS if float(fractions[s]) > 0]
    counts = {s: int(np.floor(n * float(fractions[s]))) for s in SPLITS}
    if n >= len(used):
        for s in used:
            counts[s] = max(1, counts[s])
    order = sorted(used, key=lambda s: -float(fractions[s]))
    i = 0
    while sum(counts.values()) < n:
        counts[order[i % len(order)]] += 1
        i += 1
    while sum(counts.values()) > n:
        s = max(order, key=lambda k: counts[k])
        counts[s] -= 1
    return counts


# ------------------------------------------------------------------ planning


class Planner:
    """Draws the clips of one split: queries, their duplicates, distractors and speed copies."""

    def __init__(
        self,
        split: str,
        music: list[Recording],
        speech: list[Recording],
        cfg: CorpusConfig,
        size: CorpusSize,
        seed: int,
    ) -> None:
        self.split, self.music, self.speech, self.cfg, self.size = split, music, speech, cfg, size
        self.rng = np.random.default_rng(_seed(seed, "plan", split))
        self.by_id = {r.rec_id: r for r in music + speech}
        self.clips: list[Clip] = []
        self.segments: dict[str, list[tuple[float, float]]] = defaultdict(list)  # query segments per recording
        self.fmt_count = 0

    def next_format(self) -> str:
        """Alternate video and audio containers in the configured share, deterministically."""
        self.fmt_count += 1
        video = self.rng.random() < float(self.cfg.video_share)
        options = self.cfg.video_formats if video else self.cfg.audio_formats
        return str(options[int(self.rng.integers(len(options)))])

    def query_length(self, max_len: float) -> float:
        kind = "long" if self.rng.random() < float(self.cfg.long_query_share) else "short"
        lo, hi = getattr(self.cfg.query_lengths_s, kind)
        return float(min(self.rng.uniform(lo, hi), max_len))

    def plan(self) -> list[Clip]:
        qi = 0
        per_rec = self.size.queries_per_recording
        k = int(per_rec[self.split] if isinstance(per_rec, Mapping) else per_rec)
        for rec in self.music:
            zone = rec.duration_s / k
            for z in range(k):
                length = self.query_length(max(4.0, zone - 2.0))
                if length < 4.0:
                    continue
                start = z * zone + float(self.rng.uniform(0, max(0.0, zone - length)))
                qid = f"{self.split}_q{qi:03d}"
                qi += 1
                self.segments[rec.rec_id].append((start, start + length))
                self.clips.append(
                    Clip(
                        qid,
                        self.split,
                        "query",
                        "query",
                        self.next_format(),
                        [Piece(rec.rec_id, round(start, 3), round(start + length, 3))],
                    )
                )
                self.positives(qid, rec, start, start + length, qi)
        self.distractors()
        return self.clips

    def positives(self, qid: str, rec: Recording, a: float, b: float, qi: int) -> None:
        n = 0
        for case, count in plain(self.cfg.positives).items():
            for _ in range(count):
                self.clips.append(self.positive(f"{qid}_p{n}", qid, case, rec, a, b))
                n += 1
        hard_kinds = list(self.cfg.hard_cases)
        for h in range(self.size.hard_per_query):
            kind = hard_kinds[(qi + h) % len(hard_kinds)]
            self.clips.append(self.positive(f"{qid}_p{n}", qid, f"hard:{kind}", rec, a, b))
            n += 1

    def positive(self, cid: str, qid: str, case: str, rec: Recording, a: float, b: float) -> Clip:
        L = b - a
        transforms: list[dict[str, Any]] = []
        if case == "full":
            pieces = [Piece(rec.rec_id, a, b)]
        elif case == "partial":
            pieces = [self.partial(rec, a, b, overlap=float(self.rng.uniform(min(2.0, L), L)))]
        elif case == "embedded":
            o = float(self.rng.uniform(min(3.0, L), min(L, 10.0)))
            s = a + float(self.rng.uniform(0, L - o))
            pieces = [
                self.filler(rec, float(self.rng.uniform(2, 8))),
                Piece(rec.rec_id, s, s + o),
                self.filler(rec, float(self.rng.uniform(2, 8))),
            ]
        elif case == "transformed":
            base = (
                [Piece(rec.rec_id, a, b)]
                if self.rng.random() < 0.5
                else [self.partial(rec, a, b, overlap=float(self.rng.uniform(min(2.0, L), L)))]
            )
            pieces = base
            presets = self.cfg.transform_presets
            name = sorted(presets)[int(self.rng.integers(len(presets)))]
            transforms = self.resolve(presets[name], rec, pieces)
            case = f"transformed:{name}"
        elif case.startswith("hard:"):
            kind = case.split(":", 1)[1]
            spec = self.cfg.hard_cases[kind]
            if spec.overlap_s is not None:
                pieces = [self.partial(rec, a, b, overlap=float(spec.overlap_s))]
            else:
                pieces = [Piece(rec.rec_id, a, b)]
            transforms = self.resolve(spec.chain, rec, pieces)
        else:
            raise ValueError(f"unknown positive case {case!r} in corpus.positives")
        return Clip(
            cid,
            self.split,
            "positive",
            case,
            self.next_format(),
            [self.rounded(p) for p in pieces],
            transforms,
            query=qid,
        )

    @staticmethod
    def rounded(p: Piece) -> Piece:
        return Piece(p.rec, round(p.src_start, 3), round(p.src_end, 3), p.role, p.speed)

    def partial(self, rec: Recording, a: float, b: float, overlap: float) -> Piece:
        """A clip of the same recording that shares `overlap` s with [a, b) at one end."""
        L = b - a
        overlap = min(overlap, L)
        length = max(overlap, float(self.rng.uniform(0.5 * L, 1.5 * L)))
        if self.rng.random() < 0.5 and b - overlap + length <= rec.duration_s:
            start = b - overlap  # clip begins inside the segment, runs past its end
        elif a + overlap - length >= 0:
            start = a + overlap - length  # clip ends inside the segment
        else:
            start, length = a, overlap  # no room either side: the shared part alone
        return Piece(rec.rec_id, start, min(start + length, rec.duration_s))

    def filler(self, exclude: Recording, seconds: float) -> Piece:
        """Unrelated audio of this split: speech or music of another variant group."""
        pool = [r for r in self.music if r.group != exclude.group and r.duration_s > seconds + 1]
        if self.speech and (not pool or self.rng.random() < 0.5):
            pool = [r for r in self.speech if r.duration_s > 1.0]
        if not pool:
            raise ValueError(
                f"split {self.split!r} has no unrelated audio for embedded copies (one variant group, "
                "no speech): add recordings, enable speech or change corpus.split_fractions"
            )
        rec = pool[int(self.rng.integers(len(pool)))]
        seconds = min(seconds, rec.duration_s)
        start = float(self.rng.uniform(0, rec.duration_s - seconds))
        return Piece(rec.rec_id, start, start + seconds)

    def resolve(self, chain: Sequence[Mapping[str, Any]], rec: Recording, pieces: list[Piece]) -> list[dict[str, Any]]:
        """Pick the concrete background of each mix step and log it as a `mix` piece."""
        out = []
        for step in chain:
            step = plain(step)
            if step["name"] == "mix":
                kind = step["source"]
                seconds = sum(p.src_end - p.src_start for p in pieces if p.role == "content")
                pool = [r for r in (self.speech if kind == "speech" else self.music) if r.group != rec.group]
                if not pool:
                    pool = [r for r in self.music if r.group != rec.group]
                if not pool:
                    raise ValueError(f"split {self.split!r} has nothing to mix with {rec.rec_id}")
                bg = pool[int(self.rng.integers(len(pool)))]
                span = min(seconds, bg.duration_s)
                start = float(self.rng.uniform(0, bg.duration_s - span))
                mix_piece = Piece(bg.rec_id, round(start, 3), round(start + span, 3), role="mix")
                pieces.append(mix_piece)
                step["source"] = f"{bg.rec_id}@{mix_piece.src_start}-{mix_piece.src_end}"
            out.append(step)
        return out

    def distractors(self) -> None:
        n = 0
        for rec in self.music:
            for _ in range(self.size.distractors_per_recording):
                length = self.query_length(rec.duration_s - 1.0)
                start = self.free_start(rec, length)
                if start is None:
                    continue
                pieces = [Piece(rec.rec_id, round(start, 3), round(start + length, 3))]
                transforms: list[dict[str, Any]] = []
                if self.rng.random() < float(self.cfg.distractor_transform_share):
                    presets = self.cfg.transform_presets
                    transforms = self.resolve(
                        presets[sorted(presets)[int(self.rng.integers(len(presets)))]], rec, pieces
                    )
                self.clips.append(
                    Clip(
                        f"{self.split}_d{n:03d}",
                        self.split,
                        "distractor",
                        "distractor",
                        self.next_format(),
                        pieces,
                        transforms,
                    )
                )
                n += 1
        for k in range(self.size.speech_distractors):
            if not self.speech:
                break
            rec = self.speech[k % len(self.speech)]
            self.clips.append(
                Clip(
                    f"{self.split}_s{k:03d}",
                    self.split,
                    "distractor",
                    "speech",
                    self.next_format(),
                    [Piece(rec.rec_id, 0.0, rec.duration_s)],
                )
            )

    def free_start(self, rec: Recording, length: float) -> float | None:
        """A start whose clip shares nothing with the recording's query segments (None if none found)."""
        if length < 2.0:
            return None
        for _ in range(50):
            start = float(self.rng.uniform(0, rec.duration_s - length))
            if all(start + length <= a or start >= b for a, b in self.segments.get(rec.rec_id, [])):
                return start
        return None


def speed_copies(clips: Sequence[Clip], factors: Sequence[float], split: str) -> list[Clip]:
    """The paper's speed protocol: every query re-rendered at each factor (tempo and pitch together)."""
    out = []
    for q in clips:
        if q.role != "query" or q.split != split:
            continue
        for f in factors:
            out.append(
                Clip(
                    speed_copy_id(q.clip_id, f),
                    split,
                    "speed",
                    f"x{f:g}",
                    q.fmt,
                    [Piece(p.rec, p.src_start, p.src_end, p.role, float(f)) for p in q.pieces],
                    [{"name": "speed", "factor": float(f)}],
                    query=q.clip_id,
                )
            )
    return out


# ------------------------------------------------------------------ labels


def label(query: Clip, clip: Clip, groups: Mapping[str, str], min_shared_s: float) -> str | None:
    """DA, JUNK or None (negative) for a clip with respect to a query, from the pieces alone."""
    q = query.pieces[0]
    shared = sum(
        max(0.0, min(p.src_end, q.src_end) - max(p.src_start, q.src_start))
        for p in clip.pieces
        if p.role == "content" and p.rec == q.rec
    )
    if shared >= min_shared_s:
        return DA
    if any(groups[p.rec] == groups[q.rec] for p in clip.pieces):
        return JUNK
    return None


def annotate(
    queries: Sequence[Clip], database: Sequence[Clip], groups: Mapping[str, str], min_shared_s: float
) -> dict[str, dict[str, list[str]]]:
    ann: dict[str, dict[str, list[str]]] = {}
    for q in queries:
        labels: dict[str, list[str]] = {DA: [], JUNK: []}
        for c in database:
            if c.clip_id == q.clip_id:
                continue
            lab = label(q, c, groups, min_shared_s)
            if lab:
                labels[lab].append(c.clip_id)
        ann[q.clip_id] = {k: sorted(v) for k, v in labels.items()}
    return ann


# ------------------------------------------------------------------ rendering


class Renderer:
    """Turns a planned clip into a media file: cut, fade, join, transform, level, encode."""

    def __init__(self, sources_dir: Path, recordings: Mapping[str, Recording], sample_rate: int, seed: int) -> None:
        self.sources_dir, self.recs, self.sr, self.seed = sources_dir, recordings, sample_rate, seed
        self.cache: dict[str, np.ndarray] = {}

    def audio_of(self, rec_id: str) -> np.ndarray:
        if rec_id not in self.cache:
            self.cache[rec_id] = load_audio(self.sources_dir / self.recs[rec_id].path, sample_rate=self.sr)
        return self.cache[rec_id]

    def cut(self, p: Piece) -> np.ndarray:
        x = self.audio_of(p.rec)[int(round(p.src_start * self.sr)) : int(round(p.src_end * self.sr))].astype(np.float32)
        rms = float(np.sqrt(np.mean(x**2))) if x.size else 0.0
        return x * (TARGET_RMS / rms) if rms > 1e-6 else x

    def render(self, clip: Clip) -> np.ndarray:
        parts = []
        for p in clip.pieces:
            if p.role != "content":
                continue
            x = self.cut(p)
            n = min(int(FADE_S * self.sr), x.size // 2)
            if n:
                ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
                x[:n] *= ramp
                x[-n:] *= ramp[::-1]
            parts.append(x)
        audio = np.concatenate(parts)
        backgrounds = {}
        for step in clip.transforms:
            if step["name"] == "mix":
                rec, span = step["source"].rsplit("@", 1)
                s, e = (float(v) for v in span.split("-"))
                backgrounds[step["source"]] = self.cut(Piece(rec, s, e))
        if clip.transforms:
            audio = apply_chain(
                audio, self.sr, clip.transforms, seed=_seed(self.seed, clip.clip_id), backgrounds=backgrounds
            )
        peak = float(np.abs(audio).max()) if audio.size else 0.0
        return (audio * (0.9 / peak)).astype(np.float32) if peak > 0 else audio

    def write(self, clip: Clip, out_dir: Path) -> Path:
        audio = self.render(clip)
        codec, video = CODECS[clip.fmt]
        path = out_dir / clip.split / f"{clip.clip_id}.{clip.fmt}"
        encode(path, audio, self.sr, codec, still_image=video)
        clip.duration_s = round(audio.size / self.sr, 3)
        clip.sha256 = sha256_file(path)
        clip.audio_sha256 = hashlib.sha256((np.clip(audio, -1, 1) * 32767).round().astype("<i2").tobytes()).hexdigest()
        return path


# ------------------------------------------------------------------ build


@dataclass(frozen=True)
class Benchmark:
    name: str
    queries: list[Clip]
    database: list[Clip]


def plan_corpus(recordings: Sequence[Recording], cfg: CorpusConfig) -> tuple[list[Clip], dict[str, str]]:
    """All clips of all splits (deterministic from the manifest and params) and the split of each group."""
    size = cfg.sizes[cfg.size]
    seed = cfg.seed
    split_of = assign_splits(recordings, cfg.split_fractions, seed)
    clips: list[Clip] = []
    for split in SPLITS:
        music = [r for r in recordings if r.kind == "music" and split_of[r.group] == split]
        speech = [r for r in recordings if r.kind == "speech" and split_of[r.group] == split]
        limit = size.max_recordings_per_split.get(split) if size.max_recordings_per_split else None
        if limit:
            music = sorted(music, key=lambda r: _seed(seed, "keep", r.rec_id))[:limit]
            music.sort(key=lambda r: r.rec_id)
        split_clips = Planner(split, music, speech, cfg, size, seed).plan()
        clips += split_clips
        if split in cfg.speed_splits:
            clips += speed_copies(split_clips, cfg.speed_factors, split)
    return clips, split_of


def benchmarks(
    clips: Sequence[Clip], groups: Mapping[str, str], min_shared_s: float, speed_splits: Iterable[str]
) -> tuple[list[Benchmark], dict[str, dict]]:
    """The original benchmark of every split, and the speed benchmark of the speed splits."""
    out, annotations = [], {}
    for split in SPLITS:
        queries = [c for c in clips if c.split == split and c.role == "query"]
        database = [c for c in clips if c.split == split and c.role in ("query", "positive", "distractor")]
        ann = annotate(queries, database, groups, min_shared_s)
        out.append(Benchmark(split, queries, database))
        annotations[split] = ann
        if split in speed_splits:
            originally_da = {v for labels in ann.values() for v in labels[DA]}
            speed_db = [c for c in database if c.clip_id not in originally_da]
            speed_db += [c for c in clips if c.split == split and c.role == "speed"]
            name = f"{split}_speed"
            out.append(Benchmark(name, queries, speed_db))
            annotations[name] = annotate(queries, speed_db, groups, min_shared_s)
    return out, annotations


def build_corpus(
    params: Params,
    sources_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    summary_path: str | os.PathLike[str] | None = None,
    workers: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Plan, render and encode every clip; write lists, annotations, the log and the summary."""
    sources_dir, out_dir = Path(sources_dir), Path(out_dir)
    recordings = load_manifest(sources_dir)
    cfg = params.corpus
    sr = params.audio.sample_rate
    clips, split_of = plan_corpus(recordings, cfg)
    groups = {r.rec_id: r.group for r in recordings}
    renderer = Renderer(sources_dir, {r.rec_id: r for r in recordings}, sr, cfg.seed)
    media = out_dir / "media"
    for split in SPLITS:
        # a clip already written with the same plan by the same renderer is kept; anything else is rendered again
        (media / split).mkdir(parents=True, exist_ok=True)
    fingerprint = renderer_fingerprint()
    previous = _previous_log(out_dir, fingerprint)
    todo = []
    for clip in clips:
        prior = previous.get(clip.clip_id)
        path = media / clip.split / f"{clip.clip_id}.{clip.fmt}"
        if prior and _same_plan(prior, clip) and path.is_file() and sha256_file(path) == prior["sha256"]:
            clip.duration_s, clip.sha256, clip.audio_sha256 = (
                prior["duration_s"],
                prior["sha256"],
                prior["audio_sha256"],
            )
        else:
            todo.append(clip)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(
            tqdm(
                pool.map(lambda c: renderer.write(c, media), todo),
                total=len(todo),
                desc="corpus",
                unit="clip",
                disable=not progress,
            )
        )
    keep = {f"{c.clip_id}.{c.fmt}" for c in clips}
    for split in SPLITS:
        for stale in (media / split).iterdir():
            if stale.name not in keep:
                stale.unlink()
    benches, annotations = benchmarks(clips, groups, float(cfg.min_shared_s), cfg.speed_splits)
    for bench in benches:
        d = out_dir / bench.name
        write_video_list(
            d / "queries.txt", {c.clip_id: str(media / c.split / f"{c.clip_id}.{c.fmt}") for c in bench.queries}
        )
        write_video_list(
            d / "database.txt", {c.clip_id: str(media / c.split / f"{c.clip_id}.{c.fmt}") for c in bench.database}
        )
        write_ids(d / "dataset_ids.txt", [c.clip_id for c in bench.database])
        write_annotations(d / "annotation.json", annotations[bench.name])
    write_video_list(
        out_dir / "all_videos.txt", {c.clip_id: str(media / c.split / f"{c.clip_id}.{c.fmt}") for c in clips}
    )
    log = {
        "renderer": fingerprint,
        "recordings": {r.rec_id: {**r.to_dict(), "split": split_of[r.group]} for r in recordings},
        "clips": [c.to_dict() for c in clips],
        "labels": {
            DA: f"shares >= {cfg.min_shared_s} s of the query segment (source time)",
            JUNK: "holds material of the query's variant group without sharing the segment: left out "
            "of that query's ranking",
        },
    }
    atomic_write_json(out_dir / "construction_log.json", log)
    summary = summarise(clips, benches, annotations, recordings, split_of, cfg.size)
    if summary_path:
        atomic_write_json(summary_path, summary)
    return summary


#: the modules whose code decides a clip's bytes, beside its plan (paths inside ausil_lib)
RENDERER_MODULES = ("datasets/embedded/corpus.py", "audio/transforms.py", "audio/decode.py", "core/numerics.py")
RENDERER_PACKAGES = ("numpy", "scipy", "audiomentations", "imageio-ffmpeg")


def renderer_fingerprint() -> str:
    """A digest of what a clip's bytes depend on beside its plan: rendering code, pinned numerics, libraries, ffmpeg.

    A rebuild keeps a finished clip only under the same fingerprint, so an edit of that code or a new
    numerics pin renders every clip again instead of leaving old clips that DVC would record as new.
    """
    # the binary that encodes, whichever package brought it
    return code_digest(RENDERER_MODULES, RENDERER_PACKAGES, [f"ffmpeg {ffmpeg_build()}"])


def _previous_log(out_dir: Path, fingerprint: str) -> dict[str, dict[str, Any]]:
    """The clips of the last finished build, if the same renderer made them (else nothing is kept)."""
    path = out_dir / "construction_log.json"
    if not path.is_file():
        return {}
    try:
        log = json.loads(path.read_text(encoding="utf-8"))
        if log.get("renderer") != fingerprint:
            return {}
        return {c["clip_id"]: c for c in log["clips"]}
    except (json.JSONDecodeError, KeyError):
        return {}


def _same_plan(prior: Mapping[str, Any], clip: Clip) -> bool:
    mine = clip.to_dict()
    return all(prior.get(k) == mine[k] for k in ("split", "role", "case", "fmt", "pieces", "transforms", "query"))


def summarise(
    clips: Sequence[Clip],
    benches: Sequence[Benchmark],
    annotations: Mapping[str, dict],
    recordings: Sequence[Recording],
    split_of: Mapping[str, str],
    size: str,
) -> dict[str, Any]:
    """Counts, hours, label statistics, transformation mix and split sizes (a DVC metric)."""
    per_split: dict[str, Any] = {}
    for split in SPLITS:
        recs = [r for r in recordings if split_of[r.group] == split]
        per_split[split] = {
            "music_recordings": sum(r.kind == "music" for r in recs),
            "speech_recordings": sum(r.kind == "speech" for r in recs),
            "source_hours": round(sum(r.duration_s for r in recs) / 3600, 3),
        }
    bench_stats = {}
    for b in benches:
        ann = annotations[b.name]
        da = [len(v[DA]) for v in ann.values()]
        junk = [len(v[JUNK]) for v in ann.values()]
        bench_stats[b.name] = {
            "queries": len(b.queries),
            "database": len(b.database),
            "database_hours": round(sum(c.duration_s for c in b.database) / 3600, 3),
            "da_per_query_mean": round(float(np.mean(da)), 2) if da else 0.0,
            "da_pairs": int(sum(da)),
            "junk_pairs": int(sum(junk)),
            "video_files": sum(CODECS[c.fmt][1] for c in b.database),
        }
    cases = Counter(c.case.split(":")[0] for c in clips if c.role == "positive")
    transforms = Counter(step["name"] for c in clips if c.role in ("positive", "distractor") for step in c.transforms)
    hard = Counter(c.case for c in clips if c.case.startswith("hard:"))
    positives = sum(cases.values())
    return {
        "size": size,
        "clips": len(clips),
        "hours": round(sum(c.duration_s for c in clips) / 3600, 3),
        "formats": dict(sorted(Counter(c.fmt for c in clips).items())),
        "splits": per_split,
        "benchmarks": bench_stats,
        "positive_cases": dict(sorted(cases.items())),
        "hard_cases": dict(sorted(hard.items())),
        "hard_share_of_positives": round(sum(hard.values()) / positives, 3) if positives else 0.0,
        "transform_steps": dict(sorted(transforms.items())),
    }
