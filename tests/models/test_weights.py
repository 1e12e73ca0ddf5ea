"""`ausil fetch-weights`: pinned release files, verified by git blob id, resumable, offline-safe."""

from __future__ import annotations

import hashlib
import io
import json
import urllib.error
from pathlib import Path

import pytest
import yaml

from ausil_lib.cli import EXIT_UNREACHABLE, main
from ausil_lib.core.config import ReleaseConfig, ReleaseFile, load_params
from ausil_lib.models.weights import (
    WeightsError,
    WeightsUnreachable,
    digests,
    download,
    fetch_release,
)

VENDORED_INDEX = Path(__file__).resolve().parents[1] / "data" / "ausil_released" / "model.index"


def git_blob(data: bytes) -> str:
    """Git's object id of a file, written out here independently of the library."""
    return hashlib.sha1(b"blob " + str(len(data)).encode() + b"\0" + data).hexdigest()


class _Response(io.BytesIO):
    def __init__(self, data: bytes, status: int) -> None:
        super().__init__(data)
        self.status = status
        self.headers = {"Content-Length": str(len(data))}


class FakeServer:
    """Serves {url: bytes}; honours Range unless told not to; can cut a response short or be offline."""

    def __init__(self, files: dict[str, bytes], ranges: bool = True) -> None:
        self.files, self.ranges = files, ranges
        self.calls: list[tuple[str, int]] = []
        self.cut_after: int | None = None
        self.offline = False

    def __call__(self, url: str, offset: int, timeout_s: float) -> _Response:
        self.calls.append((url, offset))
        if self.offline:
            raise urllib.error.URLError("[Errno -2] Name or service not known")
        data = self.files[url]
        if offset and self.ranges:
            body, status = data[offset:], 206
        else:
            body, status = data, 200
        if self.cut_after is not None:
            body, self.cut_after = body[: self.cut_after], None
            response = _Response(body, status)
            real_read = response.read

            def read(n: int = -1) -> bytes:
                chunk = real_read(n)
                if not chunk:
                    raise ConnectionError("connection reset by peer")
                return chunk

            response.read = read  # type: ignore[method-assign]
            return response
        return _Response(body, status)


def _pin(data: bytes, dest: Path, **extra) -> ReleaseFile:
    return ReleaseFile(path="ckpt/f.bin", dest=str(dest), git_blob=git_blob(data), **extra)


def test_digests_match_git_on_the_vendored_release_index() -> None:
    data = VENDORED_INDEX.read_bytes()
    got = digests(VENDORED_INDEX)
    assert got.git_blob == git_blob(data) == "a42726a9cf5c2daa5fa9e2e4ce971ab1208ab355"
    assert got.size == len(data) == 1317
    pinned = load_params("params.yaml").release.model_index
    assert (pinned.git_blob, pinned.sha256, pinned.size) == (got.git_blob, got.sha256, got.size)


def test_shipped_release_pins_are_complete() -> None:
    cfg = load_params("params.yaml").release
    for role, pin in cfg.files().items():
        assert len(pin.git_blob) == 40 and int(pin.git_blob, 16) >= 0, role
        assert cfg.commit in cfg.url_of(pin) and pin.path in cfg.url_of(pin)
    assert cfg.model_prefix + ".data-00000-of-00001" == cfg.model_data.dest
    assert cfg.model_data.size == 26_717_212  # end of the last tensor the released index lists


def test_download_verifies_and_resumes_after_an_interruption(tmp_path: Path) -> None:
    data = bytes(range(256)) * 4000
    server = FakeServer({"u": data})
    server.cut_after = 300_000
    dest = tmp_path / "w" / "f.bin"
    with pytest.raises(WeightsUnreachable, match="connection reset"):
        download("u", dest, _pin(data, dest), progress=False, opener=server)
    part = dest.with_name("f.bin.part")
    assert not dest.exists() and 0 < part.stat().st_size < len(data)
    got = download("u", dest, _pin(data, dest), progress=False, opener=server)
    assert server.calls[-1] == ("u", part_size := server.calls[-1][1]) and part_size > 0  # resumed, not restarted
    assert dest.read_bytes() == data and got.git_blob == git_blob(data) and not part.exists()


def test_a_server_without_ranges_restarts_cleanly(tmp_path: Path) -> None:
    data = b"weights" * 50_000
    dest = tmp_path / "f.bin"
    dest.with_name("f.bin.part").write_bytes(b"stale garbage")
    download("u", dest, _pin(data, dest), progress=False, opener=FakeServer({"u": data}, ranges=False))
    assert dest.read_bytes() == data


def test_a_corrupt_download_is_refused_by_name_with_both_digests(tmp_path: Path) -> None:
    good, bad = b"x" * 10_000, b"x" * 9_999 + b"y"
    dest = tmp_path / "model.data-00000-of-00001"
    with pytest.raises(WeightsError) as info:
        download("u", dest, _pin(good, dest), progress=False, opener=FakeServer({"u": bad}))
    message = str(info.value)
    assert "model.data-00000-of-00001" in message and git_blob(good) in message and git_blob(bad) in message
    assert not dest.exists() and not dest.with_name(dest.name + ".part").exists()


def _release(tmp_path: Path, files: dict[str, bytes]) -> ReleaseConfig:
    root = tmp_path / "weights"
    dests = {
        "backbone": root / "bb.pkl",
        "model_index": root / "m" / "model.index",
        "model_data": root / "m" / "model.data-00000-of-00001",
    }
    return ReleaseConfig(
        repository="o/r",
        commit="c" * 40,
        url="mem://{repository}/{commit}/{path}",
        timeout_s=5,
        manifest=str(root / "manifest.json"),
        **{role: ReleaseFile(path=role, dest=str(dests[role]), git_blob=git_blob(files[role])) for role in dests},
    )


def test_fetch_release_skips_verified_files_and_writes_the_manifest(tmp_path: Path) -> None:
    files = {"backbone": b"b" * 5000, "model_index": b"i" * 100, "model_data": b"d" * 7000}
    cfg = _release(tmp_path, files)
    server = FakeServer({cfg.url_of(pin): files[role] for role, pin in cfg.files().items()})
    report = fetch_release(cfg, progress=False, opener=server)
    assert sorted(report.fetched) == sorted(files) and report.model_available
    manifest = json.loads(Path(cfg.manifest).read_text())
    assert manifest["released_model_available"] and manifest["released_model_prefix"] == cfg.model_prefix
    assert manifest["files"]["model_data"]["git_blob"] == git_blob(files["model_data"])
    server.offline = True  # nothing is fetched again: verified files are kept
    again = fetch_release(cfg, progress=False, opener=server)
    assert again.fetched == [] and again.unreachable is None and len(server.calls) == 3
    Path(cfg.model_data.dest).write_bytes(b"d" * 6999 + b"e")  # a present file that was tampered with
    with pytest.raises(WeightsError, match="model.data-00000-of-00001: git blob id"):
        fetch_release(cfg, progress=False, opener=server)


def test_offline_fetch_reports_once_and_records_nothing_available(tmp_path: Path) -> None:
    files = {"backbone": b"b", "model_index": b"i", "model_data": b"d"}
    cfg = _release(tmp_path, files)
    server = FakeServer({})
    server.offline = True
    report = fetch_release(cfg, progress=False, opener=server)
    assert "Name or service not known" in (report.unreachable or "") and len(server.calls) == 1
    assert set(report.missing) == set(files) and not report.model_available
    assert json.loads(Path(cfg.manifest).read_text())["released_model_available"] is False


def _params_file(tmp_path: Path, url: str) -> Path:
    params = yaml.safe_load(Path("params.yaml").read_text())
    rel = params["release"]
    rel["url"] = url
    rel["manifest"] = str(tmp_path / "w" / "manifest.json")
    for role in ("backbone", "model_index", "model_data"):
        rel[role]["dest"] = str(tmp_path / "w" / Path(rel[role]["dest"]).name)
    rel["model_index"]["dest"] = str(tmp_path / "w" / "m" / "model.index")
    rel["model_data"]["dest"] = str(tmp_path / "w" / "m" / "model.data-00000-of-00001")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_cli_offline_is_one_line_and_its_own_exit_status(tmp_path: Path, capsys) -> None:
    params = _params_file(tmp_path, "http://127.0.0.1:9/{repository}/{commit}/{path}")  # discard port: refused
    assert main(["--params", str(params), "fetch-weights", "--no-progress"]) == EXIT_UNREACHABLE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ausil fetch-weights: could not reach http://127.0.0.1:9/")
    assert main(["--params", str(params), "fetch-weights", "--optional", "--no-progress"]) == 0
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.strip().splitlines()) == 1 and "not available" in out.err
    assert json.loads((tmp_path / "w" / "manifest.json").read_text())["released_model_available"] is False


def test_the_real_index_downloads_over_a_file_url_against_its_pins(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror" / "mever-team" / "ausil" / "51dc3b87bc412cd231aa7fc40703b8f4f582d2ec" / "ckpt"
    mirror.mkdir(parents=True)
    (mirror / "model.index").write_bytes(VENDORED_INDEX.read_bytes())
    params = _params_file(tmp_path, (tmp_path / "mirror").as_uri() + "/{repository}/{commit}/{path}")
    cfg = load_params(params).release
    got = download(cfg.url_of(cfg.model_index), Path(cfg.model_index.dest), cfg.model_index, progress=False)
    assert got.sha256 == cfg.model_index.sha256
    assert Path(cfg.model_index.dest).read_bytes() == VENDORED_INDEX.read_bytes()
