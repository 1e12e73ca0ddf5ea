"""A throwaway PostgreSQL cluster for the Dejavu baseline: created in a temporary directory, never outliving the run.

How PostgreSQL behaves here (root refused, binaries off PATH, start and stop times) is in docs/dejavu-notes.md.
"""

from __future__ import annotations

import glob
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
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

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
