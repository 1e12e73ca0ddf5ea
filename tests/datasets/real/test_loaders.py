"""Loaders and compositions of the real datasets, on small files written in each official format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ausil_lib.core.labels import speed_copy_id
from ausil_lib.datasets.real import loaders as ds


def yt(i: int) -> str:
    """An 11-character YouTube-style id; some start with '-' as real ones do."""
    return f"{'-' if i % 7 == 0 else 'v'}{i:010d}"


def write_fivr(
    tmp: Path, n_queries: int = 6, per_label: int = 4, distractors: int = 40, da_inside: bool = False
) -> tuple[Path, Path, Path]:
    """annotation.json (with repeated ids, as the official file has), youtube_ids.txt and a DA file."""
    ann, audio, ids, n = {}, {}, [], 0
    for _q in range(n_queries):
        qid = yt(n)
        n += 1
        ids.append(qid)
        labels = {}
        for label in ("ND", "DS", "CS", "IS"):
            vids = [yt(n + i) for i in range(per_label)]
            n += per_label
            ids += vids
            labels[label] = vids + vids[:1]  # a repeated entry
        da = labels["ND"][:2] + labels["DS"][:1]
        if da_inside:
            labels["DA"] = da
        else:
            audio[qid] = {"DA": da}
        ann[qid] = labels
    ids += [yt(n + i) for i in range(distractors)]
    (tmp / "annotation.json").write_text(json.dumps(ann))
    (tmp / "youtube_ids.txt").write_text("\n".join(ids) + "\n")
    (tmp / "fivr_a.json").write_text(json.dumps(audio))
    return tmp / "annotation.json", tmp / "youtube_ids.txt", tmp / "fivr_a.json"


def test_fivr_loads_dedupes_and_merges_audio_labels(tmp_path: Path) -> None:
    ann, ids, audio = write_fivr(tmp_path)
    fivr = ds.load_fivr(ann, ids, audio)
    assert len(fivr.audio_queries()) == 6
    q = fivr.audio_queries()[0]
    assert len(fivr.annotation[q]["ND"]) == 4 and len(fivr.annotation[q]["DA"]) == 3
    assert fivr.report.counts["duplicate_entries_removed"] == 6 * 4
    # without the audio file only the visual labels exist, and the report says so
    visual = ds.load_fivr(ann, ids)
    assert visual.audio_queries() == [] and any("no DA labels" in n for n in visual.report.notes)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda a: a[next(iter(a))].update(XX=[]), "unknown label"),
        (lambda a: a.update({"q": ["not", "an object"]}), "expected an object of labels"),
    ],
)
def test_fivr_malformed_annotation_names_the_file(tmp_path: Path, mutate, message: str) -> None:
    ann, ids, _ = write_fivr(tmp_path)
    data = json.loads(ann.read_text())
    mutate(data)
    ann.write_text(json.dumps(data))
    with pytest.raises(ds.DatasetError, match=message) as err:
        ds.load_fivr(ann, ids)
    assert "annotation.json" in str(err.value)


def test_fivr_bad_id_list_and_missing_files(tmp_path: Path) -> None:
    ann, ids, audio = write_fivr(tmp_path)
    ids.write_text(ids.read_text() + "too-short\n")
    with pytest.raises(ds.DatasetError, match="malformed YouTube id.*too-short"):
        ds.load_fivr(ann, ids)
    with pytest.raises(ds.DatasetError, match="not found"):
        ds.load_fivr(tmp_path / "nope.json", ids)
    bad_audio = json.loads(audio.read_text())
    bad_audio["zzzzzzzzzzz"] = {"DA": []}
    audio.write_text(json.dumps(bad_audio))
    ids.write_text("\n".join(ids.read_text().split()[:-1]) + "\n")
    with pytest.raises(ds.DatasetError, match="not a FIVR-200K query"):
        ds.load_fivr(ann, ids, audio)


def test_fivr_audio_labels_that_disagree_are_refused(tmp_path: Path) -> None:
    ann, ids, audio = write_fivr(tmp_path, da_inside=True)
    data = json.loads(ann.read_text())
    other = {q: {"DA": labels["IS"][:1]} for q, labels in data.items()}
    audio.write_text(json.dumps(other))
    with pytest.raises(ds.DatasetError, match="disagree"):
        ds.load_fivr(ann, ids, audio)


def test_fivr5k_composition_is_seeded_and_follows_the_paper(tmp_path: Path) -> None:
    fivr = ds.load_fivr(*write_fivr(tmp_path, n_queries=8, distractors=60))
    a = ds.compose_fivr5k(fivr, n_queries=4, da_fraction=0.35, distractors=20, seed=3)
    assert a == ds.compose_fivr5k(fivr, n_queries=4, da_fraction=0.35, distractors=20, seed=3)
    assert a != ds.compose_fivr5k(fivr, n_queries=4, da_fraction=0.35, distractors=20, seed=4)
    assert len(a.queries) == 4
    related = set(fivr.annotation) | {
        v for labels in fivr.annotation.values() for vids in labels.values() for v in vids
    }
    distractors = [v for v in a.database if v not in related]
    assert len(distractors) == 20
    for q in a.queries:
        da = a.annotation[q]["DA"]
        assert set(da) <= set(a.database) and len(da) == max(1, round(0.35 * 3))  # 3 DA videos per query here
        # every kept label is the original one, restricted to the subset
        for label, vids in a.annotation[q].items():
            assert set(vids) == set(fivr.annotation[q][label]) & set(a.database)
    with pytest.raises(ValueError, match="distractors"):
        ds.compose_fivr5k(fivr, n_queries=4, distractors=10_000)


def test_svd_groundtruth_and_audio_annotation(tmp_path: Path) -> None:
    gt = tmp_path / "test_groundtruth"
    gt.write_text("q1.mp4 a.mp4 1\nq1.mp4 b.mp4 0\nq2.mp4 c.mp4 1\n\n")
    audio = tmp_path / "svd_a.json"
    audio.write_text(json.dumps({"q1": {"DA": ["a", "x"]}}))
    svd = ds.load_svd(gt, audio)
    assert svd.groundtruth == {"q1": {"a": 1, "b": 0}, "q2": {"c": 1}}
    sub = ds.svd_audio(svd)
    assert sub.queries == ["q1"] and sub.database == ["a", "b", "q1", "x"] and sub.annotation["q1"]["DA"] == ["a", "x"]
    vis = ds.svd_visual(svd)
    assert vis.annotation == {"q1": {"POS": ["a"]}, "q2": {"POS": ["c"]}}


@pytest.mark.parametrize(
    "text, message, line",
    [
        ("q1 a 1\nq1 a\n", "expected 'query candidate label'", 2),
        ("q1 a 2\n", "is not 0 or 1", 1),
        ("q1 a 1\nq1 a 0\n", "labelled both", 2),
    ],
)
def test_svd_malformed_lines(tmp_path: Path, text: str, message: str, line: int) -> None:
    gt = tmp_path / "test_groundtruth"
    gt.write_text(text)
    with pytest.raises(ds.DatasetError, match=message) as err:
        ds.load_svd_groundtruth(gt)
    assert err.value.line == line and str(gt) in str(err.value)


def write_vcdb(root: Path) -> Path:
    ann = root / "annotation"
    ann.mkdir(parents=True)
    for _t, topic in enumerate(["baggio", "zidane", "obama"]):
        vids = [f"{topic}{i}" for i in range(3)]
        ann.joinpath(f"{topic}.txt").write_text(
            f"{vids[0]}.flv,{vids[1]}.flv,00:00:01,00:00:09,00:01:00,00:01:08\n"
            f"{vids[1]}.flv,{vids[2]}.mp4,00:00:00,00:00:05,00:00:10,00:00:15\n"
        )
    return ann


def test_vcdb_pairs_and_topic_disjoint_splits(tmp_path: Path) -> None:
    pairs = ds.load_vcdb(write_vcdb(tmp_path))
    assert len(pairs) == 6 and pairs[0].a_span == (1.0, 9.0) and pairs[0].b_span == (60.0, 68.0)
    splits = ds.vcdb_splits(pairs, val_topics=1, seed=0)
    train, val = set(splits["train"].database), set(splits["val"].database)
    assert train and val and not train & val
    for sub in splits.values():
        for q, labels in sub.annotation.items():
            assert labels["DA"] and q not in labels["DA"]
    assert ds.vcdb_splits(pairs, 1, 0) == splits


@pytest.mark.parametrize(
    "line, message",
    [
        ("a.flv,b.flv,00:00:01,00:00:09,00:01:00\n", "6 comma-separated"),
        ("a.flv,b.flv,00:00:01,00:00:09,00:01:00,1:2\n", "HH:MM:SS"),
        ("a.flv,b.flv,00:00:09,00:00:01,00:01:00,00:01:08\n", "ends before it starts"),
    ],
)
def test_vcdb_malformed_lines(tmp_path: Path, line: str, message: str) -> None:
    ann = tmp_path / "annotation"
    ann.mkdir()
    (ann / "topic.txt").write_text(line)
    with pytest.raises(ds.DatasetError, match=message) as err:
        ds.load_vcdb(ann)
    assert err.value.line == 1 and "topic.txt" in str(err.value)


def test_evve_events(tmp_path: Path) -> None:
    annots = tmp_path / "annots"
    annots.mkdir()
    (annots / "riots.dat").write_text("q1 1 query\np1 2 database\nn1 0 database\nx1 -1 database\n")
    (annots / "wedding.dat").write_text("q2 1 query\np2 1 database\n")
    events = ds.load_evve(annots)
    sub = ds.evve_visual(events)
    assert sub.annotation["q1"] == {"POS": ["p1"], "NULL": ["n1"]}
    assert set(sub.database) == {"q1", "q2", "p1", "n1", "x1", "p2"}
    (annots / "bad.dat").write_text("q3 1 training\n")
    with pytest.raises(ds.DatasetError, match="neither 'query' nor 'database'"):
        ds.load_evve(annots)


def test_available_and_speed_protocol(tmp_path: Path) -> None:
    for name in ("q.m4a", "a.webm", "b.mp4", "c.m4a.part"):
        (tmp_path / name).write_bytes(b"x")
    media, missing = ds.find_media(tmp_path, ["q", "a", "b", "c", "d"])
    assert set(media) == {"q", "a", "b"} and missing == ["c", "d"]
    sub = ds.Subset(["q", "d"], ["q", "a", "b", "c"], {"q": {"DA": ["a", "c"]}, "d": {"DA": ["b"]}})
    report = ds.LoadReport()
    bench = ds.available(sub, media, "audio", ["DA"], report=report)
    assert list(bench.queries) == ["q"] and bench.annotation == {"q": {"DA": ["a"]}}
    assert report.counts == {"audio_queries_missing": 1, "audio_database_missing": 1}
    copies = {speed_copy_id("q", f): f"/s/q_x{f:g}.flac" for f in (0.5, 2.0)}
    speed = ds.speed_benchmark(bench, copies, [0.5, 2.0])
    assert "a" not in speed.database and set(speed.annotation["q"]["DA"]) == {"q_x0.5", "q_x2"}
    speed.write(tmp_path / "bench")
    written = json.loads((tmp_path / "bench" / "audio_speed" / "annotation.json").read_text())
    assert written == {"q": {"DA": ["q_x0.5", "q_x2"]}}
