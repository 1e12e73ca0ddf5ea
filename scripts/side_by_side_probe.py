"""Probe two backbones side by side: each segment described by both, scored like the backbone probes.

Issue 13: of the probed backbones, the trained substitute is the best on speed-changed queries and
musicnn's Million Song Dataset network (scripts/pretrained_probe.py) the best on original ones. This
probe joins their stored descriptors segment by segment (each L2-normalised on its own, so each backbone
weighs the same in a cosine similarity), scores plain MAC and MAC + whitening on `val` and the
cross-corpus `val` / `val_speed` exactly as scripts/backbone_probe.py does (`test` is never read), and
keeps the joined descriptors as a feature directory that scripts/ausil_data_curve.py --features trains
AuSiL's network on. The row goes into reports/ablations/backbone_probe.json.

    python scripts/backbone_probe.py --name step1000ms --weights models/backbone.pt \\
        --set features.time_step_ms=1000 --whole-train
    python scripts/pretrained_probe.py --model MSD_vgg --whole-train
    python scripts/side_by_side_probe.py --name trained+musicnn-MSD_vgg \\
        --first .cache/backbone_probe/step1000ms/features_step0 --second .cache/pretrained_probe/features_MSD_vgg
    python scripts/ausil_data_curve.py --queries 38 --features .cache/side_by_side_probe/trained+musicnn-MSD_vgg

Both directories hold `main/` and `cross/` as the probes write them. The join (ausil_lib/features/join.py)
keeps the leading segments both backbones have and refuses, by video, a larger difference in segment count
than the two extractors' end padding explains.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import ausil_lib  # noqa: F401  (pins the numeric paths before torch loads)

# isort: split
from tqdm import tqdm

from ausil_lib.core.config import load_params
from ausil_lib.core.formats import atomic_write_json
from ausil_lib.features.extraction import feature_path, load_features, save_features, stored_time_step_ms
from ausil_lib.features.join import join_descriptors

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backbone_probe import score  # noqa: E402

SUBDIRS = ("main", "cross")


def join_dirs(first: Path, second: Path, out: Path, step_ms: int) -> int:
    """Join every video both directories hold into `out` (files already there are kept: resume); returns
    how many videos were joined."""
    out.mkdir(parents=True, exist_ok=True)
    both = sorted({p.name for p in first.glob("*.npz")} & {p.name for p in second.glob("*.npz")})
    for name in tqdm(both, desc=out.name, unit="video"):
        if (out / name).is_file():
            continue
        a, b = load_features(first / name), load_features(second / name)
        meta = {"video_id": a.video_id, "joined": [str(first), str(second)], "signature": {"time_step_ms": step_ms}}
        joined = join_descriptors(a.descriptors, b.descriptors, a.video_id, step_ms)
        save_features(feature_path(out, a.video_id), joined, meta)
    return len(both)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", required=True, help="row name in --output and the joined feature dir's name")
    ap.add_argument("--first", type=Path, required=True, help="a probe's feature dir (main/, cross/)")
    ap.add_argument("--second", type=Path, required=True, help="another probe's feature dir (main/, cross/)")
    ap.add_argument("--work", default=".cache/side_by_side_probe", help="joined features: %(default)s")
    ap.add_argument("--output", default="reports/ablations/backbone_probe.json")
    args = ap.parse_args()

    params = load_params()
    feat_dir = Path(args.work) / args.name
    step = stored_time_step_ms(args.first / "main", params.features.time_step_ms)
    start = time.perf_counter()
    for sub in SUBDIRS:
        join_dirs(args.first / sub, args.second / sub, feat_dir / sub, step)
    join_s = round(time.perf_counter() - start, 1)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    row = {
        "name": args.name,
        "steps": 0,
        "backbone": "two backbones side by side",
        "overrides": {"first": str(args.first), "second": str(args.second)},
        "weights": None,
        "bn_identity": False,
        **score(params, feat_dir),
        "train_seconds": None,
        "extract_seconds": join_s,
        "commit": commit,
        "config": None,
    }
    print(args.name, json.dumps({k: v for k, v in row.items() if k.endswith(("mac", "mac_w"))}), flush=True)
    out_path = Path(args.output)
    rows = json.loads(out_path.read_text()) if out_path.is_file() else {}  # read late: keep other probes' rows
    atomic_write_json(out_path, dict(sorted((rows | {f"{args.name}@0": row}).items())))


if __name__ == "__main__":
    main()
