"""musicnn's VGG (Pons & Serra, ISC licence), a backbone trained elsewhere, read without TensorFlow.

Issue 13 needs an offline substitute for the AudioSet backbone. The package registry is the one network
this project's set-up needs, and the `musicnn` wheel carries four music-tagging networks as TensorFlow
checkpoints. Its VGG (five 3x3 conv blocks of 128 channels on a 96-band log-mel at 16 kHz, trained on the
Million Song Dataset's or MagnaTagATune's tags) describes AuSiL's segments, tapped like this project's
backbone (MAC of each block). Beside the trained substitute it was the best descriptor measured
(docs/history.md); scripts/pretrained_probe.py extracts it alone, and params `backbone.partner` puts it beside
the backbone in every extraction (`Partner`).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio

from ..audio.decode import decode_pcm16
from ..core.config import MUSICNN_MODELS
from ..core.download import fetch
from ..core.numerics import apply_torch_settings
from ..features.logmel import portable_log10
from .tf_checkpoint import TFCheckpoint

apply_torch_settings()  # torch's threads and cuDNN settings, before any tensor work (core/numerics.py)

# the wheel on PyPI, pinned by its SHA-256 (docs/ausil-reference-facts.md lists it with the other pins)
WHEEL = {
    "url": "https://files.pythonhosted.org/packages/1b/6f/38229e7d99c438e11114bbfa39c8c39185458c398011d0b6d7d7c7401617/"
    "musicnn-0.1.0-py3-none-any.whl",
    "sha256": "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa",
}
MODELS = MUSICNN_MODELS
# musicnn's front end (its configuration.py): 16 kHz, 512-point FFT, hop 256, 96 mel bands, log10(1 + 10^4 x)
SAMPLE_RATE = 16000
BN_EPS = 1e-3  # TensorFlow's batch_normalization default
# max pooling after blocks 1-4 (kernel, stride), time x frequency; the fifth block's output is tapped unpooled
POOLS = (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)))


def checkpoint(model: str, cache: Path) -> TFCheckpoint:
    """The model's checkpoint out of the verified wheel (fetched, and unpacked, only when absent)."""
    if model not in MODELS:
        raise ValueError(f"musicnn model must be one of {MODELS}, got {model!r}")
    wheel = cache / WHEEL["url"].rsplit("/", 1)[1]
    fetch(WHEEL["url"], wheel, sha256=WHEEL["sha256"])
    prefix = cache / model / "model"
    if not Path(f"{prefix}.index").is_file():
        prefix.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as zf:
            for suffix in (".data-00000-of-00001", ".index"):  # the wheel stores them as "<model>/<suffix>"
                Path(f"{prefix}{suffix}").write_bytes(zf.read(f"musicnn/{model}/{suffix}"))
    return TFCheckpoint(prefix)


class MusicnnVGG(torch.nn.Module):
    """musicnn's `vgg` network up to its fifth block, BatchNorm folded in (inference only)."""

    def __init__(self, ckpt: TFCheckpoint, device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.device = torch.device(device)

        def tensor(name: str) -> torch.Tensor:
            return torch.from_numpy(np.asarray(ckpt.get(name), dtype=np.float32)).to(self.device)

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


def musicnn_audio(path: str, ffmpeg: str | None = None, timeout_s: float = 600.0) -> np.ndarray:
    """Mono float audio at 16 kHz, scaled as librosa.load scales it (musicnn's own loader)."""
    return decode_pcm16(path, sample_rate=SAMPLE_RATE, ffmpeg=ffmpeg, timeout_s=timeout_s).astype(np.float32) / 32768.0


class Segments:
    """AuSiL's segments (window and step in seconds), each made into musicnn's log-mel on its own."""

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
        return portable_log10(1 + 10000 * mel).transpose(1, 2).unsqueeze(1)


def describe(net: MusicnnVGG, segments: Segments, audio: np.ndarray, batch: int = 64) -> np.ndarray:
    """(segments, 640) descriptors of one clip's audio, `batch` segments through the network at a time."""
    segs = segments(audio).to(net.device)
    return torch.cat([net(segs[i : i + batch]) for i in range(0, len(segs), batch)]).cpu().numpy()


class Partner:
    """musicnn's network beside the extractor's backbone (params `backbone.partner`).

    It decodes a file itself, at its own 16 kHz, and describes the same windows as the backbone
    (`features/join.py` joins the two halves). Its label and fingerprint name the model and the wheel's
    digest, so joined descriptors are never taken for the backbone's alone.
    """

    def __init__(
        self,
        model: str,
        ckpt: TFCheckpoint,
        window_s: float,
        step_s: float,
        device: torch.device | str = "cpu",
        ffmpeg: str | None = None,
        timeout_s: float = 600.0,
    ) -> None:
        self.model = model
        self.ffmpeg, self.timeout_s = ffmpeg, timeout_s
        self.net = MusicnnVGG(ckpt, device)
        self.segments = Segments(window_s, step_s)
        digest = WHEEL["sha256"][:12]
        self.label = f"musicnn {model} (PyPI musicnn 0.1.0, wheel sha256 {digest})"
        self.fingerprint = f"musicnn-{model}-{digest}"

    def decode(self, path: str) -> np.ndarray:
        return musicnn_audio(path, self.ffmpeg, self.timeout_s)

    def describe(self, audio: np.ndarray) -> np.ndarray:
        return describe(self.net, self.segments, audio)
