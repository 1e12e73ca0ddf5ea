"""YouTube downloads against a fake yt-dlp script, and archive fetching over file:// URLs."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from ausil_lib.core import download
from ausil_lib.core.config import YoutubeConfig
from ausil_lib.core.download import DownloadError
from ausil_lib.datasets.real import fetch as fetch_mod
from ausil_lib.datasets.real.fetch import ArchiveSpec, download_youtube, fetch_archives

AUDIO = b"fake m4a audio payload"

# Behaviour by id: "gone*" is permanently unavailable; ids in FAKE_YTDLP_FAILS fail with an
# HTTP 503 that many times (counted in FAKE_YTDLP_STATE) and then succeed; "hang*" never ends;
# every other id is "downloaded" by copying the fixture file.
FAKE_YTDLP = r"""
import json, os, shutil, sys, time
argv = sys.argv[1:]
with open(os.environ["FAKE_YTDLP_LOG"], "a") as log:
    log.write(json.dumps(argv) + "\n")
template = argv[argv.index("-o") + 1]
url = argv[argv.index("--") + 1]
video_id = url.split("v=", 1)[1]
if video_id.startswith("gone"):
    print(f"ERROR: [youtube] {video_id}: Video unavailable", file=sys.stderr)
    sys.exit(1)
if video_id.startswith("hang"):
    time.sleep(30)
fails = json.loads(os.environ.get("FAKE_YTDLP_FAILS", "{}")).get(video_id, 0)
state = os.path.join(os.environ["FAKE_YTDLP_STATE"], video_id)
done = int(open(state).read()) if os.path.exists(state) else 0
if done < fails:
    open(state, "w").write(str(done + 1))
    print("WARNING: retrying", file=sys.stderr)
    print("ERROR: unable to download video data: HTTP Error 503: Service Unavailable", file=sys.stderr)
    sys.exit(1)
shutil.copyfile(os.environ["FAKE_YTDLP_FIXTURE"], template.replace("%(ext)s", "m4a"))
"""


class FakeTime:
    """Injected clock and sleep: time moves only when slept on (or advanced by a test)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Returns (config, calls): calls() lists the ids the fake yt-dlp was asked for, in order."""
    script = tmp_path / "fake_yt_dlp.py"
    script.write_text(FAKE_YTDLP)
    fixture = tmp_path / "fixture.m4a"
    fixture.write_bytes(AUDIO)
    log = tmp_path / "fake_calls.jsonl"
    state = tmp_path / "fake_state"
    state.mkdir()
    monkeypatch.setenv("FAKE_YTDLP_LOG", str(log))
    monkeypatch.setenv("FAKE_YTDLP_STATE", str(state))
    monkeypatch.setenv("FAKE_YTDLP_FIXTURE", str(fixture))
    cfg = YoutubeConfig(command=[sys.executable, str(script)], sleep_s=0.0, retries=2)

    def argvs() -> list[list[str]]:
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def calls() -> list[str]:
        return [argv[-1].split("v=", 1)[1] for argv in argvs()]

    calls.argvs = argvs  # type: ignore[attr-defined]
    return cfg, calls


def read_log(out: Path) -> dict[str, tuple[str, str]]:
    lines = (out / "download_log.tsv").read_text().splitlines()
    assert lines[0] == "video_id\tstatus\treason"
    outcomes = {}
    for line in lines[1:]:
        vid, status, reason = line.split("\t")
        outcomes[vid] = (status, reason)
    return outcomes


def test_downloads_with_expected_arguments(fake, tmp_path: Path) -> None:
    cfg, calls = fake
    cfg = replace(cfg, format="bestaudio[ext=m4a]", rate_limit="2M")
    out = tmp_path / "videos"
    report = download_youtube(["abc", "-dash_1", "abc"], out, cfg, progress=False)
    assert report.downloaded == ["abc", "-dash_1"] and not report.failed and not report.unavailable
    assert (out / "abc.m4a").read_bytes() == AUDIO and (out / "-dash_1.m4a").read_bytes() == AUDIO
    argv = calls.argvs()[1]
    assert argv[-2:] == ["--", "https://www.youtube.com/watch?v=-dash_1"]
    assert argv[argv.index("-f") + 1] == "bestaudio[ext=m4a]"
    assert argv[argv.index("--limit-rate") + 1] == "2M"
    assert argv[argv.index("-o") + 1] == str(out / "-dash_1.%(ext)s")
    assert {"--no-playlist", "--no-progress", "--continue", "--socket-timeout"} <= set(argv)
    assert "--no-part" not in argv

    assert read_log(out) == {"abc": ("downloaded", ""), "-dash_1": ("downloaded", "")}
    saved = json.loads((out / "download_report.json").read_text())
    assert saved["downloaded"] == ["abc", "-dash_1"]
    assert saved["counts"] == {"downloaded": 2, "present": 0, "unavailable": 0, "failed": 0}
    assert report.summary() == "2 ids: 2 downloaded, 0 already present, 0 unavailable, 0 failed"


def test_no_rate_limit_option_when_unset(fake, tmp_path: Path) -> None:
    cfg, calls = fake
    cfg = replace(cfg, rate_limit=None)
    download_youtube(["abc"], tmp_path / "v", cfg, progress=False)
    assert "--limit-rate" not in calls.argvs()[0]


def test_resume_skips_finished_files_but_not_partial_ones(fake, tmp_path: Path) -> None:
    cfg, calls = fake
    out = tmp_path / "videos"
    out.mkdir()
    (out / "have.webm").write_bytes(b"done")
    (out / "part.m4a.part").write_bytes(b"half")
    (out / "frag.f140.m4a").write_bytes(b"a format before merging")
    report = download_youtube(["have", "part", "frag"], out, cfg, progress=False)
    assert report.present == ["have"] and report.downloaded == ["part", "frag"]
    assert calls() == ["part", "frag"]

    report = download_youtube(["have", "part", "frag"], out, cfg, progress=False)
    assert report.present == ["have", "part", "frag"] and report.downloaded == []
    assert calls() == ["part", "frag"]  # not called again
    assert read_log(out)["part"] == ("present", "")


def test_unavailable_recorded_and_not_retried(fake, tmp_path: Path) -> None:
    cfg, calls = fake
    out = tmp_path / "videos"
    report = download_youtube(["gone1", "ok"], out, cfg, progress=False)
    reason = "ERROR: [youtube] gone1: Video unavailable"
    assert report.unavailable == {"gone1": reason} and report.downloaded == ["ok"]
    assert calls() == ["gone1", "ok"]  # permanent: no retry within the run
    assert read_log(out)["gone1"] == ("unavailable", reason)

    report = download_youtube(["gone1", "ok"], out, cfg, progress=False)
    assert report.unavailable == {"gone1": reason} and report.present == ["ok"]
    assert calls() == ["gone1", "ok"]  # not asked again

    report = download_youtube(["gone1"], out, cfg, progress=False, retry_unavailable=True)
    assert calls() == ["gone1", "ok", "gone1"]
    assert json.loads((out / "download_report.json").read_text())["counts"]["unavailable"] == 1


def test_transient_failure_retried_then_succeeds(fake, tmp_path: Path, monkeypatch) -> None:
    cfg, calls = fake
    monkeypatch.setenv("FAKE_YTDLP_FAILS", json.dumps({"flaky": 2}))
    fake_time = FakeTime()
    cfg = replace(cfg, sleep_s=1.0)
    report = download_youtube(
        ["flaky"], tmp_path / "v", cfg, progress=False, sleep=fake_time.sleep, clock=fake_time.clock
    )
    assert report.downloaded == ["flaky"] and calls() == ["flaky"] * 3
    assert fake_time.sleeps == [2.0, 4.0]  # backs off between attempts


def test_exhausted_retries_fail_and_are_retried_next_run(fake, tmp_path: Path, monkeypatch) -> None:
    cfg, calls = fake
    monkeypatch.setenv("FAKE_YTDLP_FAILS", json.dumps({"busy": 4}))
    out = tmp_path / "videos"
    report = download_youtube(["busy", "ok"], out, cfg, progress=False)
    reason = "ERROR: unable to download video data: HTTP Error 503: Service Unavailable"
    assert report.failed == {"busy": reason} and report.downloaded == ["ok"]
    assert calls() == ["busy"] * 3 + ["ok"]
    assert read_log(out)["busy"] == ("failed", reason)
    assert not list(out.glob("busy.*"))

    report = download_youtube(["busy", "ok"], out, cfg, progress=False)
    assert report.downloaded == ["busy"] and report.present == ["ok"] and not report.failed
    assert calls() == ["busy"] * 3 + ["ok"] + ["busy"] * 2
    assert read_log(out)["busy"] == ("downloaded", "")


def test_timeout_is_a_failure_not_a_crash(fake, tmp_path: Path) -> None:
    cfg, _ = fake
    # 5 s: far above a loaded machine's start-up time of the fake (the "ok" download must finish), far
    # below the hang (which never ends), so the verdict does not depend on the machine's load
    cfg = replace(cfg, timeout_s=5.0, retries=0)
    report = download_youtube(["hang1", "ok"], tmp_path / "v", cfg, progress=False)
    assert report.failed == {"hang1": "yt-dlp timed out after 5 s"} and report.downloaded == ["ok"]


def test_requests_are_spaced_by_sleep_s(fake, tmp_path: Path, monkeypatch) -> None:
    cfg, _ = fake
    cfg = replace(cfg, sleep_s=1.0)
    fake_time = FakeTime()
    starts: list[float] = []
    real_run = subprocess.run

    def timed_run(*args, **kwargs):
        starts.append(fake_time.now)
        fake_time.now += 0.3  # each request "takes" 0.3 s
        return real_run(*args, **kwargs)

    monkeypatch.setattr(fetch_mod.subprocess, "run", timed_run)
    out = tmp_path / "videos"
    out.mkdir()
    (out / "have.m4a").write_bytes(b"done")
    download_youtube(["a", "have", "b", "c"], out, cfg, progress=False, sleep=fake_time.sleep, clock=fake_time.clock)
    assert len(starts) == 3
    assert all(later - earlier >= cfg.sleep_s for earlier, later in zip(starts, starts[1:]))
    assert fake_time.sleeps == pytest.approx([0.7, 0.7])  # only the missing part of the gap


def test_missing_command_is_fatal_and_named(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-yt-dlp")
    with pytest.raises(DownloadError, match="no-such-yt-dlp"):
        download_youtube(["abc"], tmp_path / "v", YoutubeConfig(command=[missing]), progress=False)


def test_ids_that_are_not_youtube_ids_are_refused(fake, tmp_path: Path) -> None:
    cfg, calls = fake
    with pytest.raises(ValueError, match="not YouTube ids"):
        download_youtube(["ok", "../escape"], tmp_path / "v", cfg, progress=False)
    assert calls() == []


def test_log_cut_short_by_a_kill_is_tolerated(fake, tmp_path: Path) -> None:
    cfg, calls = fake
    out = tmp_path / "videos"
    out.mkdir()
    (out / "download_log.tsv").write_text("video_id\tstatus\treason\ngone1\tunavailable\tERROR: x\nok\tfai")
    report = download_youtube(["gone1", "ok"], out, cfg, progress=False)
    assert report.unavailable == {"gone1": "ERROR: x"} and report.downloaded == ["ok"]
    assert calls() == ["ok"]
    assert read_log(out) == {"gone1": ("unavailable", "ERROR: x"), "ok": ("downloaded", "")}


# --------------------------------------------------------------------------- archives


def make_zip(path: Path, members: dict[str, bytes]) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_archives_extract_and_second_call_skips(tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "src"
    src.mkdir()
    zip_sha = make_zip(src / "svd.zip", {"svd/a.txt": b"A", "svd/sub/b.txt": b"B"})
    tar_sha = make_tar(src / "vcdb.tar.gz", {"vcdb/c.txt": b"C"}, links={"vcdb/link": "c.txt"})
    (src / "gt.json").write_text('{"q": {}}')
    specs = [
        ArchiveSpec((src / "svd.zip").as_uri(), zip_sha),
        ArchiveSpec((src / "vcdb.tar.gz").as_uri(), tar_sha.upper()),
        ArchiveSpec((src / "gt.json").as_uri(), None, name="annotations.json"),
    ]
    dl, ex = tmp_path / "dl", tmp_path / "ex"
    results = fetch_archives(specs, dl, ex, progress=False)
    assert [(r["name"], r["extracted"], r["members"]) for r in results] == [
        ("svd.zip", True, 2),
        ("vcdb.tar.gz", True, 2),
        ("annotations.json", True, 1),
    ]
    assert results[0]["bytes"] == (src / "svd.zip").stat().st_size and results[1]["sha256"] == tar_sha
    assert (ex / "svd/sub/b.txt").read_bytes() == b"B" and (ex / "vcdb/link").read_bytes() == b"C"
    assert (ex / "annotations.json").read_text() == '{"q": {}}'
    assert (ex / ".extracted" / f"svd.zip.{zip_sha}").is_file()

    # Second call: no download (the sources are gone), no extraction (edits survive).
    for f in src.iterdir():
        f.unlink()
    (ex / "svd/a.txt").write_bytes(b"edited")
    monkeypatch.setattr(download, "fetch", lambda url, dest, sha256, **kw: download.sha256_file(dest))
    again = fetch_archives(specs, dl, ex, progress=False)
    assert [r["extracted"] for r in again] == [False, False, False]
    assert [r["members"] for r in again] == [2, 2, 1]
    assert (ex / "svd/a.txt").read_bytes() == b"edited"

    # An interrupted extraction (no marker) is redone.
    (ex / ".extracted" / f"svd.zip.{zip_sha}").unlink()
    assert fetch_archives(specs[:1], dl, ex, progress=False)[0]["extracted"] is True
    assert (ex / "svd/a.txt").read_bytes() == b"A"


def test_unverified_file_warns_and_records_digest(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    digest = hashlib.sha256(b"hello").hexdigest()
    [result] = fetch_archives(
        [ArchiveSpec((tmp_path / "notes.txt").as_uri(), None)], tmp_path / "dl", tmp_path / "ex", progress=False
    )
    assert result["sha256"] == digest and result["members"] == 1
    assert "unverified" in capsys.readouterr().err


def test_checksum_mismatch_raises_and_extracts_nothing(tmp_path: Path) -> None:
    make_zip(tmp_path / "svd.zip", {"a.txt": b"A"})
    spec = ArchiveSpec((tmp_path / "svd.zip").as_uri(), "0" * 64)
    with pytest.raises(DownloadError, match="does not match"):
        fetch_archives([spec], tmp_path / "dl", tmp_path / "ex", progress=False)
    assert not (tmp_path / "dl" / "svd.zip").exists()
    assert not any((tmp_path / "ex").rglob("*"))


@pytest.mark.parametrize(
    "kind,member",
    [("zip", "../evil.txt"), ("zip", "/abs/evil.txt"), ("tar", "ok/../../evil.txt"), ("tar-link", "ok/link")],
)
def test_escaping_members_are_refused(tmp_path: Path, kind: str, member: str) -> None:
    if kind == "zip":
        archive = tmp_path / "bad.zip"
        sha = make_zip(archive, {"fine.txt": b"x", member: b"evil"})
    else:
        archive = tmp_path / "bad.tar.gz"
        sha = (
            make_tar(archive, {"fine.txt": b"x", member: b"evil"})
            if kind == "tar"
            else make_tar(archive, {"fine.txt": b"x"}, links={member: "../../outside"})
        )
    ex = tmp_path / "deep" / "ex"
    with pytest.raises(DownloadError, match=f"{archive.name}: member '{member}'"):
        fetch_archives([ArchiveSpec(archive.as_uri(), sha)], tmp_path / "dl", ex, progress=False)
    assert not any(ex.rglob("*")) and not (tmp_path / "deep" / "evil.txt").exists()
