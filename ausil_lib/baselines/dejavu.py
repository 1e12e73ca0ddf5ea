"""The Dejavu baseline: the published Dejavu (PyDejavu-Rollong 0.1.6) over a throwaway PostgreSQL.

The AuSiL paper compares against Dejavu, so Dejavu runs as published: its own fingerprint
function and its own PostgreSQL layer (schema, song rows, `find_matches`).  Only run-time
settings are changed: its function arguments and the module-level settings of
`dejavu.logic.fingerprint`, set for the duration of each call and restored afterwards.  One of
them (`fast_peak_filter`) swaps the scipy maximum filter its peak finder calls for
`diamond_maximum_filter`, which returns the same array about 11x faster on clips of 290 s (docs/dejavu-notes.md).

Dejavu returns only its top 2 songs and not the score it ranks them by, so `DejavuIndex.query`
regroups Dejavu's own matches by (song, offset difference) as its `align_matches` does and
scores every song by its largest group (the aligned-hash count), giving a full ranking.
What this relies on about the published package (install, PostgreSQL, parameters, scores) is in
docs/dejavu-notes.md.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import psycopg2.extras
from scipy.ndimage import generate_binary_structure, iterate_structure, maximum_filter

from ..audio.decode import load_audio
from ..core.config import DejavuConfig
from ..retrieval.method import index_videos
from .postgres import PostgresCluster

# Importing Dejavu touches deprecated scipy.ndimage namespaces and audioop, and pydub warns when
# ffmpeg is not on PATH (Dejavu's pydub decoder is never called here): silence only this import.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=RuntimeWarning, message=".*ffmpeg.*")
    import dejavu.logic.fingerprint as dejavu_fingerprint
    from dejavu import Dejavu
    from dejavu.config.settings import DEFAULT_FS, FIELD_SONG_ID, FIELD_SONGNAME
    from dejavu.database_handler.postgres_database import PostgreSQLDatabase

SAMPLE_RATE = DEFAULT_FS  # Dejavu does not resample; every file is decoded to mono 44.1 kHz
_SONG_NAME_MAX = 250  # VARCHAR(250) in Dejavu's songs table


# ---------------------------------------------------------------------------------------------
# Configuration, decoding, fingerprint and alignment (shared with ausil_lib/localisation/dejavu.py)
# ---------------------------------------------------------------------------------------------


def diamond_maximum_filter(input: np.ndarray, footprint: np.ndarray | None = None, **kwargs: Any) -> np.ndarray:
    """scipy's `maximum_filter(input, footprint=...)` for Dejavu's diamond peak mask, as r rounds of a
    5-point (cross) maximum instead of one 41 x 41 footprint: 88 % of Dejavu's fingerprint time goes
    to that filter.

    A diamond of radius r is r dilations by the cross, and with a symmetric footprint scipy's default
    'reflect' border gives the same maxima as ignoring the outside.  Any other footprint or argument,
    and arrays no wider than the footprint (where scipy's border handling differs), go to scipy itself.
    """
    footprint = None if footprint is None else np.asarray(footprint, dtype=bool)
    radius = None if footprint is None else (footprint.shape[0] - 1) // 2
    if (
        kwargs
        or footprint is None
        or input.ndim != 2
        or not np.issubdtype(input.dtype, np.floating)
        or footprint.shape != (2 * radius + 1, 2 * radius + 1)
        or min(input.shape) <= footprint.shape[0]
        or not np.array_equal(footprint, iterate_structure(generate_binary_structure(2, 1), radius))
    ):
        return maximum_filter(input, footprint=footprint, **kwargs)
    out = np.array(input, copy=True)
    previous = np.empty_like(out)
    for _ in range(radius):
        previous[...] = out
        np.maximum(out[1:], previous[:-1], out=out[1:])
        np.maximum(out[:-1], previous[1:], out=out[:-1])
        np.maximum(out[:, 1:], previous[:, :-1], out=out[:, 1:])
        np.maximum(out[:, :-1], previous[:, 1:], out=out[:, :-1])
    return out


@contextmanager
def _dejavu_settings(config: DejavuConfig) -> Iterator[None]:
    """Set Dejavu's module-level fingerprint settings for one call, then put the published ones back."""
    settings = dict(config.module_settings())
    if config.fast_peak_filter:
        settings["maximum_filter"] = diamond_maximum_filter
    saved = {name: getattr(dejavu_fingerprint, name) for name in settings}
    try:
        for name, value in settings.items():
            setattr(dejavu_fingerprint, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(dejavu_fingerprint, name, value)


def dejavu_samples(path: str | os.PathLike[str], ffmpeg: str | None = None, timeout_s: float = 600.0) -> np.ndarray:
    """16-bit mono 44.1 kHz samples, what Dejavu reads from such a WAV file (AudioError naming the file)."""
    audio = load_audio(path, sample_rate=SAMPLE_RATE, ffmpeg=ffmpeg, timeout_s=timeout_s)
    return np.round(audio * 32767.0).astype(np.int16)


def dejavu_hashes(samples: np.ndarray, config: DejavuConfig) -> set[tuple[str, int]]:
    """Dejavu's fingerprint of one channel: (hash, offset in frames of `config.hop_samples`) pairs,
    deduplicated into a set as Dejavu does for files and queries."""
    with _dejavu_settings(config):
        return set(
            dejavu_fingerprint.fingerprint(
                samples,
                Fs=SAMPLE_RATE,
                wsize=config.window_size,
                wratio=config.overlap_ratio,
                fan_value=config.fan_value,
                amp_min=config.amp_min,
            )
        )


@dataclass(frozen=True)
class FileHashes:
    """One file's Dejavu fingerprint with what the index records about it, made by `file_hashes`."""

    content: str | None  # SHA-1 of the decoded samples, in Dejavu's unique_hash form (None: not asked for)
    n_samples: int
    hashes: set[tuple[str, int]]
    decode_s: float
    fingerprint_s: float


def file_hashes(
    item: tuple[str, str | os.PathLike[str]],
    config: DejavuConfig,
    ffmpeg: str | None,
    timeout_s: float,
    content: bool = True,
) -> FileHashes:
    """Decode and fingerprint one (id, path) item: the per-file work of indexing, which
    `DejavuMethod.index` runs in worker processes, and of each query (AudioError naming the file).
    `content=False` skips the digest that only the index stores."""
    started = time.perf_counter()
    samples = dejavu_samples(item[1], ffmpeg, timeout_s)
    decoded = time.perf_counter()
    hashes = dejavu_hashes(samples, config)
    return FileHashes(
        hashlib.sha1(samples.tobytes()).hexdigest().upper() if content else None,
        int(samples.size),
        hashes,
        decoded - started,
        time.perf_counter() - decoded,
    )


def best_alignment(differences: Mapping[int, int]) -> tuple[int, int]:
    """(count, difference) of the largest group of equal offset differences (video offset minus query
    offset, in frames), as Dejavu's `align_matches` picks it: a tie goes to the smallest difference,
    as its max over sorted groups does."""
    difference, count = min(differences.items(), key=lambda item: (-item[1], item[0]))
    return count, difference


# ---------------------------------------------------------------------------------------------
# Index
# ---------------------------------------------------------------------------------------------


def _batched_insert_statement() -> tuple[str, str]:
    """Dejavu's INSERT_FINGERPRINT split into a multi-row statement and its row template, so a
    batched load writes exactly Dejavu's rows (same columns, hex decoding and conflict rule)."""
    match = re.fullmatch(
        r"\s*(INSERT INTO .*?)\s+VALUES\s+(\(.*?\))\s+(ON CONFLICT DO NOTHING);\s*",
        PostgreSQLDatabase.INSERT_FINGERPRINT,
        flags=re.DOTALL,
    )
    if match is None:
        raise RuntimeError(
            "the installed Dejavu's INSERT_FINGERPRINT has an unexpected form; "
            "set batch_insert: false to use its own insert_hashes"
        )
    return f"{match.group(1)} VALUES %s {match.group(3)}", match.group(2)


@dataclass(frozen=True)
class DejavuMatch:
    """One song's result: aligned-hash count and the offset difference of its largest group."""

    score: int
    offset_frames: int | None  # database offset minus query offset, in Dejavu frames
    offset_s: float | None  # the same in seconds: where the query starts in the song


class DejavuIndex:
    """Database videos fingerprinted by Dejavu into a running PostgresCluster, queried for full rankings."""

    def __init__(
        self,
        cluster: PostgresCluster,
        config: DejavuConfig = DejavuConfig(),
        ffmpeg: str | None = None,
        decode_timeout_s: float = 600.0,
    ) -> None:
        self.config = config
        self.ffmpeg = ffmpeg
        self.decode_timeout_s = decode_timeout_s
        self._dejavu = Dejavu(cluster.dejavu_config)  # creates Dejavu's tables
        self._song_of_video: dict[str, int] = {}  # video_id -> Dejavu song_id
        self._song_of_content: dict[str, int] = {}  # SHA-1 of the decoded samples -> song_id
        self._song_names: dict[int, str] = {}  # song_id -> stored song_name (first video_id)
        self._insert = _batched_insert_statement() if config.batch_insert else None
        self._analyzed = True
        self._index_s_per_video: dict[str, float] = {}
        self._totals: defaultdict[str, float] = defaultdict(float)
        self._hashes_stored = 0
        self._queries = 0

    def add(self, video_id: str, path: str | os.PathLike[str], prepared: FileHashes | None = None) -> None:
        """Decode, fingerprint with Dejavu and store under `video_id` through Dejavu's PostgreSQL layer;
        `prepared` is this file's `file_hashes`, when a worker process has made it already.

        Raises AudioError (naming the file) for media that cannot be decoded.  Audio identical to an
        indexed video is not stored again (Dejavu skips a file hash it knows); both videos then share
        one song and always get the same score.
        """
        if video_id in self._song_of_video:
            raise ValueError(f"video {video_id!r} is already indexed")
        if len(video_id) > _SONG_NAME_MAX:
            raise ValueError(f"video id longer than Dejavu's {_SONG_NAME_MAX}-character song_name: {video_id!r}")
        if prepared is None:
            prepared = file_hashes((video_id, path), self.config, self.ffmpeg, self.decode_timeout_s)
        elapsed = prepared.decode_s + prepared.fingerprint_s
        song_id = self._song_of_content.get(prepared.content)
        if song_id is None:
            started = time.perf_counter()
            song_id = self._store(video_id, prepared.content, prepared.hashes)
            insert_s = time.perf_counter() - started
            elapsed += insert_s
            self._totals["insert_s"] += insert_s
            self._hashes_stored += len(prepared.hashes)
            self._song_of_content[prepared.content] = song_id
            self._song_names[song_id] = video_id
            self._analyzed = False
        self._song_of_video[video_id] = song_id
        self._index_s_per_video[video_id] = elapsed
        self._totals["decode_s"] += prepared.decode_s
        self._totals["fingerprint_s"] += prepared.fingerprint_s
        self._totals["index_audio_s"] += prepared.n_samples / SAMPLE_RATE
        self._totals["index_s"] += elapsed

    def finalize(self) -> None:
        """ANALYZE after loading (hash lookups get about twice as fast) and check that Dejavu holds
        exactly the songs stored; run automatically before the first query after an add."""
        started = time.perf_counter()
        with self._dejavu.db.cursor() as cur:
            cur.execute("ANALYZE")
        stored = {row[FIELD_SONG_ID]: row[FIELD_SONGNAME] for row in self._dejavu.get_fingerprinted_songs()}
        if stored != self._song_names:
            raise RuntimeError(
                f"Dejavu's database holds {len(stored)} fingerprinted songs, "
                f"{len(self._song_names)} were stored; the load is incomplete"
            )
        self._analyzed = True
        self._totals["analyze_s"] += time.perf_counter() - started

    def query(self, path: str | os.PathLike[str]) -> dict[str, DejavuMatch]:
        """Every indexed video's aligned-hash count for the query (0 and no offset without a hit).

        Dejavu's own recognizer steps: a set of the query's hashes, its `find_matches`, then groups
        of equal (song, offset difference) as in its `align_matches`; the largest group is the
        score, and a tie between offsets goes to the smallest, as its max over sorted groups does.
        """
        if not self._analyzed:
            self.finalize()
        query = file_hashes((str(path), path), self.config, self.ffmpeg, self.decode_timeout_s, content=False)
        fingerprinted = time.perf_counter()
        matches, _, _ = self._dejavu.find_matches(query.hashes)
        groups: defaultdict[int, Counter[int]] = defaultdict(Counter)
        for song_id, difference in matches:
            groups[song_id][int(difference)] += 1
        best = {song_id: best_alignment(differences) for song_id, differences in groups.items()}
        hop_s = self.config.hop_samples / SAMPLE_RATE
        result = {}
        for video_id, song_id in self._song_of_video.items():
            count, difference = best.get(song_id, (0, None))
            result[video_id] = DejavuMatch(count, difference, None if difference is None else difference * hop_s)
        finished = time.perf_counter()
        self._queries += 1
        self._totals["query_audio_s"] += query.n_samples / SAMPLE_RATE
        self._totals["query_decode_s"] += query.decode_s
        self._totals["query_fingerprint_s"] += query.fingerprint_s
        self._totals["query_match_s"] += finished - fingerprinted
        self._totals["query_s"] += query.decode_s + query.fingerprint_s + finished - fingerprinted
        return result

    def scores(self, path: str | os.PathLike[str]) -> dict[str, float]:
        """video_id -> aligned-hash count for every indexed video; ties are left to the caller."""
        return {video_id: float(match.score) for video_id, match in self.query(path).items()}

    def timings(self) -> dict[str, Any]:
        """Seconds spent indexing and querying, for reports (index_s includes decoding)."""
        totals = dict(self._totals)
        audio_min = totals.get("index_audio_s", 0.0) / 60.0
        work = totals.get("fingerprint_s", 0.0) + totals.get("insert_s", 0.0)
        return {
            "videos_indexed": len(self._song_of_video),
            "songs_stored": len(self._song_names),
            "hashes_stored": self._hashes_stored,
            "queries": self._queries,
            **totals,
            "fingerprint_insert_s_per_audio_min": work / audio_min if audio_min else None,
            "index_s_per_video": dict(self._index_s_per_video),
        }

    def _store(self, name: str, content: str, hashes: set[tuple[str, int]]) -> int:
        """Dejavu's song row, its fingerprint rows, then its fingerprinted flag (so a failed load is
        never counted: Dejavu deletes songs without the flag, and their rows cascade)."""
        db = self._dejavu.db
        song_id = db.insert_song(name, content, len(hashes))
        try:
            if self._insert is not None:
                statement, template = self._insert
                rows = [(song_id, digest, int(offset)) for digest, offset in hashes]
                with db.cursor() as cur:
                    psycopg2.extras.execute_values(
                        cur, statement, rows, template=template, page_size=self.config.insert_page_size
                    )
            else:
                db.insert_hashes(song_id, hashes)
            db.set_song_fingerprinted(song_id)
        except Exception:
            db.delete_unfingerprinted_songs()
            raise
        return song_id


class DejavuMethod:
    """Dejavu behind the retrieval runner's interface, over a cluster the caller starts and stops."""

    name = "dejavu"

    def __init__(
        self, cluster: PostgresCluster, config: DejavuConfig, ffmpeg: str | None = None, decode_timeout_s: float = 600.0
    ) -> None:
        self.config = config
        self.label = (
            f"Dejavu (PyDejavu-Rollong 0.1.6 on PostgreSQL; fan {config.fan_value}, neighbourhood "
            f"{config.peak_neighborhood_size}, {config.connectivity_mask} mask)"
        )
        self._index = DejavuIndex(cluster, config, ffmpeg=ffmpeg, decode_timeout_s=decode_timeout_s)

    @property
    def timings(self) -> dict[str, Any]:
        """The index's timings; with several workers, decode_s and fingerprint_s add up their processes."""
        return {**self._index.timings(), "workers": self.config.workers}

    def index(self, database: Mapping[str, str], progress: bool = True) -> dict[str, str]:
        """Fingerprint in `config.workers` processes; load Dejavu's database here, in the videos' order."""
        prepare = partial(
            file_hashes, config=self.config, ffmpeg=self._index.ffmpeg, timeout_s=self._index.decode_timeout_s
        )
        failures = index_videos(self.name, database, self._index.add, progress, prepare, self.config.workers)
        self._index.finalize()
        return failures

    def query(self, query_id: str, path: str) -> dict[str, float]:
        return self._index.scores(path)
