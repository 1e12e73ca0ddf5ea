"""End to end: the real-dataset stages of dvc.yaml on fixture files in the official formats.

No network: FIVR's YouTube ids go through a fake yt-dlp (same command line, some videos
"unavailable"), the annotation files and VCDB's archives are served from file:// URLs with their
SHA-256. Each stage runs with `dvc repro --single-item`, exactly as dvc.yaml defines it: FIVR-5K_a
composition, downloads, benchmarks with speed copies, sharded features, AuSiL trained on VCDB by
the common training stage, and the evaluation of every task.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ausil_lib.audio.decode import encode
from ausil_lib.core.formats import read_annotations, read_ids, read_video_list
from ausil_lib.features.store import FeatureStore
from ausil_lib.localisation.segments import Segment, read_segments
from ausil_lib.models.ausil import AuSiL
from ausil_lib.models.backbone import KumarCNN, save_state
from ausil_lib.retrieval.evaluation import evaluate
from ausil_lib.retrieval.runner import score_stored

from ..helpers import SR, chords, run_checked

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
AAC = ["-c:a", "aac"]

FAKE_YT_DLP = r"""
import json, os, shutil, sys
args = sys.argv[1:]
with open(os.environ["FAKE_YT_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
url = args[args.index("--") + 1]
vid = url.rsplit("=", 1)[1]
out = args[args.index("-o") + 1]
if vid in open(os.environ["FAKE_YT_UNAVAILABLE"]).read().split():
    print(f"ERROR: [youtube] {vid}: Video unavailable", file=sys.stderr)
    sys.exit(1)
shutil.copy(os.path.join(os.environ["FAKE_YT_MEDIA"], vid + ".m4a"), out.replace("%(ext)s", "m4a"))
"""


def yt(i: int) -> str:
    return f"{'-' if i % 5 == 0 else 'y'}{i:010d}"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def noisy(audio: np.ndarray, seed: int) -> np.ndarray:
    return (audio + 0.01 * np.random.default_rng(seed).standard_normal(audio.size)).astype(np.float32)


def make_fivr(remote: Path) -> tuple[list[str], list[str]]:
    """3 queries with DA copies and visual-only labels, distractors; returns (all ids, unavailable ids)."""
    media = remote / "youtube"
    ann, audio_ann, ids, n = {}, {}, [], 0
    for q in range(3):
        qid = yt(n)
        source = chords(12.0, seed=100 + q)
        encode(media / f"{qid}.m4a", source, SR, AAC)
        labels = {}
        for label, count in (("ND", 2), ("DS", 1), ("CS", 1), ("IS", 1)):
            labels[label] = [yt(n + 1 + i) for i in range(count)]
            n += count
        n += 1
        for vid in labels["ND"] + labels["DS"]:  # audio duplicates: the query's audio, re-encoded
            encode(media / f"{vid}.m4a", noisy(source, seed=int(vid[1:])), SR, AAC)
        for vid in labels["CS"] + labels["IS"]:  # same event, other audio
            encode(media / f"{vid}.m4a", chords(10.0, seed=int(vid[1:])), SR, AAC)
        ann[qid] = labels
        audio_ann[qid] = {"DA": labels["ND"] + labels["DS"]}
        ids += [qid, *[v for vids in labels.values() for v in vids]]
    for i in range(6):
        vid = yt(n + i)
        encode(media / f"{vid}.m4a", chords(11.0, seed=500 + i), SR, AAC)
        ids.append(vid)
    (remote / "annotation.json").write_text(json.dumps(ann))
    (remote / "youtube_ids.txt").write_text("\n".join(ids) + "\n")
    (remote / "fivr_a.json").write_text(json.dumps(audio_ann))
    unavailable = [ann[yt(0)]["CS"][0], ids[-1]]
    (remote / "unavailable.txt").write_text("\n".join(unavailable) + "\n")
    return ids, unavailable


def make_vcdb(remote: Path) -> None:
    """Two topics of three videos sharing a segment, zipped as VCDB distributes them."""
    with (
        zipfile.ZipFile(remote / "vcdb_annotation.zip", "w") as ann_zip,
        zipfile.ZipFile(remote / "vcdb_core.zip", "w") as core_zip,
    ):
        for t, topic in enumerate(("ballgame", "speech")):
            base = chords(10.0, seed=900 + t)
            lines = []
            for i in range(3):
                name = hashlib.sha1(f"{topic}{i}".encode()).hexdigest()
                path = remote / "tmp" / f"{name}.mp4"
                encode(
                    path,
                    np.concatenate([chords(2.0 + i, seed=950 + 3 * t + i), noisy(base, i)]),
                    SR,
                    ["-c:v", "libx264", "-c:a", "aac"],
                    still_image=True,
                )
                core_zip.write(path, f"core_dataset/{topic}/{name}.mp4")
                lines.append(name)
            rows = [
                f"{a}.mp4,{b}.mp4,00:00:0{2 + ia},00:00:1{ia},00:00:0{2 + ib},00:00:1{ib}"
                for (ia, a), (ib, b) in [((0, lines[0]), (1, lines[1])), ((1, lines[1]), (2, lines[2]))]
            ]
            ann_zip.writestr(f"annotation/{topic}.txt", "\n".join(rows) + "\n")


def params_for(work: Path, remote: Path) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    url = lambda name: {"url": (remote / name).as_uri(), "sha256": sha(remote / name)}  # noqa: E731
    d = params["datasets"]
    d.update(
        enabled=["fivrmini", "vcdbmini"],
        train_on=["vcdbmini"],
        model="models/ausil_vcdbmini.pt",
        methods=["ausil", "spectro-slides"],
        speed_factors=[0.5, 2.0],
        store_dtype="float32",
        shard_videos=4,
        decode_workers=0,
        batch_segments=64,
    )
    d["youtube"].update(
        command=[sys.executable, str(remote / "fake_yt_dlp.py")], sleep_s=0.0, rate_limit=None, retries=0
    )
    d["fivrmini"] = {
        "kind": "fivr",
        "annotation_files": [url("annotation.json"), url("youtube_ids.txt"), url("fivr_a.json")],
        "video_archives": [],
        "layout": {
            "annotation": "annotation.json",
            "youtube_ids": "youtube_ids.txt",
            "audio_annotation": "fivr_a.json",
        },
        "subset": {"queries": 2, "da_fraction": 0.5, "distractors": 4, "seed": 0},
        "time_step_ms": 1000,
        "stats": {"videos": 12, "queries": 2, "mean_duration_s": 11},
    }
    d["vcdbmini"] = {
        "kind": "vcdb",
        "annotation_files": [url("vcdb_annotation.zip")],
        "video_archives": [url("vcdb_core.zip")],
        "layout": {"annotation_dir": "annotation"},
        "val_topics": 1,
        "seed": 0,
        "time_step_ms": 1000,
        "stats": {"videos": 6, "queries": 0, "mean_duration_s": 13},
    }
    params["device"] = "cpu"
    params["backbone"]["source"] = "trained"
    params["training"].update(
        max_steps=3, eval_every=1, pca_sample_size=200, batch_triplets=4, positive_max_distance=2.0, negative_margin=2.0
    )
    return params


def test_real_dataset_stages_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    remote, work = tmp_path / "remote", tmp_path / "work"
    remote.mkdir()
    work.mkdir()
    (remote / "fake_yt_dlp.py").write_text(FAKE_YT_DLP)
    ids, unavailable = make_fivr(remote)
    make_vcdb(remote)
    for name in ("dvc.yaml", "ausil_lib", ".dvcignore"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    (work / "params.yaml").write_text(yaml.safe_dump(params_for(work, remote), sort_keys=False))
    torch.manual_seed(0)  # a backbone file as train_backbone writes it (random weights: this tests plumbing)
    save_state(work / "models" / "backbone.pt", KumarCNN(), {"kind": "backbone", "note": "test fixture"})
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "FAKE_YT_LOG": str(remote / "yt_log.jsonl"),
        "FAKE_YT_MEDIA": str(remote / "youtube"),
        "FAKE_YT_UNAVAILABLE": str(remote / "unavailable.txt"),
    }

    def run(*cmd: str) -> str:
        return run_checked(work, env, *cmd)

    run("git", "init", "-q")
    run("dvc", "init", "-q")
    chain = ["dataset_annotations", "dataset_videos", "dataset_benchmarks", "dataset_features"]
    for stage in (
        [f"{s}@vcdbmini" for s in chain]
        + ["dataset_train@vcdbmini"]
        + [f"{s}@fivrmini" for s in chain]
        + ["dataset_evaluate@fivrmini", "dataset_evaluate@vcdbmini"]
    ):
        run("dvc", "repro", "--single-item", stage)

    fivr = work / "data" / "real" / "fivrmini"
    # FIVR-5K_a composition: 2 queries, half of their DA videos, 4 distractors; all from the plan
    plan = json.loads((fivr / "plan.json").read_text())
    assert len(plan["tasks"]["audio"]["queries"]) == 2 and set(plan["tasks"]) == {"audio", "dsvr", "csvr", "isvr"}
    # downloads: the fake saw `--` before every URL; unavailable videos are recorded, not fatal
    calls = [json.loads(line) for line in (remote / "yt_log.jsonl").read_text().splitlines()]
    assert calls and all(c[-2] == "--" for c in calls)
    log = (fivr / "videos" / "download_log.tsv").read_text()
    wanted = (fivr / "wanted_ids.txt").read_text().split()
    for vid in set(unavailable) & set(wanted):
        assert f"{vid}\tunavailable" in log
    summary = json.loads((fivr / "benchmarks.json").read_text())
    assert summary["report"]["counts"]["missing"] == len(set(unavailable) & set(wanted))
    assert {"audio", "audio_speed", "dsvr", "csvr", "isvr"} <= set(summary["tasks"])
    speed_db = (fivr / "bench" / "audio_speed" / "database.txt").read_text()
    assert "_x0.5 " in speed_db and "_x2 " in speed_db
    # features: one sharded store per dataset, every obtained file described
    store = json.loads((work / "features" / "real" / "fivrmini" / "store.json").read_text())
    assert store["dtype"] == "float32" and list((work / "features" / "real" / "fivrmini").glob("shard-*.npy"))
    # AuSiL trained on VCDB by the common training stage, then every FIVR task scored
    assert (work / "models" / "ausil_vcdbmini.pt").is_file()
    for method in ("ausil", "spectro-slides"):  # AuSiL from the store, a baseline through the common runner
        for task in ("audio", "audio_speed", "dsvr", "csvr", "isvr"):
            metrics = json.loads((work / "metrics" / "real" / "fivrmini" / method / f"{task}.json").read_text())
            assert 0.0 <= metrics["mAP"] <= 1.0 and metrics["n"] >= 1
    # the stored descriptors are the audio's: the DA videos (noisy re-encodes of the query) outrank every
    # other video under plain MAC similarity (the 3-step fixture model itself is not meant to be good)
    bench = fivr / "bench" / "audio"
    source = FeatureStore(work / "features" / "real" / "fivrmini", readonly=True)
    results, failures, _ = score_stored(
        AuSiL(variant="mac"),
        source,
        list(read_video_list(bench / "queries.txt")),
        read_ids(bench / "dataset_ids.txt"),
        progress=False,
    )
    assert not failures
    mac = evaluate(read_annotations(bench / "annotation.json"), results, ["DA"], read_ids(bench / "dataset_ids.txt"))
    assert mac.map == 1.0
    # VCDB's annotated segment pairs become each split's true segments, both ways round (the fixture's
    # rows: video 0 at 2-10 s = video 1 at 3-11 s, video 1 at 3-11 s = video 2 at 4-12 s), and
    # `ausil locate-evaluate --truth` scores a localisation against them
    vcdb = work / "data" / "real" / "vcdbmini" / "bench"
    names = {
        topic: [hashlib.sha1(f"{topic}{i}".encode()).hexdigest() for i in range(3)] for topic in ("ballgame", "speech")
    }
    for split in ("train", "val"):
        truth = read_segments(vcdb / split / "true_segments.json")
        (topic,) = [t for t, vids in names.items() if vids[0] in truth]
        v0, v1, v2 = names[topic]
        assert truth == {
            v0: {v1: [Segment(2.0, 10.0, 3.0, 11.0)]},
            v1: {v0: [Segment(3.0, 11.0, 2.0, 10.0)], v2: [Segment(3.0, 11.0, 4.0, 12.0)]},
            v2: {v1: [Segment(4.0, 12.0, 3.0, 11.0)]},
        }
    val = vcdb / "val"
    run(
        "ausil", "baseline-locate", "--method", "spectro-slides", "--queries", str(val / "queries.txt"),
        "--database", str(val / "database.txt"), "--features-dir", ".cache/locate", "--output", "located.json",
        "--no-progress",
    )  # fmt: skip
    run("ausil", "locate-evaluate", "--segments", "located.json", "--truth", str(val / "true_segments.json"),
        "--metrics", "located_metrics.json")  # fmt: skip
    scores = json.loads((work / "located_metrics.json").read_text())
    assert scores["n"] == 4 and scores["R"] >= 0.5  # the shared 10 s are found in at least half of the true pairs
    # a finished stage has nothing left to do
    assert "up to date" in run("dvc", "status", "dataset_evaluate@fivrmini")
