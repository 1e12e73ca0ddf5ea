"""Log-mel spectrograms and 2 s segments, as the AuSiL feature extractor sees them.

The mel filterbank and dB conversion are configured to match librosa's defaults (Slaney mel
scale and area normalisation, `power_to_db` with ref 1.0, amin 1e-10, top_db 80), because the
pretrained backbone was trained on librosa features.  The dB floor is relative to the loudest
bin of the whole video, as the reference computes it once per video.

Segments are cut from the spectrogram after zero rows (0 dB) are appended to its end, either as the
authors' released extractor does (`segment_padding: released`, the default) or with as few rows as
cover every frame (`minimal`); docs/ausil-reference-facts.md states both rules.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio

from ..core.config import AudioConfig, FeaturesConfig, Params
from ..core.numerics import apply_torch_settings

apply_torch_settings()  # torch's threads and cuDNN settings, before any tensor work (core/numerics.py)

AMIN = 1e-10  # librosa power_to_db default

_LN2, _LN10, _SQRT_HALF = math.log(2.0), math.log(10.0), math.sqrt(0.5)
#: 1 / (2k + 1): ln(m) = 2 atanh(s) = 2 (s + s^3 / 3 + s^5 / 5 + ...), s = (m - 1) / (m + 1); with m in
#: [sqrt(1/2), sqrt(2)), |s| <= 0.172 and the terms left out weigh less than 1e-13 of the result
_ATANH_SERIES = tuple(1.0 / (2 * k + 1) for k in range(8))


def portable_log10(x: torch.Tensor) -> torch.Tensor:
    """log10 of positive finite values, from operations that round exactly (frexp, +, *, /) in float64.

    torch.log10 on the CPU runs MKL's vector maths, whose last bits depend on the processor: on an AMD
    EPYC one video's log-mel came out otherwise than under an emulated Intel CPU (docs/reproducibility.md).
    This gives the same bits on every CPU and GPU, within one float32 step of the exact logarithm."""
    mant, exp = torch.frexp(x.double())  # x = mant * 2**exp, mant in [1/2, 1)
    low = mant < _SQRT_HALF
    mant = torch.where(low, mant * 2.0, mant)
    s = (mant - 1.0).div_(mant.add_(1.0))
    s2 = s * s
    series = torch.full_like(s, _ATANH_SERIES[-1])
    for coef in reversed(_ATANH_SERIES[:-1]):
        series.mul_(s2).add_(coef)
    ln = (exp - low.to(exp.dtype)).double().mul_(_LN2).add_(series.mul_(s).mul_(2.0))
    return ln.div_(_LN10).to(x.dtype)


# The released extractor first appends 176 - (F mod 176) zero rows to an F-frame spectrogram (1 to 176:
# a whole 176 when F is already a multiple), at t = 1 s and in its 125 ms variant alike; we apply it at
# 500 and 250 ms too.  176 frames (2.04 s) is the 2 s window at 125 ms, 16 steps of 11 frames, so the
# 125 ms windows tile the padded length exactly (as do the 22- and 44-frame steps); the 1 s step of 87
# does not divide 176, so there it appends 1 to 87 more rows to reach a multiple of 87.
RELEASED_PAD_BLOCK = 176

SEGMENT_PADDINGS = ("released", "minimal")
# torch.stft's edge padding modes; librosa < 0.10 (the released extractor's) used reflect, >= 0.10 constant
PAD_MODES = ("reflect", "constant", "replicate", "circular")


def _check_choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{key} must be one of {', '.join(allowed)}; got {value!r}")


@dataclass(frozen=True)
class FeatureConfig(FeaturesConfig):
    """Front-end settings: params.yaml `features` plus the audio sample rate (defaults: those of core/config.py)."""

    sample_rate: int = AudioConfig.sample_rate

    def __post_init__(self) -> None:
        _check_choice("features.pad_mode", self.pad_mode, PAD_MODES)
        _check_choice("features.segment_padding", self.segment_padding, SEGMENT_PADDINGS)
        if self.segment_padding == "released" and self.time_step_ms > 0 and self.window_frames > RELEASED_PAD_BLOCK:
            raise ValueError(
                f"features.segment_padding 'released' cuts windows of at most {RELEASED_PAD_BLOCK} "
                f"frames (the released extractor's 2 s); window_s {self.window_s} needs "
                f"{self.window_frames}: use segment_padding 'minimal'"
            )

    @classmethod
    def from_params(cls, params: Params, time_step_ms: int | None = None) -> FeatureConfig:
        values = asdict(params.features)
        if time_step_ms is not None:
            values["time_step_ms"] = time_step_ms
        return cls(**values, sample_rate=params.audio.sample_rate)

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
        self.pad_mode, self.edge = cfg.pad_mode, cfg.n_fft // 2
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            n_mels=cfg.n_mels,
            f_min=0.0,
            f_max=cfg.sample_rate / 2,
            power=2.0,
            center=True,
            pad_mode=cfg.pad_mode,
            norm="slaney",
            mel_scale="slaney",
            window_fn=torch.hann_window,
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if self.pad_mode in ("reflect", "circular") and waveform.shape[-1] <= self.edge:
            raise ValueError(
                f"{waveform.shape[-1]} samples: too short for STFT edge padding {self.pad_mode!r} "
                f"(needs more than n_fft / 2 = {self.edge})"
            )
        power = self.mel(waveform)  # (n_mels, frames)
        db = 10.0 * portable_log10(torch.clamp(power, min=AMIN))
        if self.top_db is not None:
            db = torch.maximum(db, db.max() - self.top_db)
        return db.transpose(-1, -2).contiguous()


def frame_count(n_samples: int, cfg: FeatureConfig) -> int:
    """Log-mel frames of `n_samples` samples (centred STFT: one frame per hop, plus one)."""
    return n_samples // cfg.hop_length + 1


def padded_length(frames: int, step_frames: int, window_frames: int, padding: str = "minimal") -> int:
    """Rows of the zero-padded spectrogram that segments are cut from; every window that fits is one segment.

    minimal:  the fewest rows so that every frame lies in a segment (at least one segment).
    released: as the authors' released extractor: append 176 - (frames mod 176) rows (1 to 176); then, when
              the step does not divide 176 (t = 1 s, step 87), append step - (length mod step) more (1 to step,
              never 0).  At 125 ms this gives int(L / 11 - 15) windows of L rows, at 1 s (L' / 87) - 1.
    """
    _check_choice("segment padding", padding, SEGMENT_PADDINGS)
    if frames < 0 or step_frames < 1 or window_frames < 1:
        raise ValueError(f"bad segment geometry: frames {frames}, step {step_frames}, window {window_frames}")
    if padding == "minimal":
        n = max(1, math.ceil((frames - window_frames) / step_frames) + 1)
        return (n - 1) * step_frames + window_frames
    length = frames + RELEASED_PAD_BLOCK - frames % RELEASED_PAD_BLOCK
    if RELEASED_PAD_BLOCK % step_frames:
        length += step_frames - length % step_frames
    if length < window_frames:
        raise ValueError(f"released segment padding: window of {window_frames} frames exceeds {length} padded rows")
    return length


def _windows(length: int, step_frames: int, window_frames: int) -> int:
    return (length - window_frames) // step_frames + 1


def segment_count(frames: int, cfg: FeatureConfig) -> int:
    """Segments the front end cuts from a `frames`-frame log-mel under `cfg` (its step, window and padding)."""
    return _windows(
        padded_length(frames, cfg.step_frames, cfg.window_frames, cfg.segment_padding),
        cfg.step_frames,
        cfg.window_frames,
    )


def segment(logmel: torch.Tensor, step_frames: int, window_frames: int, padding: str = "minimal") -> torch.Tensor:
    """Cut (frames, n_mels) into (n, 1, window, n_mels) segments after zero-padding the end (`padded_length`).

    Segment k is rows [k * step, k * step + window) of the padded spectrogram; the padding rows are
    0 (0 dB, as the released extractor appends them).
    """
    frames = logmel.shape[0]
    length = padded_length(frames, step_frames, window_frames, padding)
    padded = F.pad(logmel, (0, 0, 0, length - frames))
    return padded.unfold(0, window_frames, step_frames).permute(0, 2, 1).unsqueeze(1).contiguous()


class SegmentFrontEnd:
    """Audio samples -> backbone input segments on a device; one object reused for every file."""

    def __init__(self, cfg: FeatureConfig, device: torch.device | str = "cpu") -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.logmel = LogMel(cfg).to(self.device)

    def cut(self, logmel: torch.Tensor) -> torch.Tensor:
        """(frames, n_mels) log-mel -> (n, 1, window, n_mels) segments, padded as `cfg.segment_padding` says."""
        return segment(logmel, self.cfg.step_frames, self.cfg.window_frames, self.cfg.segment_padding)

    @torch.inference_mode()
    def __call__(self, audio: np.ndarray) -> torch.Tensor:
        wave = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).to(self.device)
        return self.cut(self.logmel(wave))
