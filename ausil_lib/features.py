"""Log-mel spectrograms and 2 s segments, as the AuSiL feature extractor sees them.

The mel filterbank and dB conversion are configured to match librosa's defaults (Slaney mel
scale and area normalisation, `power_to_db` with ref 1.0, amin 1e-10, top_db 80), because the
pretrained backbone was trained on librosa features.  The dB floor is relative to the loudest
bin of the whole video, as the reference computes it once per video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio

AMIN = 1e-10  # librosa power_to_db default


@dataclass(frozen=True)
class FeatureConfig:
    """Front-end settings (params.yaml `features` plus the audio sample rate)."""

    sample_rate: int = 44100
    n_mels: int = 128
    n_fft: int = 1024
    hop_length: int = 512
    pad_mode: str = "constant"
    top_db: float | None = 80.0
    window_s: float = 2.0
    time_step_ms: int = 1000

    @classmethod
    def from_params(cls, params: Mapping[str, Any], time_step_ms: int | None = None) -> "FeatureConfig":
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in params.get("features", {}).items() if k in names}
        values["sample_rate"] = params.get("audio", {}).get("sample_rate", cls.sample_rate)
        if time_step_ms is not None:
            values["time_step_ms"] = time_step_ms
        return cls(**values)

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def step_frames(self) -> int:
        """Frames between segment starts, rounded up as the reference does (87 for 1 s, 11 for 125 ms)."""
        if self.time_step_ms <= 0:
            raise ValueError(f"time_step_ms must be positive, got {self.time_step_ms}")
        return math.ceil(self.time_step_ms / 1000.0 * self.frames_per_second - 1e-9)

    @property
    def window_frames(self) -> int:
        """Frames per segment: the smallest multiple of the step covering `window_s` (174 at 1 s, 176 at 125 ms)."""
        return self.step_frames * math.ceil(self.window_s * self.frames_per_second / self.step_frames - 1e-9)


class LogMel(torch.nn.Module):
    """Waveform (samples,) -> log-mel (frames, n_mels) in dB, librosa-compatible."""

    def __init__(self, cfg: FeatureConfig) -> None:
        super().__init__()
        self.top_db = cfg.top_db
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels,
            f_min=0.0, f_max=cfg.sample_rate / 2, power=2.0, center=True, pad_mode=cfg.pad_mode,
            norm="slaney", mel_scale="slaney", window_fn=torch.hann_window)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        power = self.mel(waveform)  # (n_mels, frames)
        db = 10.0 * torch.log10(torch.clamp(power, min=AMIN))
        if self.top_db is not None:
            db = torch.maximum(db, db.max() - self.top_db)
        return db.transpose(-1, -2).contiguous()


def segment(logmel: torch.Tensor, step_frames: int, window_frames: int) -> torch.Tensor:
    """Cut (frames, n_mels) into (n, 1, window, n_mels) segments, zero-padding the end.

    As in the reference, the spectrogram is padded with zeros so that every frame belongs to a
    segment; at least one segment is returned for any non-empty input.
    """
    frames = logmel.shape[0]
    n = max(1, math.ceil((frames - window_frames) / step_frames) + 1)
    padded_len = (n - 1) * step_frames + window_frames
    padded = F.pad(logmel, (0, 0, 0, padded_len - frames))
    return padded.unfold(0, window_frames, step_frames).permute(0, 2, 1).unsqueeze(1).contiguous()


class SegmentFrontEnd:
    """Audio samples -> backbone input segments on a device; one object reused for every file."""

    def __init__(self, cfg: FeatureConfig, device: torch.device | str = "cpu") -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.logmel = LogMel(cfg).to(self.device)

    @torch.inference_mode()
    def __call__(self, audio: np.ndarray) -> torch.Tensor:
        wave = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).to(self.device)
        return segment(self.logmel(wave), self.cfg.step_frames, self.cfg.window_frames)
