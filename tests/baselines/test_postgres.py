"""The throwaway PostgreSQL cluster of the Dejavu baseline: found, started, and never outliving the run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest

from ausil_lib.baselines.postgres import PostgresCluster, PostgresError, find_postgres_bindir

REPO = Path(__file__).resolve().parents[2]


def test_missing_postgres_names_the_package() -> None:
    with pytest.raises(PostgresError, match="apt-get install postgresql"):
        find_postgres_bindir("/nonexistent/postgresql/bin")


# --- the cluster never outlives the run ---------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _server_processes(data_dir: Path) -> list[int]:
    """The postmaster (from its pid file) and its children."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == postmaster:
            children.append(int(stat.parent.name))
    return [postmaster, *children]


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _assert_gone(root: Path, port: int, pids: list[int], within_s: float = 0.0) -> None:
    deadline = time.monotonic() + within_s
    while (root.exists() or any(map(_alive, pids))) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not root.exists()
    assert not [pid for pid in pids if _alive(pid)]
    assert not _accepts(port)


def _running(cluster: PostgresCluster) -> tuple[Path, int, list[int]]:
    with psycopg2.connect(**cluster.connection) as conn, conn.cursor() as cur:
        cur.execute("SHOW fsync")
        assert cur.fetchone() == ("off",)
    pids = _server_processes(cluster.data_dir)
    assert len(pids) > 1 and _accepts(cluster.port)
    return cluster.root, cluster.port, pids


def test_cluster_is_removed_after_normal_exit() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with PostgresCluster() as cluster:
        assert signal.getsignal(signal.SIGTERM) != before[0]
        root, port, pids = _running(cluster)
    _assert_gone(root, port, pids)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_cluster_is_removed_after_an_exception() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with PostgresCluster() as cluster:
            root, port, pids = _running(cluster)
            raise RuntimeError("boom")
    _assert_gone(root, port, pids)


# The child restores Python's SIGINT handler: a test run started in the background of a non-interactive
# shell (`make test &`) inherits SIGINT ignored, and the SIGINT case would then wait for the sleep.
_CHILD = """
import json, signal, time
signal.signal(signal.SIGINT, signal.default_int_handler)
from ausil_lib.baselines.postgres import PostgresCluster
with PostgresCluster() as cluster:
    pid = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
    print(json.dumps({"root": str(cluster.root), "port": cluster.port, "pid": pid}), flush=True)
    time.sleep(120)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_cluster_is_removed_when_the_run_is_signalled(signum: signal.Signals) -> None:
    with subprocess.Popen([sys.executable, "-c", _CHILD], cwd=REPO, stdout=subprocess.PIPE, text=True) as child:
        try:
            line = child.stdout.readline()
            assert line, "the child process could not start a cluster"
            info = json.loads(line)
            root, pids = Path(info["root"]), _server_processes(Path(info["root"]) / "data")
            assert pids[0] == info["pid"]
            os.kill(child.pid, signum)
            code = child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
    # SIGINT ends in KeyboardInterrupt, which Python re-raises as a SIGINT death
    assert (
        code
        == {signal.SIGTERM: 128 + signal.SIGTERM, signal.SIGINT: -signal.SIGINT, signal.SIGKILL: -signal.SIGKILL}[
            signum
        ]
    )
    # after SIGKILL the watchdog stops the server and removes the directory
    _assert_gone(root, info["port"], pids, within_s=20.0)
