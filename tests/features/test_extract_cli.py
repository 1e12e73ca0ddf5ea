"""`ausil extract` on a folder of good and bad files: descriptors, failure report, resume."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from ausil_lib.cli import main
from ausil_lib.core import provenance
from ausil_lib.core.formats import write_video_list
from ausil_lib.features.extraction import DESCRIPTOR_CODE, feature_path, load_features
from ausil_lib.models.backbone import DESCRIPTOR_DIM

from ..dvc_deps import module_closure
from ..helpers import SR, chords, video_without_audio


@pytest.fixture
def params_file(tmp_path: Path) -> Path:
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["backbone"].update(source="random", trained_weights=str(tmp_path / "none.pt"))
    params["release"]["backbone"]["dest"] = str(tmp_path / "none.pkl")
    params["device"] = "cpu"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture
def video_folder(tmp_path: Path, make_media) -> dict[str, str]:
    videos = {
        "mp4_aac": make_media("a.mp4", chords(3.5, seed=1)),
        "webm_opus": make_media("b.webm", chords(2.5, seed=2)),
        "ogg": make_media("c.ogg", chords(4.0, seed=3)),
        "wav": make_media("d.wav", chords(1.2, seed=4)),
        "silent": make_media("e.mp4", np.zeros(2 * SR, np.float32)),
    }
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 30000, dtype=np.uint8).tobytes())
    no_audio = tmp_path / "no_audio.mp4"
    video_without_audio(no_audio)
    videos.update(corrupt=corrupt, no_audio=no_audio, missing=tmp_path / "gone.mp4")
    return {k: str(v) for k, v in videos.items()}


def test_extract_folder_with_bad_files_and_resume(tmp_path: Path, params_file: Path, video_folder, capsys) -> None:
    listing = tmp_path / "videos.txt"
    write_video_list(listing, video_folder)
    out = tmp_path / "features"
    argv = [
        "--params",
        str(params_file),
        "extract",
        "--videos",
        str(listing),
        "--output-dir",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    first = capsys.readouterr()
    assert "5 extracted, 0 already done, 3 failed" in first.out
    assert "UNTRAINED" in first.err  # the random control backbone is never silent

    for vid, seconds in [("mp4_aac", 3.5), ("webm_opus", 2.5), ("ogg", 4.0), ("wav", 1.2), ("silent", 2.0)]:
        feats = load_features(feature_path(out, vid))
        assert feats.video_id == vid and feats.meta["backbone"]["source"] == "random"
        # segments at 1 s steps as the released extractor cuts them: 1-176 zero rows, then 1-87, pairs of blocks
        frames = int(seconds * SR) // 512 + 1
        padded = frames + 176 - frames % 176
        padded += 87 - padded % 87
        assert feats.descriptors.shape == (padded // 87 - 1, DESCRIPTOR_DIM)
        assert np.isfinite(feats.descriptors).all()

    report = (out / "failures.tsv").read_text().splitlines()
    assert report[0] == "video_id\tpath\treason" and len(report) == 4
    reasons = {line.split("\t")[0]: line.split("\t")[2] for line in report[1:]}
    assert "corrupt" in reasons["corrupt"]
    assert "no audio stream" in reasons["no_audio"]
    assert "missing file" in reasons["missing"]
    for vid in ("corrupt", "no_audio", "missing"):
        assert f"FAILED {vid}: {video_folder[vid]}: " in first.err

    stamps = {vid: feature_path(out, vid).stat().st_mtime_ns for vid in ("mp4_aac", "silent")}
    assert main(argv) == 0
    assert "0 extracted, 5 already done, 3 failed" in capsys.readouterr().out
    assert stamps == {vid: feature_path(out, vid).stat().st_mtime_ns for vid in stamps}


def test_changed_time_step_recomputes(tmp_path: Path, params_file: Path, make_media, capsys) -> None:
    listing = tmp_path / "videos.txt"
    write_video_list(listing, {"x": str(make_media("x.wav", chords(3.0, seed=8)))})
    base = [
        "--params",
        str(params_file),
        "extract",
        "--videos",
        str(listing),
        "--output-dir",
        str(tmp_path / "f"),
        "--no-progress",
    ]
    assert main(base) == 0
    assert main(base + ["--time-step-ms", "125"]) == 0
    assert "1 extracted, 0 already done" in capsys.readouterr().out.splitlines()[-1]
    assert load_features(feature_path(tmp_path / "f", "x")).meta["signature"]["time_step_ms"] == 125


def test_edited_descriptor_code_recomputes(
    tmp_path: Path, params_file: Path, make_media, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed run keeps a stored file only under the same code: an edit of the front end (here, one
    byte more in a copy of logmel.py) extracts again instead of keeping the old numbers."""
    listing = tmp_path / "videos.txt"
    write_video_list(listing, {"x": str(make_media("x.wav", chords(3.0, seed=8)))})
    argv = ["--params", str(params_file), "extract", "--videos", str(listing), "--output-dir", str(tmp_path / "f")]
    assert main([*argv, "--no-progress"]) == 0
    assert main([*argv, "--no-progress"]) == 0
    assert "0 extracted, 1 already done" in capsys.readouterr().out.splitlines()[-1]
    copy = tmp_path / "package"
    shutil.copytree(provenance.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "features" / "logmel.py").write_text((copy / "features" / "logmel.py").read_text() + "\n")
    monkeypatch.setattr(provenance, "PACKAGE", copy)
    assert main([*argv, "--no-progress"]) == 0
    assert "1 extracted, 0 already done" in capsys.readouterr().out.splitlines()[-1]


def test_descriptor_code_is_what_extraction_imports() -> None:
    closure = module_closure({"features.extraction"})
    modules = {m.replace(".", "/") + ".py" for m in closure if m != "__init__" and "." in m}
    assert set(DESCRIPTOR_CODE) == modules


def test_fail_on_error_exit_status(tmp_path: Path, params_file: Path) -> None:
    listing = tmp_path / "videos.txt"
    write_video_list(listing, {"gone": str(tmp_path / "gone.mp4")})
    argv = [
        "--params",
        str(params_file),
        "extract",
        "--videos",
        str(listing),
        "--output-dir",
        str(tmp_path / "f"),
        "--no-progress",
    ]
    assert main(argv) == 0
    assert main(argv + ["--fail-on-error"]) == 3


def test_feature_file_names_are_safe_for_any_id(tmp_path: Path) -> None:
    assert feature_path(tmp_path, "../etc/passwd").parent == tmp_path
    assert feature_path(tmp_path, ".hidden").name.startswith("%2E")
    assert feature_path(tmp_path, "a b") != feature_path(tmp_path, "a_b")
