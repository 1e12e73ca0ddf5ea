"""Does the pipeline give the same bits on another CPU? Digests of its own steps, to compare across machines.

Run the same command natively and under `qemu-x86_64 -cpu Haswell` (an emulated Intel CPU; `EPYC-Rome`
for AMD), or on two real machines, from the repository root after `make repro`. Both must print the
same JSON (docs/reproducibility.md).

    python scripts/cross_cpu_probe.py train --steps 1
    python scripts/cross_cpu_probe.py features --backbone main data/corpus/media/test/test_d000.webm ...

`train` runs the backbone stage's function (`train_backbone`, on the stage's recordings) for the first
`--steps` steps, into a scratch folder, and prints each step's loss and the weights' digest. The steps
are the stage's own first steps (no schedule depends on their count). Emulated, one step took 41 minutes
on a 2-core AMD EPYC, mostly decoding; the stage's time cap (`budget_s`) ends a slower run early, and the
printed `steps` says how many ran. `features` prints each file's descriptor digest through the
pipeline's extractor and whether it equals the one the pipeline stored in features/<backbone>/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import ausil_lib  # noqa: F401  (pins the numeric paths before torch loads)

# isort: split
import numpy as np
import torch

from ausil_lib.core.config import Params, load_params
from ausil_lib.features.extraction import Extractor, feature_path, load_features
from ausil_lib.models.backbone import state_digest
from ausil_lib.models.backbone_training import train_backbone


def train_probe(
    params: Params, steps: int, sources: Path, corpus: Path, extra: Path | None, scratch: Path
) -> dict[str, Any]:
    """The backbone stage's first `steps` steps: their losses and the weights after them."""
    params = replace(params, device="cpu", backbone_training=replace(params.backbone_training, max_steps=steps))
    meta = train_backbone(params, sources, corpus, scratch / "backbone.pt", scratch / "curve.json", extra, False)
    state = torch.load(scratch / "backbone.pt", map_location="cpu", weights_only=False)["state_dict"]
    curve = json.loads((scratch / "curve.json").read_text(encoding="utf-8"))
    return {"steps": meta["steps"], "losses": [c["loss"] for c in curve], "weights": state_digest(state)[:16]}


def features_probe(params: Params, backbone: str, files: Sequence[str], stored_root: Path) -> dict[str, Any]:
    """Each file's descriptor digest through the extractor, and whether it equals the stored descriptors."""
    params = replace(params, device="cpu")
    if backbone == "random":
        params = replace(params, backbone=replace(params.backbone, source="random"))
    extractor = Extractor.from_params(params)
    out: dict[str, Any] = {}
    for path in files:
        vid = Path(path).stem
        desc = np.ascontiguousarray(extractor.descriptors(vid, extractor.prepare(path)), dtype=np.float32)
        stored = feature_path(stored_root / backbone, vid)
        out[vid] = {
            "descriptors": hashlib.sha256(desc.tobytes()).hexdigest()[:16],
            "equals_stored": bool(np.array_equal(load_features(stored).descriptors, desc))
            if stored.is_file()
            else None,
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml")
    sub = ap.add_subparsers(dest="probe", required=True)
    tr = sub.add_parser("train", help="the backbone stage's first steps")
    tr.add_argument("--steps", type=int, default=1)
    fe = sub.add_parser("features", help="descriptors of the given files")
    fe.add_argument("--backbone", choices=["main", "random"], default="main")
    fe.add_argument("files", nargs="+")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    if args.probe == "train":
        with tempfile.TemporaryDirectory() as scratch:
            extra = Path("data/backbone_sources") if params.backbone_training.extra_sources else None
            result = train_probe(params, args.steps, Path("data/sources"), Path("data/corpus"), extra, Path(scratch))
    else:
        result = features_probe(params, args.backbone, args.files, Path("features"))
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
