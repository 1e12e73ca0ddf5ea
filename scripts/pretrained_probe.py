"""Probe a backbone trained elsewhere and shipped on PyPI: musicnn's VGG, scored like the backbone probes.

Issue 13 asks for a better offline substitute for the AudioSet backbone. The package registry is the one
network this project's set-up needs, and the `musicnn` wheel (Pons & Serra, ISC licence) carries four
music-tagging networks as TensorFlow checkpoints, which `ausil_lib.models.tf_checkpoint` reads without
TensorFlow. This probe fetches the pinned wheel (SHA-256 checked), builds its VGG (five 3x3 conv blocks
of 128 channels on a 96-band log-mel at 16 kHz, trained on the Million Song Dataset's or MagnaTagATune's
tags), cuts each video into AuSiL's segments (params.yaml features.window_s / time_step_ms), takes the
MAC of each block's output like the AuSiL backbone's taps, and scores plain MAC and MAC + whitening on
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
import zipfile
from pathlib import Path

import ausil_lib  # noqa: F401  (pins the numeric paths before torch loads)

# isort: split
import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from tqdm import tqdm

from ausil_lib.audio.decode import decode_pcm16
from ausil_lib.core.config import load_params
from ausil_lib.core.download import fetch
from ausil_lib.core.formats import atomic_write_json, read_video_list
from ausil_lib.core.parallel import ordered_map
from ausil_lib.features.extraction import feature_path, save_features
from ausil_lib.models.tf_checkpoint import TFCheckpoint

sys.path.insert(0, str(Path(__file__).parent))
from backbone_probe import score, videos_to_extract  # noqa: E402

WHEEL = {
    "url": "https://files.pythonhosted.org/packages/1b/6f/38229e7d99c438e11114bbfa39c8c39185458c398011d0b6d7d7c7401617/"
    "musicnn-0.1.0-py3-none-any.whl",
    "sha256": "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa",
}
MODELS = ("MSD_vgg", "MTT_vgg")
# musicnn's front end (its configuration.py): 16 kHz, 512-point FFT, hop 256, 96 mel bands, log10(1 + 10^4 x)
SAMPLE_RATE = 16000
BN_EPS = 1e-3  # TensorFlow's batch_normalization default
# max pooling after blocks 1-4 (kernel, stride), time x frequency; the fifth block's output is tapped unpooled
POOLS = (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)))


def checkpoint(model: str, cache: Path) -> TFCheckpoint:
    """The model's checkpoint out of the verified wheel (re-extracted only when absent)."""
    wheel = cache / WHEEL["url"].rsplit("/", 1)[1]
    fetch(WHEEL["url"], wheel, sha256=WHEEL["sha256"])
    prefix = cache / model / "model"
    if not Path(f"{prefix}.index").is_file():
        prefix.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as zf:
            for suffix in (".index", ".data-00000-of-00001"):  # the wheel stores them as "<model>/<suffix>"
                Path(f"{prefix}{suffix}").write_bytes(zf.read(f"musicnn/{model}/{suffix}"))
    return TFCheckpoint(prefix)


class MusicnnVGG(torch.nn.Module):
    """musicnn's `vgg` network up to its fifth block, BatchNorm folded in (inference only)."""

    def __init__(self, ckpt: TFCheckpoint) -> None:
        super().__init__()

        def tensor(name: str) -> torch.Tensor:
            return torch.from_numpy(np.asarray(ckpt.get(name), dtype=np.float32))

        def batchnorm(name: str) -> tuple[torch.Tensor, torch.Tensor]:
            scale = tensor(f"{name}/gamma") / torch.sqrt(tensor(f"{name}/moving_variance") + BN_EPS)
            return scale, tensor(f"{name}/beta") - tensor(f"{name}/moving_mean") * scale

        self.input_bn = batchnorm("batch_normalization")
        # TensorFlow kernels are (height, width, in, out); conv -> ReLU -> BatchNorm in each block
        self.blocks = [
            (tensor(f"{i}CNN/kernel").permute(3, 2, 0, 1).contiguous(), tensor(f"{i}CNN/bias"))
            + batchnorm(f"batch_normalization_{i}")
            for i in range(1, 6)
        ]

    @torch.inference_mode()
    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        """(n, 1, frames, 96) -> (n, 640): per block, L2-normalise over channels, max over time and
        frequency, L2-normalise (the AuSiL backbone's MAC), then concatenate."""
        x = logmel * self.input_bn[0] + self.input_bn[1]
        parts = []
        for i, (weight, bias, scale, shift) in enumerate(self.blocks):
            x = F.relu(F.conv2d(x, weight, bias, padding=1)) * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
            parts.append(F.normalize(F.normalize(x, dim=1).amax(dim=(2, 3)), dim=1))
            if i < len(POOLS):
                x = F.max_pool2d(x, *POOLS[i])
        return torch.cat(parts, dim=1)


def decode(path: str) -> np.ndarray:
    """Mono float audio at 16 kHz, scaled as librosa.load scales it (musicnn's own loader)."""
    return decode_pcm16(path, sample_rate=SAMPLE_RATE).astype(np.float32) / 32768.0


class Segments:
    """AuSiL's segments (window, step from params.yaml), each made into musicnn's log-mel on its own."""

    def __init__(self, window_s: float, step_s: float) -> None:
        self.window = round(window_s * SAMPLE_RATE)
        self.step = round(step_s * SAMPLE_RATE)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=512, hop_length=256, n_mels=96, norm="slaney", mel_scale="slaney"
        )

    def __call__(self, audio: np.ndarray) -> torch.Tensor:
        """(n, 1, frames, 96); the last window is zero-padded, and a clip shorter than a window is one segment."""
        n = 1 + max(0, -(-(len(audio) - self.window) // self.step))
        audio = np.pad(audio, (0, max(0, (n - 1) * self.step + self.window - len(audio))))
        windows = np.stack([audio[i * self.step : i * self.step + self.window] for i in range(n)])
        mel = self.mel(torch.from_numpy(windows))  # (n, 96, frames)
        return torch.log10(1 + 10000 * mel).transpose(1, 2).unsqueeze(1)


def extract(net: MusicnnVGG, segments: Segments, videos: dict[str, str], out: Path, workers: int) -> None:
    """One feature file per video, as `ausil extract` writes them; files already there are kept (resume)."""
    todo = sorted(v for v in videos if not feature_path(out, v).is_file())
    out.mkdir(parents=True, exist_ok=True)
    thunks = ordered_map(decode, [videos[v] for v in todo], workers)
    for video, audio in tqdm(zip(todo, thunks, strict=True), total=len(todo), desc=out.name, unit="video"):
        segs = segments(audio())
        desc = torch.cat([net(segs[i : i + 64]) for i in range(0, len(segs), 64)])
        save_features(feature_path(out, video), desc.numpy(), {"video_id": video, "path": videos[video]})


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
