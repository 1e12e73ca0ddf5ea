"""The Dejavu baseline: the published Dejavu (PyDejavu-Rollong 0.1.6) over a throwaway PostgreSQL.

The AuSiL paper compares against Dejavu, so Dejavu runs as published: its own fingerprint
function and its own PostgreSQL layer (schema, song rows, `find_matches`).  Only run-time
settings are changed: its function arguments and the module-level settings of
`dejavu.logic.fingerprint`, set for the duration of each call and restored afterwards.

Dejavu returns only its top 2 songs and not the score it ranks them by, so `DejavuIndex.query`
regroups Dejavu's own matches by (song, offset difference) as its `align_matches` does and
scores every song by its largest group (the aligned-hash count), giving a full ranking.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import numpy as np
import psycopg2.extras

from .audio import AudioError, load_audio
from .config import DejavuConfig

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
_PG_USER = "dejavu"  # superuser name of the throwaway cluster
_PG_DATABASE = "postgres"
_PORT_ATTEMPTS = 3  # a free port can be taken between probing and binding


class PostgresError(RuntimeError):
    """The throwaway PostgreSQL cluster could not be found, created or started."""


# ---------------------------------------------------------------------------------------------
# Throwaway PostgreSQL cluster
# ---------------------------------------------------------------------------------------------


def find_postgres_bindir(explicit: str | None = None) -> Path:
    """Directory holding initdb and pg_ctl: the configured one, else `pg_config --bindir`, else
    the newest /usr/lib/postgresql/*/bin (Debian keeps the server binaries off PATH)."""
    if explicit:
        candidates = [Path(explicit)]
    else:
        candidates = []
        pg_config = shutil.which("pg_config")
        if pg_config:
            proc = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
            if proc.returncode == 0 and proc.stdout.strip():
                candidates.append(Path(proc.stdout.strip()))
        versioned = glob.glob("/usr/lib/postgresql/*/bin")
        candidates += [Path(p) for p in sorted(versioned, key=_major_version, reverse=True)]
    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return bindir
    where = explicit if explicit else "pg_config --bindir or /usr/lib/postgresql/*/bin"
    raise PostgresError(
        f"PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in {where}; "
        "install them as root with `apt-get install postgresql` (scripts/setup.sh does it)"
    )


def _major_version(bindir: str) -> int:
    match = re.search(r"/postgresql/(\d+)/", bindir)
    return int(match.group(1)) if match else -1


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Runs beside the cluster in its own session; when the pipe from the owning process closes
# without "done" (the owner was killed, even by SIGKILL) it stops the cluster and removes it.
_WATCHDOG = """
import shutil, subprocess, sys, json
if sys.stdin.buffer.read() != b"done":
    subprocess.run(json.loads(sys.argv[1]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    shutil.rmtree(sys.argv[2], ignore_errors=True)
"""


class PostgresCluster:
    """A PostgreSQL cluster in a temporary directory that never outlives the run.

    initdb + `pg_ctl start` on 127.0.0.1 at a free port (no unix socket), fsync off, password
    authentication with a random password.  PostgreSQL refuses to run as root, so as root every
    server command runs as the `postgres` system user through runuser.  The cluster is stopped
    (`pg_ctl stop -m immediate`) and its directory removed on normal exit, on an exception and on
    SIGTERM/SIGINT; a watchdog process does the same if this process dies without cleaning up.
    """

    def __init__(self, bindir: str | None = None, start_timeout_s: float = 60.0) -> None:
        self._bindir_setting = bindir
        self.start_timeout_s = start_timeout_s
        self.root: Path | None = None
        self.port: int | None = None
        self.password = secrets.token_urlsafe(24)
        self._bindir: Path | None = None
        self._run_as: list[str] = []
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._previous_handlers: dict[int, Any] = {}

    @property
    def data_dir(self) -> Path:
        if self.root is None:
            raise PostgresError("the PostgreSQL cluster is not running")
        return self.root / "data"

    @property
    def connection(self) -> dict[str, Any]:
        """psycopg2.connect keyword arguments, the `database` section of a Dejavu config."""
        if self.port is None:
            raise PostgresError("the PostgreSQL cluster is not running")
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "user": _PG_USER,
            "password": self.password,
            "database": _PG_DATABASE,
        }

    @property
    def dejavu_config(self) -> dict[str, Any]:
        """The configuration dictionary `dejavu.Dejavu` takes."""
        return {"database_type": "postgres", "database": self.connection}

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self.root is not None:
            raise PostgresError("the PostgreSQL cluster is already running")
        self._bindir = bindir = find_postgres_bindir(self._bindir_setting)
        self._run_as = self._server_user_prefix()
        self._install_signal_handlers()
        try:
            self.root = Path(tempfile.mkdtemp(prefix="ausil-dejavu-pg-"))
            self._hand_over(self.root)
            self._start_watchdog(bindir)
            pwfile = self.root / "pwfile"
            pwfile.write_text(self.password + "\n", encoding="utf-8")
            self._hand_over(pwfile)
            self._server(
                bindir / "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                _PG_USER,
                "-A",
                "scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            )
            pwfile.unlink()
            with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
                conf.write(
                    "\n# ausil: throwaway cluster for the Dejavu baseline\n"
                    "listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                )
            self._start_server(bindir)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server and remove its directory; safe to call more than once."""
        root, self.root, self.port = self.root, None, None
        self._restore_signal_handlers()
        if root is None:
            return
        failure = ""
        if self._bindir is not None and (root / "data" / "postmaster.pid").exists():
            proc = subprocess.run(
                self._stop_command(self._bindir, root), capture_output=True, text=True, cwd=root, check=False
            )
            failure = (proc.stderr or proc.stdout).strip() if proc.returncode else ""
        if not failure:
            shutil.rmtree(root, ignore_errors=True)
        if self._watchdog is not None:
            watchdog, self._watchdog = self._watchdog, None
            if not failure:  # otherwise the watchdog sees a bare end of input and tries once more
                watchdog.stdin.write(b"done")
            watchdog.stdin.close()
            watchdog.wait()
        if root.exists():
            raise PostgresError(f"could not stop the PostgreSQL cluster in {root}: {failure[-1000:]}")

    def _server_user_prefix(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresError(
                "running as root but there is no `postgres` system user to run PostgreSQL "
                "(it refuses root); install it with `apt-get install postgresql` or run "
                "as an ordinary user"
            ) from None
        runuser = shutil.which("runuser")
        if runuser is None:
            raise PostgresError("running as root but runuser (util-linux) is missing")
        return [runuser, "-u", "postgres", "--"]

    def _hand_over(self, path: Path) -> None:
        if self._run_as:
            user = pwd.getpwnam("postgres")
            os.chown(path, user.pw_uid, user.pw_gid)

    def _stop_command(self, bindir: Path, root: Path) -> list[str]:
        return [
            *self._run_as,
            str(bindir / "pg_ctl"),
            "-D",
            str(root / "data"),
            "-m",
            "immediate",
            "-w",
            "-t",
            str(int(self.start_timeout_s)),
            "stop",
        ]

    def _server(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        cmd = [*self._run_as, *map(str, args)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=self.root, check=False)
        if proc.returncode != 0:
            raise PostgresError(
                f"{Path(cmd[len(self._run_as)]).name} failed (exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-1000:]}"
            )
        return proc

    def _start_server(self, bindir: Path) -> None:
        log = self.root / "server.log"
        for attempt in range(_PORT_ATTEMPTS):
            port = _free_port()
            try:
                self._server(
                    bindir / "pg_ctl",
                    "-D",
                    self.data_dir,
                    "-l",
                    log,
                    "-w",
                    "-t",
                    str(int(self.start_timeout_s)),
                    "-o",
                    f"-p {port}",
                    "start",
                )
            except PostgresError as exc:
                text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
                if "already in use" in text and attempt + 1 < _PORT_ATTEMPTS:
                    continue
                raise PostgresError(f"{exc}; server log: {text.strip()[-1000:]}") from None
            self.port = port
            return

    def _start_watchdog(self, bindir: Path) -> None:
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, json.dumps(self._stop_command(bindir, self.root)), str(self.root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.root,
            start_new_session=True,
        )

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread receives signals; the watchdog still covers this case
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(signum)
            if previous is not signal.SIG_IGN:
                self._previous_handlers[signum] = previous
                signal.signal(signum, self._on_signal)

    def _restore_signal_handlers(self) -> None:
        for signum, previous in self._previous_handlers.items():
            signal.signal(signum, previous)
        self._previous_handlers = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Stop the cluster first, then behave as the process would have without us."""
        previous = self._previous_handlers.get(signum)
        self.stop()
        if callable(previous):
            previous(signum, frame)
        else:
            raise SystemExit(128 + signum)


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


@contextmanager
def _dejavu_settings(config: DejavuConfig) -> Iterator[None]:
    """Set Dejavu's module-level fingerprint settings for one call, then put the published ones back."""
    saved = {name: getattr(dejavu_fingerprint, name) for name in config.module_settings()}
    try:
        for name, value in config.module_settings().items():
            setattr(dejavu_fingerprint, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(dejavu_fingerprint, name, value)


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
        self._ffmpeg = ffmpeg
        self._decode_timeout_s = decode_timeout_s
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

    def add(self, video_id: str, path: str | os.PathLike[str]) -> None:
        """Decode, fingerprint with Dejavu and store under `video_id` through Dejavu's PostgreSQL layer.

        Raises AudioError (naming the file) for media that cannot be decoded.  Audio identical to an
        indexed video is not fingerprinted again (Dejavu skips a file hash it knows); both videos
        then share one song and always get the same score.
        """
        if video_id in self._song_of_video:
            raise ValueError(f"video {video_id!r} is already indexed")
        if len(video_id) > _SONG_NAME_MAX:
            raise ValueError(f"video id longer than Dejavu's {_SONG_NAME_MAX}-character song_name: {video_id!r}")
        started = time.perf_counter()
        samples = self._decode(path)
        decoded = time.perf_counter()
        content = hashlib.sha1(samples.tobytes()).hexdigest().upper()  # Dejavu's unique_hash form
        song_id = self._song_of_content.get(content)
        if song_id is None:
            hashes = self._fingerprint(samples)
            fingerprinted = time.perf_counter()
            song_id = self._store(video_id, content, hashes)
            self._totals["fingerprint_s"] += fingerprinted - decoded
            self._totals["insert_s"] += time.perf_counter() - fingerprinted
            self._hashes_stored += len(hashes)
            self._totals["audio_fingerprinted_s"] += samples.size / SAMPLE_RATE
            self._song_of_content[content] = song_id
            self._song_names[song_id] = video_id
            self._analyzed = False
        self._song_of_video[video_id] = song_id
        elapsed = time.perf_counter() - started
        self._index_s_per_video[video_id] = elapsed
        self._totals["decode_s"] += decoded - started
        self._totals["index_s"] += elapsed
        self._totals["index_audio_s"] += samples.size / SAMPLE_RATE

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
        started = time.perf_counter()
        samples = self._decode(path)
        decoded = time.perf_counter()
        hashes = self._fingerprint(samples)
        fingerprinted = time.perf_counter()
        matches, _, _ = self._dejavu.find_matches(hashes)
        best: dict[int, tuple[int, int]] = {}
        for (song_id, difference), count in sorted(Counter(matches).items()):
            if count > best.get(song_id, (0, 0))[0]:
                best[song_id] = (count, int(difference))
        hop_s = self.config.hop_samples / SAMPLE_RATE
        result = {}
        for video_id, song_id in self._song_of_video.items():
            count, difference = best.get(song_id, (0, None))
            result[video_id] = DejavuMatch(count, difference, None if difference is None else difference * hop_s)
        finished = time.perf_counter()
        self._queries += 1
        self._totals["query_audio_s"] += samples.size / SAMPLE_RATE
        self._totals["query_decode_s"] += decoded - started
        self._totals["query_fingerprint_s"] += fingerprinted - decoded
        self._totals["query_match_s"] += finished - fingerprinted
        self._totals["query_s"] += finished - started
        return result

    def scores(self, path: str | os.PathLike[str]) -> dict[str, float]:
        """video_id -> aligned-hash count for every indexed video; ties are left to the caller."""
        return {video_id: float(match.score) for video_id, match in self.query(path).items()}

    def timings(self) -> dict[str, Any]:
        """Seconds spent indexing and querying, for reports (index_s includes decoding)."""
        totals = dict(self._totals)
        audio_min = totals.get("audio_fingerprinted_s", 0.0) / 60.0
        work = totals.get("fingerprint_s", 0.0) + totals.get("insert_s", 0.0)
        return {
            "videos_indexed": len(self._song_of_video),
            "songs_fingerprinted": len(self._song_names),
            "hashes_stored": self._hashes_stored,
            "queries": self._queries,
            **totals,
            "fingerprint_insert_s_per_audio_min": work / audio_min if audio_min else None,
            "index_s_per_video": dict(self._index_s_per_video),
        }

    def _decode(self, path: str | os.PathLike[str]) -> np.ndarray:
        """16-bit mono 44.1 kHz samples, what Dejavu reads from such a WAV file."""
        audio = load_audio(path, sample_rate=SAMPLE_RATE, ffmpeg=self._ffmpeg, timeout_s=self._decode_timeout_s)
        return np.round(audio * 32767.0).astype(np.int16)

    def _fingerprint(self, samples: np.ndarray) -> set[tuple[str, int]]:
        """Dejavu's fingerprint of one channel, deduplicated into a set as Dejavu does for files and queries."""
        cfg = self.config
        with _dejavu_settings(cfg):
            return set(
                dejavu_fingerprint.fingerprint(
                    samples,
                    Fs=SAMPLE_RATE,
                    wsize=cfg.window_size,
                    wratio=cfg.overlap_ratio,
                    fan_value=cfg.fan_value,
                    amp_min=cfg.amp_min,
                )
            )

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
        return self._index.timings()

    def index(self, database: Mapping[str, str]) -> dict[str, str]:
        failures = {}
        for vid, path in database.items():
            try:
                self._index.add(vid, path)
            except AudioError as exc:
                failures[vid] = exc.reason
        self._index.finalize()
        return failures

    def query(self, query_id: str, path: str) -> dict[str, float]:
        return self._index.scores(path)
