"""Tests of the reference file formats: round trips, error messages, atomic and stable writes."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

from ausil_lib.core.formats import (
    FormatError,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    read_annotations,
    read_ids,
    read_results,
    read_video_list,
    write_annotations,
    write_ids,
    write_results,
    write_video_list,
)

# --------------------------------------------------------------------------- video lists


def test_video_list_round_trip_keeps_order_and_spaces(tmp_path: Path) -> None:
    videos = {"zz9": "/data/my videos/clip one.mp4", "aa1": "rel/path.mkv", "mm5": "x y  z.webm"}
    path = tmp_path / "videos.txt"
    write_video_list(path, videos)
    loaded = read_video_list(path)
    assert loaded == videos
    assert list(loaded) == ["zz9", "aa1", "mm5"]


def test_video_list_splits_on_first_whitespace_run_and_skips_comments(tmp_path: Path) -> None:
    path = tmp_path / "videos.txt"
    path.write_text("# header\n\nv1 \t /a b/c.mp4\n  # indented comment\nv2\tplain.mp4\r\n")
    assert read_video_list(path) == {"v1": "/a b/c.mp4", "v2": "plain.mp4"}


def test_video_list_duplicate_id_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "dup list.txt"
    path.write_text("a one.mp4\n# comment\nb two.mp4\na three.mp4\n")
    with pytest.raises(FormatError) as info:
        read_video_list(path)
    message = str(info.value)
    assert "dup list.txt" in message
    assert "line 4" in message
    assert "duplicate" in message and "'a'" in message
    assert "line 1" in message  # where it was first seen
    assert info.value.line == 4


def test_video_list_line_without_path_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "videos.txt"
    path.write_text("a one.mp4\n\nlonely   \n")
    with pytest.raises(FormatError) as info:
        read_video_list(path)
    assert "videos.txt" in str(info.value)
    assert "line 3" in str(info.value)
    assert "no path" in str(info.value)


@pytest.mark.parametrize(
    "videos",
    [{"has space": "p.mp4"}, {"#c": "p.mp4"}, {"a": ""}, {"a": " lead.mp4"}, {"a": "two\nlines"}],
)
def test_write_video_list_refuses_entries_that_cannot_read_back(tmp_path: Path, videos: dict[str, str]) -> None:
    path = tmp_path / "videos.txt"
    with pytest.raises(FormatError, match="videos.txt"):
        write_video_list(path, videos)
    assert not path.exists()


def test_non_utf8_text_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_bytes(b"ok\n\xff\xfe\n")
    with pytest.raises(FormatError, match="ids.txt.*UTF-8"):
        read_ids(path)


# --------------------------------------------------------------------------- id lists


def test_ids_round_trip(tmp_path: Path) -> None:
    ids = ["c", "a", "b_-9"]
    path = tmp_path / "ids.txt"
    write_ids(path, ids)
    assert read_ids(path) == ids


def test_ids_take_first_token_and_skip_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_text("a extra columns\n\n   \nb\n")
    assert read_ids(path) == ["a", "b"]


def test_ids_duplicate_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_text("a\nb\n\na\n")
    with pytest.raises(FormatError, match=r"ids\.txt, line 4: duplicate id 'a'"):
        read_ids(path)


def test_write_ids_refuses_duplicates(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="duplicate"):
        write_ids(tmp_path / "ids.txt", ["a", "a"])


# --------------------------------------------------------------------------- results


def test_results_round_trip(tmp_path: Path) -> None:
    results = {"q1": {"v1": 0.5, "v2": -1.25, "v3": 1}, "q2": {}}
    path = tmp_path / "results.json"
    write_results(path, results)
    loaded = read_results(path)
    assert loaded == {"q1": {"v1": 0.5, "v2": -1.25, "v3": 1.0}, "q2": {}}
    assert all(isinstance(v, float) for v in loaded["q1"].values())


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_results_non_finite_similarity_rejected(tmp_path: Path, token: str) -> None:
    path = tmp_path / "results.json"
    path.write_text(f'{{"q": {{"v": {token}}}}}')  # Python's json accepts these tokens by default
    with pytest.raises(FormatError, match=r"results\.json.*'q'.*'v'.*not finite"):
        read_results(path)


def test_write_results_refuses_non_finite(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    with pytest.raises(FormatError, match="not finite"):
        write_results(path, {"q": {"v": float("nan")}})
    assert not path.exists()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("[1, 2]", "object of queries"),
        ('{"q": [1]}', "object of similarities"),
        ('{"q": {"v": "0.5"}}', "not a number"),
        ('{"q": {"v": true}}', "not a number"),
        ('{"q": {"v": 1, "v": 2}}', "duplicate JSON key 'v'"),
    ],
)
def test_results_bad_shape_rejected(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "results.json"
    path.write_text(content)
    with pytest.raises(FormatError) as info:
        read_results(path)
    assert "results.json" in str(info.value)
    assert reason in str(info.value)


def test_invalid_json_reports_line(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text('{\n  "q": {\n    "v": 0.5,\n  }\n}\n')
    with pytest.raises(FormatError) as info:
        read_results(path)
    assert info.value.line == 4
    assert "results.json, line 4: invalid JSON" in str(info.value)


# --------------------------------------------------------------------------- annotations


def test_annotations_round_trip(tmp_path: Path) -> None:
    annotations = {"q1": {"DA": ["b", "a"], "ND": []}, "q0": {"DS": ["c"]}}
    path = tmp_path / "annotation.json"
    write_annotations(path, annotations)
    assert read_annotations(path) == annotations
    assert read_annotations(path)["q1"]["DA"] == ["b", "a"]  # list order kept


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"q": ["a"]}', "object of labels"),
        ('{"q": {"DA": "a"}}', "list of video ids"),
        ('{"q": {"DA": ["a", 3]}}', "is not a string"),
    ],
)
def test_annotations_bad_shape_rejected(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "annotation.json"
    path.write_text(content)
    with pytest.raises(FormatError, match="annotation.json") as info:
        read_annotations(path)
    assert reason in str(info.value)


# --------------------------------------------------------------------------- atomic writes


def test_atomic_write_creates_parents_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "out.txt"
    atomic_write_text(path, "first\n")
    atomic_write_text(path, "second\n")
    assert path.read_text() == "second\n"
    assert [p.name for p in path.parent.iterdir()] == ["out.txt"]


def test_failed_atomic_write_keeps_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out.txt"
    atomic_write_text(path, "old\n")

    def failing_replace(src: object, dst: object) -> None:
        raise OSError("disk went away")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk went away"):
        atomic_write_text(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_path_renames_on_success_and_keeps_the_extension(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "clip.mp4"
    with atomic_path(path, keep_suffix=True) as tmp:
        assert tmp.parent == path.parent and tmp.name.startswith(".clip.mp4.") and tmp.suffix == ".mp4"
        assert not path.exists()  # nothing at the target until the block ends
        tmp.write_bytes(b"new")
    assert path.read_bytes() == b"new"
    assert [p.name for p in path.parent.iterdir()] == ["clip.mp4"]


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="writer died"), atomic_path(path) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer died")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_unserialisable_json_is_refused_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    with pytest.raises(ValueError):
        atomic_write_json(path, {"a": float("inf")})  # NaN/Infinity are not JSON
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_uses_umask_not_owner_only_mode(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    atomic_write_text(path, "x")
    reference = tmp_path / "plain.txt"
    reference.write_text("x")
    assert path.stat().st_mode == reference.stat().st_mode


def test_same_content_gives_byte_identical_files(tmp_path: Path) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    write_results(first, {"q2": {"y": 0.1, "x": 0.2}, "q1": {"z": 1.0}})
    write_results(second, {"q1": {"z": 1.0}, "q2": {"x": 0.2, "y": 0.1}})
    assert first.read_bytes() == second.read_bytes()
    assert list(json.loads(first.read_text())) == ["q1", "q2"]  # keys sorted


def test_format_error_is_value_error_and_picklable(tmp_path: Path) -> None:
    error = FormatError(tmp_path / "f.txt", "bad thing", 7)
    assert isinstance(error, ValueError)
    clone = pickle.loads(pickle.dumps(error))
    assert str(clone) == str(error)
    assert (clone.path, clone.reason, clone.line) == (error.path, "bad thing", 7)
