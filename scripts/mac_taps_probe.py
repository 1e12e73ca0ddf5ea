"""Probe which backbone layers should feed the MAC descriptor, from features the pipeline already made.

Issue 13 names "which layers feed the MAC" as a lever. The descriptor is the concatenation of twelve
per-tap MAC vectors, each L2-normalised on its own (`models/backbone.py`), so a subset of taps is a
subset of columns of the stored 2528-d descriptors: no backbone is trained or run again. For each
backbone (`features/<backbone>`, `features/cross_<backbone>`) and each subset below, the whitening is
learnt from the train split's descriptors as AuSiL's training learns it, and plain MAC and MAC + W are
scored on the main corpus's `val` and the cross-corpus `val` / `val_speed`. `test` is never read.
Rows are merged into --output by key (the ablations notebook shows them).

    python scripts/mac_taps_probe.py          # after `dvc repro` has made features/ and features/cross_*
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import ausil_lib  # noqa: F401  (pins the numeric paths before torch loads)

# isort: split
import numpy as np
import torch

from ausil_lib.core.config import load_params
from ausil_lib.core.formats import atomic_write_json
from ausil_lib.models.ausil import AuSiL, learn_pca
from ausil_lib.models.backbone import DESCRIPTOR_DIM, MAC_TAPS, KumarCNN
from ausil_lib.models.training import load_benchmark_features, pca_sample, validation_map

# output channels of each tap, in MAC_TAPS order: the widths of the descriptor's column blocks
TAP_CHANNELS = tuple(getattr(KumarCNN(), tap)[0].out_channels for tap in MAC_TAPS)
SUBSETS: dict[str, tuple[str, ...]] = {
    "all (paper)": MAC_TAPS,
    "without layer18": MAC_TAPS[:-1],
    "layer1-8": MAC_TAPS[:6],
    "layer7-14": MAC_TAPS[4:10],
    "layer10-18": MAC_TAPS[6:],
    "layer4-18": MAC_TAPS[2:],
}
# (label, feature-folder prefix, benchmark) of every set a subset is scored on
SETS = (
    ("val", "", "data/corpus/val"),
    ("cross_val", "cross_", "data/cross_corpus/val"),
    ("cross_val_speed", "cross_", "data/cross_corpus/val_speed"),
)


def columns(taps: tuple[str, ...]) -> np.ndarray:
    """Descriptor columns of the given taps."""
    starts = np.cumsum((0,) + TAP_CHANNELS)
    return np.concatenate([np.arange(starts[i], starts[i + 1]) for i, t in enumerate(MAC_TAPS) if t in taps])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbones", default="main,random", help="feature folders to score (default: %(default)s)")
    ap.add_argument("--output", default="reports/ablations/mac_taps_probe.json")
    args = ap.parse_args()
    assert sum(TAP_CHANNELS) == DESCRIPTOR_DIM
    cfg = load_params().training
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    rows = {}
    for backbone in args.backbones.split(","):
        train = load_benchmark_features(Path("features", backbone), Path("data/corpus/train"))
        sample = pca_sample(train, cfg.pca_sample_size, cfg.seed)
        sets = {
            label: (load_benchmark_features(Path("features", f"{prefix}{backbone}"), Path(d)), Path(d))
            for label, prefix, d in SETS
        }
        for order, (name, taps) in enumerate(SUBSETS.items()):
            cols = columns(taps)
            mean, weights = learn_pca(sample[:, cols], float(cfg.pca_eps))
            row: dict[str, object] = {"backbone": backbone, "taps": name, "order": order, "dims": int(cols.size)}
            row["commit"] = commit
            for label, (feats, bench) in sets.items():
                sliced = {v: f[:, cols] for v, f in feats.items()}
                for variant in ("mac", "mac_w"):
                    model = AuSiL(dims=int(cols.size), variant=variant)
                    model.set_pca(mean, weights)
                    value = validation_map(model.eval(), sliced, bench, torch.device("cpu"))
                    row[f"{label}_{variant}"] = round(value, 4)
            print(json.dumps(row), flush=True)
            rows[f"{backbone}:{name}"] = row
    # merged by key, so that a run on one backbone keeps the other's rows
    out = Path(args.output)
    atomic_write_json(out, (json.loads(out.read_text()) if out.is_file() else {}) | rows)


if __name__ == "__main__":
    main()
