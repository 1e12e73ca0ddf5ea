"""The Dejavu baseline: full rankings from the published Dejavu, and a cluster that never outlives the run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psycopg2
import pytest

from ausil_lib.audio import AudioError, encode
from ausil_lib.config import DejavuConfig, from_section
from ausil_lib.dejavu_baseline import (
    SAMPLE_RATE,
    DejavuIndex,
    PostgresCluster,
    PostgresError,
    dejavu_fingerprint,
    find_postgres_bindir,
)

from .helpers import chords

REPO = Path(__file__).resolve().parent.parent
RECORDING_S = 30.0
EXCERPT_START_S = 7.3  # deliberately not a whole number of Dejavu frames
EXCERPT_S = 10.0
CODECS = {"wav": ["-c:a", "pcm_s16le"], "flac": ["-c:a", "flac"], "ogg": ["-c:a", "libvorbis"]}


def _write(path: Path, audio: np.ndarray) -> Path:
    encode(path, audio, SAMPLE_RATE, CODECS[path.suffix[1:]])
    return path


@pytest.fixture(scope="module")
def cluster():
    with PostgresCluster() as running:
        yield running


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Five unrelated recordings (one lossy), a lossless copy of r1, and a 10 s lossy excerpt of r1."""
    folder = tmp_path_factory.mktemp("dejavu")
    recordings = {f"r{seed}": chords(RECORDING_S, seed) for seed in range(5)}
    files = {
        name: _write(folder / f"{name}.{'ogg' if name == 'r4' else 'wav'}", audio) for name, audio in recordings.items()
    }
    files["r1_copy"] = _write(folder / "r1_copy.flac", recordings["r1"])  # other bytes, same samples
    start = int(EXCERPT_START_S * SAMPLE_RATE)
    files["excerpt"] = _write(folder / "excerpt.ogg", recordings["r1"][start : start + int(EXCERPT_S * SAMPLE_RATE)])
    return files


@pytest.fixture(scope="module")
def index(cluster: PostgresCluster, media: dict[str, Path]) -> DejavuIndex:
    built = DejavuIndex(cluster, DejavuConfig())
    for name in ("r0", "r1", "r2", "r3", "r4", "r1_copy"):
        built.add(name, str(media[name]))
    return built


def test_excerpt_ranks_its_source_first_at_its_offset(index: DejavuIndex, media: dict[str, Path]) -> None:
    matches = index.query(str(media["excerpt"]))
    assert set(matches) == {"r0", "r1", "r2", "r3", "r4", "r1_copy"}  # every indexed video, hit or not
    unrelated = max(matches[name].score for name in ("r0", "r2", "r3", "r4"))
    assert matches["r1"].score >= 5 * max(unrelated, 1)
    frame_s = index.config.hop_samples / SAMPLE_RATE
    assert abs(matches["r1"].offset_s - EXCERPT_START_S) <= frame_s
    assert matches["r1"].offset_frames == round(matches["r1"].offset_s / frame_s)
    scores = index.scores(str(media["excerpt"]))
    assert scores == {name: float(match.score) for name, match in matches.items()}


def test_identical_audio_is_fingerprinted_once_and_both_videos_score(
    index: DejavuIndex, media: dict[str, Path]
) -> None:
    matches = index.query(str(media["excerpt"]))
    assert matches["r1_copy"] == matches["r1"]
    timings = index.timings()
    assert (timings["videos_indexed"], timings["songs_fingerprinted"]) == (6, 5)
    assert timings["index_audio_s"] == pytest.approx(6 * RECORDING_S, abs=0.1)
    assert timings["queries"] >= 1 and timings["query_s"] > 0
    assert set(timings["index_s_per_video"]) == set(matches)


def test_a_recording_matches_itself_and_settings_are_restored(index: DejavuIndex, media: dict[str, Path]) -> None:
    matches = index.query(str(media["r3"]))
    assert max(matches, key=lambda name: matches[name].score) == "r3"
    assert matches["r3"].offset_frames == 0
    # the published module settings are back once Dejavu has run
    assert (dejavu_fingerprint.PEAK_NEIGHBORHOOD_SIZE, dejavu_fingerprint.CONNECTIVITY_MASK) == (10, 2)


def test_bad_file_raises_audio_error_naming_it(index: DejavuIndex, tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(AudioError, match="corrupt.mp4"):
        index.add("corrupt", str(bad))
    with pytest.raises(AudioError, match="corrupt.mp4"):
        index.query(str(bad))
    assert "corrupt" not in index.timings()["index_s_per_video"]


def test_config_defaults_are_the_original_dejavu() -> None:
    cfg = DejavuConfig()
    assert (cfg.fan_value, cfg.peak_neighborhood_size, cfg.connectivity_mask) == (15, 20, "diamond")
    assert (cfg.amp_min, cfg.window_size, cfg.overlap_ratio) == (10, 4096, 0.5)
    assert cfg.module_settings()["CONNECTIVITY_MASK"] == 1
    fork = from_section(
        DejavuConfig, {"fan_value": 5, "peak_neighborhood_size": 10, "connectivity_mask": "square"}, "dejavu"
    )
    assert fork.module_settings()["CONNECTIVITY_MASK"] == 2


def test_config_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValueError, match="dejavu.fan_vaule"):
        from_section(DejavuConfig, {"fan_vaule": 15}, "dejavu")
    with pytest.raises(ValueError, match="connectivity_mask"):
        DejavuConfig(connectivity_mask="round")
    with pytest.raises(ValueError, match="fingerprint_reduction"):
        DejavuConfig(fingerprint_reduction=19)


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


_CHILD = """
import json, time
from ausil_lib.dejavu_baseline import PostgresCluster
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
