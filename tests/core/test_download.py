"""Fetching with a checksum, against a throwaway HTTP server on loopback."""

from __future__ import annotations

import functools
import hashlib
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from ausil_lib.core.download import DownloadError, fetch

PAYLOAD = bytes(range(256)) * 4000


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "weights.pkl").write_bytes(PAYLOAD)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_fetch_verifies_checksum(server: str, tmp_path: Path) -> None:
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    dest = tmp_path / "out" / "w.pkl"
    assert fetch(f"{server}/weights.pkl", dest, sha256=digest, progress=False) == digest
    assert dest.read_bytes() == PAYLOAD


def test_wrong_checksum_discards_the_download(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "dl" / "w.pkl"
    with pytest.raises(DownloadError, match="does not match"):
        fetch(f"{server}/weights.pkl", dest, sha256="0" * 64, progress=False)
    assert list(dest.parent.iterdir()) == []  # neither the file nor a partial download


def test_unknown_checksum_returns_the_digest(server: str, tmp_path: Path) -> None:
    assert fetch(f"{server}/weights.pkl", tmp_path / "w.pkl", progress=False) == hashlib.sha256(PAYLOAD).hexdigest()


def test_missing_url_is_a_clear_error(server: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="nothing.pkl: download failed"):
        fetch(f"{server}/nothing.pkl", tmp_path / "w.pkl", progress=False)


def test_verified_file_is_not_downloaded_again(tmp_path: Path) -> None:
    dest = tmp_path / "w.pkl"
    dest.write_bytes(PAYLOAD)
    # the URL is unreachable: a matching local file must short-circuit the download
    assert fetch("http://127.0.0.1:9/none", dest, sha256=hashlib.sha256(PAYLOAD).hexdigest(), progress=False)


def test_file_url(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    fetch(src.as_uri(), tmp_path / "copy.bin", progress=False)
    assert (tmp_path / "copy.bin").read_bytes() == PAYLOAD
