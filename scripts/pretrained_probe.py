"""Probe a backbone trained elsewhere and shipped on PyPI: musicnn's VGG, scored like the backbone probes.

Issue 13 asks for a better offline substitute for the AudioSet backbone. This probe fetches the pinned
`musicnn` wheel (SHA-256 checked) and builds its VGG without TensorFlow (ausil_lib/models/musicnn.py),
cuts each video into AuSiL's segments (params.yaml features.window_s / time_step_ms), takes the MAC of
each block's output like the AuSiL backbone's taps, and scores plain MAC and MAC + whitening on
`val` and the cross-corpus `val` / `val_speed`, exactly as scripts/backbone_probe.py does. `test` is
never read. The row goes into reports/ablations/backbone_probe.json beside the trained recipes.

    python scripts/pretrained_probe.py --model MSD_vgg
    python scripts/pretrained_probe.py --model MTT_vgg
    python scripts/pretrained_probe.py --model MSD_vgg --whole-train   # for scripts/side_by_side_probe.py

Run from the repository root after `make repro` (it reads data/corpus and data/cross_corpus).
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
from ausil_lib.core.formats import atomic_write_json, read_video_list
from ausil_lib.core.parallel import ordered_map
from ausil_lib.features.extraction import feature_path, save_features
from ausil_lib.models.musicnn import MODELS, MusicnnVGG, Segments, checkpoint, describe, musicnn_audio

sys.path.insert(0, str(Path(__file__).parent))
from backbone_probe import score, videos_to_extract  # noqa: E402


def extract(net: MusicnnVGG, segments: Segments, videos: dict[str, str], out: Path, workers: int) -> None:
    """One feature file per video, as `ausil extract` writes them; files already there are kept (resume)."""
    todo = sorted(v for v in videos if not feature_path(out, v).is_file())
    out.mkdir(parents=True, exist_ok=True)
    thunks = ordered_map(musicnn_audio, [videos[v] for v in todo], workers)
    for video, audio in tqdm(zip(todo, thunks, strict=True), total=len(todo), desc=out.name, unit="video"):
        save_features(
            feature_path(out, video), describe(net, segments, audio()), {"video_id": video, "path": videos[video]}
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=MODELS, default="MSD_vgg")
    ap.add_argument("--work", default=".cache/pretrained_probe", help="wheel, checkpoint, features: %(default)s")
    ap.add_argument(
        "--whole-train",
        action="store_true",
        help="extract every train-split video, not only the PCA sample (for scripts/side_by_side_probe.py)",
    )
    ap.add_argument(
        "--test-sets",
        action="store_true",
        help="only extract the test and test_speed databases into test/ (for scripts/selected_on_test.py); no row",
    )
    ap.add_argument("--output", default="reports/ablations/backbone_probe.json")
    args = ap.parse_args()

    params = load_params()
    work = Path(args.work)
    net = MusicnnVGG(checkpoint(args.model, work))
    segments = Segments(params.features.window_s, params.features.time_step_ms / 1000)
    feat_dir = work / f"features_{args.model}"
    if args.test_sets:  # after the choice: these never make a probe row
        videos = {}
        for set_name in ("test", "test_speed"):
            videos.update(read_video_list(Path("data/corpus", set_name, "database.txt")))
        extract(net, segments, videos, feat_dir / "test", params.extract.decode_workers)
        return
    start = time.perf_counter()
    for sub, videos in videos_to_extract(args.whole_train).items():
        extract(net, segments, videos, feat_dir / sub, params.extract.decode_workers)
    extract_s = round(time.perf_counter() - start, 1)
    name = f"musicnn-{args.model}"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    row = {
        "name": name,
        "steps": 0,
        "backbone": f"pretrained elsewhere: musicnn {args.model} (PyPI musicnn 0.1.0)",
        "overrides": {"taps": "its five conv blocks", "input": "16 kHz, 96 mel bands"},
        "weights": None,
        "bn_identity": False,
        **score(params, feat_dir),
        "train_seconds": None,
        "extract_seconds": extract_s,
        "commit": commit,
        "config": None,
    }
    print(name, json.dumps({k: v for k, v in row.items() if k.endswith(("mac", "mac_w"))}), flush=True)
    out_path = Path(args.output)
    rows = json.loads(out_path.read_text()) if out_path.is_file() else {}  # read late: keep other probes' rows
    atomic_write_json(out_path, dict(sorted((rows | {f"{name}@0": row}).items())))


if __name__ == "__main__":
    main()
