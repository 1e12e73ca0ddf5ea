"""The Kumar et al. (ICASSP 2018) `weak_mxh64_1024` CNN and AuSiL's 2528-d MAC descriptor.

Module names follow the original weights file (`layer1` ... `layer19`, each conv layer a
Sequential of Conv2d, BatchNorm2d, ReLU) so that `mx-h64-1024_0d3-1.17.pkl` loads unchanged.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..core.config import Params, full_float32
from ..core.formats import atomic_write
from ..core.numerics import apply_torch_settings
from .weights import check

apply_torch_settings()  # torch's threads and cuDNN settings, before any tensor work (core/numerics.py)

AUDIOSET_CLASSES = 527
# (name, in_channels, out_channels, kernel) for conv layers; None marks a 2x2 max-pool.
_LAYERS: tuple[tuple[str, int, int, int] | tuple[str, None, None, None], ...] = (
    ("layer1", 1, 16, 3),
    ("layer2", 16, 16, 3),
    ("layer3", None, None, None),
    ("layer4", 16, 32, 3),
    ("layer5", 32, 32, 3),
    ("layer6", None, None, None),
    ("layer7", 32, 64, 3),
    ("layer8", 64, 64, 3),
    ("layer9", None, None, None),
    ("layer10", 64, 128, 3),
    ("layer11", 128, 128, 3),
    ("layer12", None, None, None),
    ("layer13", 128, 256, 3),
    ("layer14", 256, 256, 3),
    ("layer15", None, None, None),
    ("layer16", 256, 512, 3),
    ("layer17", None, None, None),
    ("layer18", 512, 1024, 2),
)
MAC_TAPS: tuple[str, ...] = (
    "layer1",
    "layer2",
    "layer4",
    "layer5",
    "layer7",
    "layer8",
    "layer10",
    "layer11",
    "layer13",
    "layer14",
    "layer16",
    "layer18",
)
DESCRIPTOR_DIM = 2528


class BackboneWeightsError(ValueError):
    """A weights file that is not a weak_mxh64_1024 state dict; the message names the file."""


class KumarCNN(nn.Module):
    """weak_mxh64_1024: input (batch, 1, frames, 128 mels); MAC taps after the ReLUs of 12 conv layers."""

    def __init__(self, n_classes: int = AUDIOSET_CLASSES) -> None:
        super().__init__()
        for name, cin, cout, k in _LAYERS:
            if cin is None:
                self.add_module(name, nn.MaxPool2d(2))
            else:
                pad = 1 if k == 3 else 0
                self.add_module(
                    name,
                    nn.Sequential(nn.Conv2d(cin, cout, kernel_size=k, padding=pad), nn.BatchNorm2d(cout), nn.ReLU()),
                )
        self.layer19 = nn.Sequential(nn.Conv2d(1024, n_classes, kernel_size=1), nn.Sigmoid())

    def trunk(self) -> list[tuple[str, nn.Module]]:
        """Layers 1-18 in order: all the descriptor needs (the classifier layer19 is skipped)."""
        return [(name, getattr(self, name)) for name, *_ in _LAYERS]

    def mac(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, 1, frames, mels) -> (batch, 2528) MAC descriptor."""
        return mac_descriptor(self.trunk(), x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """AudioSet class probabilities, as the original network (global average pool of layer19)."""
        out = x
        for _, layer in self.trunk():
            out = layer(out)
        return self.layer19(out).mean(dim=(2, 3))


def mac_descriptor(layers: list[tuple[str, nn.Module]], x: torch.Tensor) -> torch.Tensor:
    """At each tap: L2-normalise over channels per position, max over time and frequency, L2-normalise."""
    parts = []
    out = x
    for name, layer in layers:
        out = layer(out)
        if name in MAC_TAPS:
            pooled = F.normalize(out, p=2, dim=1).amax(dim=(2, 3))
            parts.append(F.normalize(pooled, p=2, dim=1))
    return torch.cat(parts, dim=1)


def fused_trunk(model: KumarCNN) -> list[tuple[str, nn.Module]]:
    """Layers 1-18 with BatchNorm folded into the convolutions: same outputs, ~2x faster on CPU."""
    layers: list[tuple[str, nn.Module]] = []
    for name, layer in model.trunk():
        if isinstance(layer, nn.Sequential):
            conv, bn, relu = layer
            layer = nn.Sequential(fuse_conv_bn_eval(conv.eval(), bn.eval()), relu)
        layers.append((name, layer))
    return layers


class MacExtractor(nn.Module):
    """Inference wrapper: frozen backbone -> MAC descriptors, batched, on a device."""

    def __init__(
        self, model: KumarCNN, device: torch.device | str = "cpu", fuse_bn: bool = True, channels_last: bool = True
    ) -> None:
        super().__init__()
        model = model.eval()
        names_layers = fused_trunk(model) if fuse_bn else model.trunk()
        self.names = [n for n, _ in names_layers]
        self.layers = nn.ModuleList([m for _, m in names_layers])
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.to(self.device, memory_format=self.memory_format)
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    @torch.inference_mode()
    def forward(self, segments: torch.Tensor) -> torch.Tensor:
        x = segments.to(self.device, dtype=torch.float32).contiguous(memory_format=self.memory_format)
        with full_float32():
            return mac_descriptor(list(zip(self.names, self.layers)), x)

    def extract(self, segments: torch.Tensor, batch_size: int = 128) -> np.ndarray:
        """(n, 1, frames, mels) -> float32 (n, 2528), `batch_size` segments per call."""
        out = [self(segments[i : i + batch_size]).float().cpu() for i in range(0, segments.shape[0], batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, DESCRIPTOR_DIM), np.float32)


# ---------------------------------------------------------------- weights


def load_audioset_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read the original weights file: a state dict, keys with or without DataParallel's `module.`.

    Any other layout (a pickled model, a checkpoint dict, another network) is refused with the
    file name and what is wrong, instead of loading a half-initialised network.
    """
    path = Path(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise BackboneWeightsError(
            f"{path}: not a readable PyTorch state dict ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    if not isinstance(raw, Mapping) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        kind = type(raw).__name__
        raise BackboneWeightsError(f"{path}: expected a state dict of tensors (weak_mxh64_1024), found a {kind}")
    state = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in raw.items()}
    reference = KumarCNN().state_dict()
    optional = {k for k in reference if k.endswith("num_batches_tracked")}  # absent from pre-0.4 files
    missing = sorted(set(reference) - set(state) - optional)
    unexpected = sorted(set(state) - set(reference))
    wrong_shape = sorted(k for k in set(state) & set(reference) if state[k].shape != reference[k].shape)
    if missing or unexpected or wrong_shape:
        detail = "; ".join(
            f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
            if keys
        )
        raise BackboneWeightsError(f"{path}: not a weak_mxh64_1024 state dict ({detail})")
    for k in optional - set(state):
        state[k] = reference[k]
    return state


@dataclass(frozen=True)
class BackboneInfo:
    """Which backbone produced a descriptor: written into every feature file and report."""

    source: str  # audioset | trained | random
    label: str  # human-readable, e.g. "audioset weights mx-h64-1024_0d3-1.17.pkl (sha256 1a2b3c4d5e6f)"
    fingerprint: str  # short id that changes whenever the weights change

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def save_state(path: str | os.PathLike[str], model: nn.Module, meta: Mapping[str, Any]) -> None:
    """Project format for trained networks (backbone, AuSiL): torch.save({'state_dict', 'meta'}), atomically.

    Saved through a file object, not the temporary file's name: torch.save names the archive's inner folder
    after the file, and a random name there would give the same weights a new md5 on every save.
    """
    state = {"state_dict": model.state_dict(), "meta": dict(meta)}
    atomic_write(path, lambda f: torch.save(state, f))


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 of a state dict's names, dtypes, shapes and values: the weights' identity, unlike the file's
    hash, which also covers the training meta."""
    h = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_backbone(params: Params) -> tuple[KumarCNN, BackboneInfo]:
    """The backbone that params.yaml selects, never a random network unless asked for by name."""
    cfg = params.backbone
    source = cfg.source
    pin = params.release.backbone
    audioset = Path(pin.dest)
    trained = Path(cfg.trained_weights)
    if source == "auto":
        if audioset.is_file():
            source = "audioset"
        elif trained.is_file():
            source = "trained"
        else:
            raise FileNotFoundError(
                f"no backbone weights: the AudioSet weights {audioset} are absent (`ausil fetch-weights` "
                f"downloads them where the network allows) and no pipeline-trained backbone exists at {trained} "
                "(the train_backbone stage makes it). Set backbone.source: random in params.yaml only for an "
                "explicitly labelled control run."
            )
    model = KumarCNN()
    if source == "audioset":
        if not audioset.is_file():
            raise FileNotFoundError(
                f"{audioset}: AudioSet weights file not found (backbone.source: audioset; "
                "`ausil fetch-weights` downloads it)"
            )
        digest = check(audioset, pin).sha256
        model.load_state_dict(load_audioset_state_dict(audioset))
        info = BackboneInfo(
            "audioset", f"AudioSet-pretrained weights {audioset.name} (sha256 {digest[:12]})", f"audioset-{digest[:12]}"
        )
    elif source == "trained":
        if not trained.is_file():
            raise FileNotFoundError(f"{trained}: pipeline-trained backbone not found (backbone.source: trained)")
        blob = torch.load(trained, map_location="cpu", weights_only=True)
        if not isinstance(blob, Mapping) or "state_dict" not in blob:
            raise BackboneWeightsError(f"{trained}: not a backbone saved by ausil (expected keys state_dict, meta)")
        model.load_state_dict(blob["state_dict"])
        digest = state_digest(blob["state_dict"])
        info = BackboneInfo(
            "trained",
            f"backbone trained by this pipeline on the train split ({trained.name}, weights sha256 {digest[:12]})",
            f"trained-{digest[:12]}",
        )
    elif source == "random":
        seed = cfg.random_seed
        torch.manual_seed(seed)
        model = KumarCNN()
        info = BackboneInfo(
            "random", f"UNTRAINED randomly initialised backbone (seed {seed}) - control only", f"random-seed{seed}"
        )
    else:
        raise ValueError(f"backbone.source must be auto, audioset, trained or random, got {source!r}")
    return model.eval(), info
