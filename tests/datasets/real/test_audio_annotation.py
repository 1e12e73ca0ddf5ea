"""The AuSiL authors' audio annotation (FIVR-200K_a / SVD_a DA labels, one Google Drive file of a format
this project could not inspect): every plausible form is split into the right per-dataset part, anything
else stops with what was found, and the download (gdown) is checksummed, atomic and never reaches the
network here: a fake downloader (or a patched gdown) stands in for Drive."""

from __future__ import annotations

import collections
import gzip
import hashlib
import io
import json
import pickle
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

from ausil_lib import cli
from ausil_lib.core.config import parse_params
from ausil_lib.datasets.real import loaders as ds
from ausil_lib.datasets.real import pipeline as dp

ROOT = Path(__file__).resolve().parents[3]
DRIVE_ID = "1Vr3NhySehJiNKIWJCicYK4pN9SjOwZ3N"

# FIVR queries are YouTube ids; one contains "SvD" as a real id may, and must still count as a FIVR query
FIVR_ANN = {
    "qSvDaaaaaa1": {"ND": ["vaaaaaaaaa1", "vaaaaaaaaa2"], "DS": [], "CS": ["vaaaaaaaaa3"], "IS": []},
    "qbbbbbbbbb2": {"ND": ["vbbbbbbbbb1"], "DS": ["vbbbbbbbbb2"], "CS": [], "IS": []},
    "qccccccccc3": {"ND": ["vccccccccc1"], "DS": [], "CS": [], "IS": []},
}
FIVR_IDS = [
    *FIVR_ANN,
    "vaaaaaaaaa1",
    "vaaaaaaaaa2",
    "vaaaaaaaaa3",
    "vbbbbbbbbb1",
    "vbbbbbbbbb2",
    "vccccccccc1",
    "dddddddddd1",
    "dddddddddd2",
]
FIVR_DA = {"qSvDaaaaaa1": {"DA": ["vaaaaaaaaa1", "vaaaaaaaaa2"]}, "qbbbbbbbbb2": {"DA": ["vbbbbbbbbb1"]}}
SVD_GT = "s1.mp4 c1.mp4 1\ns1.mp4 c2.mp4 0\ns2.mp4 c3.mp4 1\ns3.mp4 c4.mp4 1\n"
SVD_DA = {"s1": {"DA": ["c1", "x9"]}, "s3": {"DA": ["c4"]}}


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)  # fixed bytes: no clock in the gzip header


def _ids_only(ann: dict) -> dict:  # {query: set(ids)}: the DA labels without the label level
    return {q: set(labels["DA"]) for q, labels in ann.items()}


def _mp4(ann: dict) -> dict:  # SVD ids as file names, as SVD's own lists have them
    return {f"{q}.mp4": {"DA": [f"{v}.mp4" for v in labels["DA"]]} for q, labels in ann.items()}


FORMATS = {
    "json, one mapping for both": json.dumps({**FIVR_DA, **SVD_DA}).encode(),
    "json, per-dataset keys": json.dumps({"FIVR-200K_a": FIVR_DA, "SVD_a": SVD_DA, "version": "1.0"}).encode(),
    "pickle (protocol 2, sets), per-dataset keys": pickle.dumps(
        {"fivr": _ids_only(FIVR_DA), "svd": _ids_only(SVD_DA)}, protocol=2
    ),
    "pickle, one mapping for both": pickle.dumps({**FIVR_DA, **_mp4(SVD_DA)}),
    "zip of two json files": _zip(
        {
            "ausil_annotations/FIVR-200K_a.json": json.dumps(FIVR_DA).encode(),
            "ausil_annotations/SVD_a.json": json.dumps(_mp4(SVD_DA)).encode(),
            "ausil_annotations/README.txt": b"DA labels\n",
            "ausil_annotations/info.json": json.dumps({"version": "1.0", "authors": ["a", "b"]}).encode(),
            "__MACOSX/._FIVR-200K_a.json": b"\x00\x05\x16\x07",
        }
    ),
    "tar.gz of two files": _tar_gz({"fivr_a.pkl": pickle.dumps(FIVR_DA), "svd_a.json": json.dumps(SVD_DA).encode()}),
    "tar.gz of one combined file": _tar_gz({"audio_annotation.json": json.dumps({**FIVR_DA, **SVD_DA}).encode()}),
    "gzip of combined json": gzip.compress(json.dumps({**FIVR_DA, **SVD_DA}).encode()),
}


class FakeDrive:
    """A downloader with gdown's effect: writes the 'Drive file' to the output path, counting calls."""

    def __init__(self, content: bytes | None = None, error: Exception | None = None) -> None:
        self.content, self.error, self.calls = content, error, []

    def __call__(self, drive_id: str, output, quiet: bool = True) -> str:
        self.calls.append((drive_id, Path(output)))
        if self.error is not None:
            raise self.error
        Path(output).write_bytes(self.content)
        return str(output)


def make_params(tmp_path: Path, sha256: str | None = None, **fivr_extra) -> dict:
    """Params with a FIVR and an SVD dataset whose raw annotations are already in place."""
    root = tmp_path / "real"
    (root / "fivrx" / "raw").mkdir(parents=True)
    (root / "fivrx" / "raw" / "annotation.json").write_text(json.dumps(FIVR_ANN))
    (root / "fivrx" / "raw" / "youtube_ids.txt").write_text("\n".join(FIVR_IDS) + "\n")
    (root / "svdx" / "raw").mkdir(parents=True)
    (root / "svdx" / "raw" / "test_groundtruth").write_text(SVD_GT)
    fivr = {
        "kind": "fivr",
        "annotation_files": [],
        "use_authors_audio_annotation": True,
        "layout": {"annotation": "annotation.json", "youtube_ids": "youtube_ids.txt", "audio_annotation": None},
    }
    fivr.update(fivr_extra)
    return {
        "datasets": {
            "root": str(root),
            "audio_annotation": {"drive_id": DRIVE_ID, "sha256": sha256, "file": "ausil_audio_annotation"},
            "fivrx": fivr,
            "svdx": {
                "kind": "svd",
                "annotation_files": [],
                "use_authors_audio_annotation": True,
                "layout": {"groundtruth": "test_groundtruth", "audio_annotation": None, "unlabeled_ids": None},
            },
        }
    }


def shared_file(params: dict) -> Path:
    return Path(params["datasets"]["root"]) / "ausil_audio_annotation"


@pytest.mark.parametrize("form", sorted(FORMATS))
def test_each_plausible_form_gives_each_dataset_its_part(
    tmp_path: Path, form: str, capsys: pytest.CaptureFixture[str]
) -> None:
    params = make_params(tmp_path)
    drive = FakeDrive(FORMATS[form])
    out_fivr = dp.stage_annotations(parse_params(params), "fivrx", progress=False, downloader=drive)
    out_svd = dp.stage_annotations(parse_params(params), "svdx", progress=False, downloader=drive)
    # one download for both datasets, atomically renamed into place, by the id from params
    assert len(drive.calls) == 1 and drive.calls[0][0] == DRIVE_ID
    assert drive.calls[0][1].parent == shared_file(params).parent and drive.calls[0][1] != shared_file(params)
    assert shared_file(params).read_bytes() == FORMATS[form]
    assert not [p for p in shared_file(params).parent.iterdir() if p.name.startswith(".")]
    # the digest is recorded (and announced as unverified) since params pin none
    digest = hashlib.sha256(FORMATS[form]).hexdigest()
    for out in (out_fivr, out_svd):
        assert out["audio_annotation"]["sha256"] == digest and out["audio_annotation"]["verified"] is False
    assert out_fivr["audio_annotation"]["downloaded"] and not out_svd["audio_annotation"]["downloaded"]
    assert "unverified" in capsys.readouterr().err
    # the FIVR part went to load_fivr, the SVD part to load_svd, each through raw/ as plain JSON
    base = Path(params["datasets"]["root"])
    fivr_raw = json.loads((base / "fivrx" / "raw" / dp.AUTHORS_AUDIO_FILE).read_text())
    assert {q: sorted(v["DA"]) for q, v in fivr_raw.items()} == {q: sorted(v["DA"]) for q, v in FIVR_DA.items()}
    plan = json.loads((base / "fivrx" / "plan.json").read_text())
    assert sorted(plan["tasks"]["audio"]["queries"]) == sorted(FIVR_DA)
    for q, labels in FIVR_DA.items():
        assert sorted(plan["tasks"]["audio"]["annotation"][q]["DA"]) == sorted(labels["DA"])
    assert plan["audio_annotation"]["sha256"] == digest
    plan = json.loads((base / "svdx" / "plan.json").read_text())
    assert plan["tasks"]["audio"]["queries"] == ["s1", "s3"]
    assert {q: sorted(v["DA"]) for q, v in plan["tasks"]["audio"]["annotation"].items()} == {
        "s1": ["c1", "x9"],
        "s3": ["c4"],
    }


UNRECOGNISED = [
    (json.dumps(["q1", "q2", "q3"]).encode(), "top-level JSON list of 3 items"),
    (json.dumps("DA labels").encode(), "top-level JSON str"),
    (_zip({"a.txt": b"q1 v1\n", "b.csv": b"query,video\nq1,v1\n"}), "zip archive holding a.txt, b.csv"),
    (_tar_gz({"notes.md": b"# DA\n"}), "tar archive holding notes.md"),
    (b"<!DOCTYPE html><html><head><title>Google Drive</title></head></html>", "HTML page"),
    (b"query video\nq1 v1\n", "text of 2 line(s) starting 'query video'"),
    (b"\x00\x01\x02\x03garbage", "binary data of 11 bytes starting with 00 01 02 03"),
    (json.dumps({"FIVR-200K_a": FIVR_DA}).encode(), "no SVD audio annotation recognised"),
    (json.dumps({"fivr": FIVR_DA, "svd": SVD_DA, "qx": {"qq": ["v"]}}).encode(), "name neither FIVR nor SVD"),
    (json.dumps(FIVR_DA).encode(), "0 of whose 2 queries are SVD queries"),
    (json.dumps({"s1": {"DA": ["c1"], "ND": ["c2"]}}).encode(), "holds DA only"),
    (pickle.dumps(collections.OrderedDict(SVD_DA)), "pickle refers to collections.OrderedDict"),
]


# ids from the expected message: the contents themselves make unreadable ids
@pytest.mark.parametrize("content, found", UNRECOGNISED, ids=[found for _, found in UNRECOGNISED])
def test_unrecognised_content_names_the_file_and_what_it_holds(tmp_path: Path, content: bytes, found: str) -> None:
    params = make_params(tmp_path)
    with pytest.raises(ds.DatasetError) as err:
        dp.stage_annotations(parse_params(params), "svdx", progress=False, downloader=FakeDrive(content))
    assert str(shared_file(params)) in str(err.value) and found in str(err.value)
    assert not (Path(params["datasets"]["root"]) / "svdx" / "plan.json").exists()


def test_pickles_naming_other_classes_are_never_loaded(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    for protocol in (0, 2, 5):
        path = tmp_path / f"evil{protocol}"
        path.write_bytes(pickle.dumps({"s1": {"DA": [Payload()]}}, protocol=protocol))
        with pytest.raises(ds.DatasetError, match=r"pickle refers to \S+; only plain .* refused") as err:
            ds.read_authors_audio_annotation(path, "svd", ["s1"])
        assert str(path) in str(err.value)
    archive = tmp_path / "evil.zip"
    archive.write_bytes(_zip({"svd_a.pkl": pickle.dumps({"s1": {"DA": [Payload()]}})}))
    with pytest.raises(ds.DatasetError, match=r"member svd_a.pkl.*pickle refers to"):
        ds.read_authors_audio_annotation(archive, "svd", ["s1"])
    assert not marker.exists()
    # a text file starting like a GLOBAL opcode is unrecognised text, not a refused pickle
    text = tmp_path / "counts.csv"
    text.write_text("count,query\n3,s1\n")
    with pytest.raises(ds.DatasetError, match="text of 2 line"):
        ds.read_authors_audio_annotation(text, "svd", ["s1"])


def test_offline_stops_with_one_line_saying_where_to_put_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gdown
    import requests

    calls = []

    def unreachable(**kwargs):
        calls.append(kwargs)
        Path(kwargs["output"]).write_bytes(b"partial")
        raise requests.exceptions.ConnectionError("Failed to resolve 'drive.google.com'\n(Name or service not known)")

    monkeypatch.setattr(gdown, "download", unreachable)  # the default downloader, without any network
    params = make_params(tmp_path)
    with pytest.raises(dp.StageError) as err:
        dp.stage_annotations(parse_params(params), "fivrx", progress=False)
    message = str(err.value)
    assert calls and calls[0]["id"] == DRIVE_ID and calls[0]["quiet"] is True
    assert "\n" not in message and "could not download" in message and "ConnectionError" in message
    assert f"put it at {shared_file(params)} (datasets.audio_annotation.file" in message
    assert DRIVE_ID in message and "use_authors_audio_annotation: false" in message
    assert not list(shared_file(params).parent.glob(".ausil_audio_annotation*"))  # no partial file left


def test_offline_through_the_command_line_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import gdown

    def unreachable(**kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(gdown, "download", unreachable)
    params = make_params(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    rc = cli.main(
        ["--params", str(tmp_path / "params.yaml"), "dataset", "annotations", "--dataset", "svdx", "--no-progress"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "could not download" in err[0] and "Traceback" not in err[0]


def test_a_hand_supplied_file_is_used_without_download(tmp_path: Path) -> None:
    params = make_params(tmp_path)
    shared_file(params).parent.mkdir(parents=True, exist_ok=True)
    shared_file(params).write_bytes(FORMATS["json, per-dataset keys"])
    drive = FakeDrive(error=AssertionError("no download expected"))
    out = dp.stage_annotations(parse_params(params), "fivrx", progress=False, downloader=drive)
    assert not drive.calls and out["tasks"]["audio"]["queries"] == 2


def test_a_pinned_digest_is_verified(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    content = FORMATS["json, one mapping for both"]
    good = hashlib.sha256(content).hexdigest()
    params = make_params(tmp_path, sha256=good)
    out = dp.stage_annotations(parse_params(params), "fivrx", progress=False, downloader=FakeDrive(content))
    assert out["audio_annotation"]["verified"] is True and "unverified" not in capsys.readouterr().err
    # a download that does not match is discarded, naming the file and both digests
    bad = "0" * 64
    params = make_params(tmp_path / "other", sha256=bad)
    with pytest.raises(dp.StageError) as err:
        dp.stage_annotations(parse_params(params), "fivrx", progress=False, downloader=FakeDrive(content))
    assert good in str(err.value) and bad in str(err.value) and str(shared_file(params)) in str(err.value)
    assert not shared_file(params).exists()
    # as is a file present that does not match (kept: it may be the user's own copy)
    shared_file(params).write_bytes(content)
    with pytest.raises(dp.StageError, match=f"{good}.*{bad}"):
        dp.stage_annotations(parse_params(params), "fivrx", progress=False, downloader=FakeDrive(content))
    assert shared_file(params).is_file()


def test_the_authors_file_is_used_only_when_asked(tmp_path: Path) -> None:
    drive = FakeDrive(error=AssertionError("no download expected"))
    params = make_params(tmp_path, use_authors_audio_annotation=False)
    out = dp.stage_annotations(parse_params(params), "fivrx", progress=False, downloader=drive)
    assert "audio" not in out["tasks"] and "audio_annotation" not in out
    own = {"qccccccccc3": {"DA": ["vccccccccc1"]}}  # the dataset's own DA file takes precedence
    params = make_params(tmp_path / "own")
    (Path(params["datasets"]["root"]) / "fivrx" / "raw" / "own_da.json").write_text(json.dumps(own))
    params["datasets"]["fivrx"]["layout"]["audio_annotation"] = "own_da.json"
    out = dp.stage_annotations(parse_params(params), "fivrx", progress=False, downloader=drive)
    assert out["tasks"]["audio"]["queries"] == 1 and not drive.calls


def test_params_point_fivr_and_svd_at_the_authors_drive_file() -> None:
    d = yaml.safe_load((ROOT / "params.yaml").read_text())["datasets"]
    assert d["audio_annotation"]["drive_id"] == DRIVE_ID and d["audio_annotation"]["file"]
    for name in ("fivr200k", "fivr5k", "svd"):
        assert d[name]["use_authors_audio_annotation"] is True and d[name]["layout"]["audio_annotation"] is None
