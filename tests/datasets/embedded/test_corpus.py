"""The embedded corpus on generated audio: splits, exact labels, speed protocol, determinism."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from ausil_lib.audio.decode import encode, load_audio
from ausil_lib.core.config import Params, parse_params
from ausil_lib.core.formats import read_annotations, read_ids, read_video_list
from ausil_lib.core.labels import DA, JUNK
from ausil_lib.datasets.embedded.corpus import build_corpus
from ausil_lib.datasets.embedded.sources import fetch_sources, load_manifest

from ...helpers import SR, chords

pytestmark = pytest.mark.slow

# album -> recordings (stem, seconds); "theme" and "theme-old" are variants of each other
ALBUMS = {
    "alpha": [("theme", 40), ("theme-old", 35), ("march", 30), ("waltz", 45)],
    "beta": [("rain", 30), ("wind", 38), ("fire", 33)],
    "gamma": [("one", 36), ("two", 31), ("three", 42), ("four", 34)],
}


def tiny_params(music_dir: Path) -> Params:
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["sources"].update(
        music_dir=str(music_dir),
        music_licence="generated for the tests",
        variant_groups=[["theme", "theme-old"]],
        exclude=[],
        min_recording_s=20,
    )
    params["sources"]["speech"]["enabled"] = False
    params["corpus"]["size"] = "tiny"
    params["corpus"]["split_fractions"] = {"train": 0.4, "val": 0.3, "test": 0.3}  # 10 groups: 4 / 3 / 3
    return parse_params(params)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Params, Path, Path]:
    root = tmp_path_factory.mktemp("corpus")
    music = root / "music"
    seed = 0
    for album, tracks in ALBUMS.items():
        for stem, seconds in tracks:
            seed += 1
            encode(music / album / f"{stem}.flac", chords(seconds, seed=seed), SR, ["-c:a", "flac"])
    params = tiny_params(music)
    fetch_sources(params, root / "sources")
    build_corpus(params, root / "sources", root / "a", summary_path=root / "a_summary.json", progress=False)
    return params, root, root / "a"


def log_of(out: Path) -> dict:
    return json.loads((out / "construction_log.json").read_text())


def test_splits_are_disjoint_by_variant_group(corpus) -> None:
    _, _, out = corpus
    log = log_of(out)
    split_of_group: dict[str, set[str]] = {}
    for rec in log["recordings"].values():
        split_of_group.setdefault(rec["group"], set()).add(rec["split"])
    assert all(len(s) == 1 for s in split_of_group.values())
    theme = {log["recordings"][r]["split"] for r in ("alpha/theme", "alpha/theme-old")}
    assert len(theme) == 1
    # every piece of every clip comes from a recording of the clip's own split
    for clip in log["clips"]:
        for piece in clip["pieces"]:
            assert log["recordings"][piece["rec"]]["split"] == clip["split"], clip["clip_id"]


def _shared(query: dict, clip: dict) -> float:
    q = query["pieces"][0]
    return sum(
        max(0.0, min(p["src_end"], q["src_end"]) - max(p["src_start"], q["src_start"]))
        for p in clip["pieces"]
        if p["rec"] == q["rec"] and p["role"] == "content"
    )


@pytest.mark.parametrize("bench", ["train", "val", "test", "test_speed"])
def test_labels_follow_the_construction_log(corpus, bench: str) -> None:
    params, _, out = corpus
    log = log_of(out)
    clips = {c["clip_id"]: c for c in log["clips"]}
    group = {r: v["group"] for r, v in log["recordings"].items()}
    ann = read_annotations(out / bench / "annotation.json")
    dataset = read_ids(out / bench / "dataset_ids.txt")
    min_shared = params.corpus.min_shared_s
    assert set(ann) == set(read_video_list(out / bench / "queries.txt"))
    for qid, labels in ann.items():
        query = clips[qid]
        assert labels[DA], f"{bench}/{qid} has no positive"
        for vid in dataset:
            if vid == qid:
                continue
            clip = clips[vid]
            if vid in labels[DA]:
                assert _shared(query, clip) >= min_shared  # really shares a segment
            else:
                assert _shared(query, clip) < min_shared
                touches_group = any(group[p["rec"]] == group[query["pieces"][0]["rec"]] for p in clip["pieces"])
                assert touches_group == (vid in labels[JUNK])  # clean negatives hold nothing of the query's group


def test_speed_protocol(corpus) -> None:
    params, _, out = corpus
    log = log_of(out)
    clips = {c["clip_id"]: c for c in log["clips"]}
    original = read_annotations(out / "test" / "annotation.json")
    speed = read_annotations(out / "test_speed" / "annotation.json")
    speed_db = set(read_ids(out / "test_speed" / "dataset_ids.txt"))
    originally_da = {v for labels in original.values() for v in labels[DA]}
    assert not originally_da & speed_db
    factors = params.corpus.speed_factors
    for qid, labels in speed.items():
        assert sorted(labels[DA]) == sorted(f"{qid}_x{f:g}" for f in factors)
        for f in factors:
            copy_ = clips[f"{qid}_x{f:g}"]
            assert copy_["duration_s"] == pytest.approx(clips[qid]["duration_s"] / f, rel=0.01)
    speed_list = read_video_list(out / "test_speed" / "database.txt")
    x2 = load_audio(speed_list[f"{next(iter(speed))}_x2"])
    assert x2.size / SR == pytest.approx(clips[next(iter(speed))]["duration_s"] / 2, rel=0.02)


def test_cases_formats_and_summary(corpus) -> None:
    _, root, out = corpus
    log = log_of(out)
    cases = {c["case"].split(":")[0] for c in log["clips"] if c["role"] == "positive"}
    assert {"full", "partial", "embedded", "transformed", "hard"} <= cases
    assert {"mp4", "webm"} & {c["fmt"] for c in log["clips"]}
    for clip in log["clips"]:
        path = out / "media" / clip["split"] / f"{clip['clip_id']}.{clip['fmt']}"
        assert path.is_file()
    summary = json.loads((root / "a_summary.json").read_text())
    assert summary["benchmarks"]["test"]["queries"] == len(read_annotations(out / "test" / "annotation.json"))
    assert summary["hard_share_of_positives"] > 0


def test_two_builds_are_identical(corpus, tmp_path: Path) -> None:
    params, root, out = corpus
    build_corpus(params, root / "sources", tmp_path / "b", progress=False)
    for bench in ("train", "val", "test", "test_speed"):
        for name in ("annotation.json", "dataset_ids.txt"):
            assert (out / bench / name).read_bytes() == (tmp_path / "b" / bench / name).read_bytes()
    first = {c["clip_id"]: (c["sha256"], c["audio_sha256"]) for c in log_of(out)["clips"]}
    second = {c["clip_id"]: (c["sha256"], c["audio_sha256"]) for c in log_of(tmp_path / "b")["clips"]}
    assert first == second
    for clip in log_of(out)["clips"][:10]:  # the decoded audio of the files, too
        name = f"{clip['split']}/{clip['clip_id']}.{clip['fmt']}"
        assert np.array_equal(load_audio(out / "media" / name), load_audio(tmp_path / "b" / "media" / name))


def test_rebuild_resumes_without_rendering(corpus, monkeypatch) -> None:
    params, root, out = corpus
    from ausil_lib.datasets.embedded import corpus as corpus_module

    def fail(*_args, **_kwargs):
        raise AssertionError("a finished clip was rendered again")

    monkeypatch.setattr(corpus_module.Renderer, "write", fail)
    build_corpus(params, root / "sources", out, progress=False)


@pytest.mark.parametrize("change", ["numerics", "ffmpeg build"])
def test_rebuild_after_a_renderer_change_renders_every_clip_again(
    corpus, tmp_path: Path, monkeypatch, change: str
) -> None:
    """A finished clip made by other code, numerics or ffmpeg is not kept: DVC would record it as the new code's."""
    params, root, out = corpus
    from ausil_lib.datasets.embedded import corpus as corpus_module

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    rendered: list[str] = []
    write = corpus_module.Renderer.write

    def counting(self, clip, media):
        rendered.append(clip.clip_id)
        return write(self, clip, media)

    monkeypatch.setattr(corpus_module.Renderer, "write", counting)
    if change == "numerics":
        monkeypatch.setenv("OPENBLAS_CORETYPE", "another kernel set")  # a pinned variable changed
    else:
        monkeypatch.setattr(corpus_module, "ffmpeg_build", lambda: "ffmpeg version another-build")
    build_corpus(params, root / "sources", copy, progress=False)
    clips = log_of(copy)["clips"]
    assert sorted(rendered) == sorted(c["clip_id"] for c in clips)
    assert log_of(copy)["renderer"] != log_of(out)["renderer"]
    assert [c["sha256"] for c in clips] == [c["sha256"] for c in log_of(out)["clips"]]  # same code: same bytes


def test_manifest_records_origin_and_hashes(corpus) -> None:
    _, root, _ = corpus
    recs = load_manifest(root / "sources")
    assert len(recs) == sum(len(t) for t in ALBUMS.values())
    assert all(len(r.sha256) == 64 and r.origin.startswith("user folder") for r in recs)
    assert {r.group for r in recs if r.rec_id.startswith("alpha/theme")} == {"alpha/theme"}


@pytest.mark.parametrize(
    ("n", "fractions", "expected"),
    [
        (10, {"train": 0.45, "val": 0.15, "test": 0.40}, {"train": 5, "val": 1, "test": 4}),
        (3, {"train": 0.8, "val": 0.1, "test": 0.1}, {"train": 1, "val": 1, "test": 1}),  # none left empty
        (7, {"train": 0.0, "val": 1.0, "test": 0.0}, {"train": 0, "val": 7, "test": 0}),  # zero stays empty
        (2, {"train": 0.5, "val": 0.5, "test": 0.0}, {"train": 1, "val": 1, "test": 0}),
    ],
)
def test_split_counts(n: int, fractions: dict[str, float], expected: dict[str, int]) -> None:
    from ausil_lib.datasets.embedded.corpus import _split_counts

    assert _split_counts(n, fractions) == expected


def test_train_corpus_holds_only_train(corpus, tmp_path: Path) -> None:
    """AuSiL's extra training corpus (own seed, every recording in train, no speed copies, its queries per
    recording) on the same tiny sources."""
    from dataclasses import replace

    from ausil_lib.core.config import train_corpus_params

    params, root, _ = corpus
    params = replace(params, train_corpus=replace(params.train_corpus, queries_per_recording=2))
    extra = replace(train_corpus_params(params), sources=params.sources)  # the fixture's music, not Debian's
    build_corpus(extra, root / "sources", tmp_path / "t", progress=False)
    log = log_of(tmp_path / "t")
    assert {c["split"] for c in log["clips"]} == {"train"}
    assert {r["split"] for r in log["recordings"].values()} == {"train"}
    ann = read_annotations(tmp_path / "t" / "train" / "annotation.json")
    music = [r for r in log["recordings"].values() if r["kind"] == "music"]
    assert len(ann) >= 2 * len(music) > 0  # the tiny size's one query per recording, raised to two
    assert not read_ids(tmp_path / "t" / "val" / "dataset_ids.txt")
    assert not any((tmp_path / "t" / f"{s}_speed").exists() for s in ("train", "val", "test"))


def test_cross_corpus_holds_only_val_and_its_speed_copies(corpus, tmp_path: Path) -> None:
    """The cross-corpus settings (own seed, every recording in val) on the same tiny sources."""
    from dataclasses import replace

    from ausil_lib.core.config import cross_corpus_params

    params, root, _ = corpus
    cross = replace(cross_corpus_params(params), sources=params.sources)  # the fixture's music, not Debian's
    build_corpus(cross, root / "sources", tmp_path / "x", progress=False)
    log = log_of(tmp_path / "x")
    assert {c["split"] for c in log["clips"]} == {"val"}
    assert {r["split"] for r in log["recordings"].values()} == {"val"}
    assert read_annotations(tmp_path / "x" / "val" / "annotation.json")
    speed = read_annotations(tmp_path / "x" / "val_speed" / "annotation.json")
    assert speed and all(labels[DA] for labels in speed.values())
    assert not read_ids(tmp_path / "x" / "train" / "dataset_ids.txt")
    assert not (tmp_path / "x" / "test_speed").exists()
