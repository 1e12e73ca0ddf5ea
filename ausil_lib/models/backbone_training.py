"""A backbone for when the AudioSet weights are absent: self-supervised, never on evaluation material.

The paper transfers an AudioSet-pretrained CNN. Where that file cannot be had, the pipeline trains
the same architecture with a contrastive objective (InfoNCE, as in SimCLR) on 2 s windows of the
train-split recordings (plus, with `extra_sources`, the unlabelled `backbone_sources` recordings that
no corpus uses) and transformed copies of the same windows (codec, filters, noise, mixing, EQ and
speed changes, drawn from params). The loss acts directly on the 2528-d MAC descriptor, the vector
retrieval uses. Every report names the backbone that produced it.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..audio.decode import load_audio
from ..audio.transforms import apply_chain
from ..core.config import BackboneTrainingConfig, Params, plain, resolve_device
from ..core.formats import atomic_path, atomic_write_json
from ..core.numerics import apply_torch_settings, numerics_settings
from ..datasets.embedded.sources import Recording, load_manifest
from ..features.logmel import FeatureConfig, LogMel
from .backbone import KumarCNN, save_state
from .optimizer import KIND as OPTIMIZER_KIND
from .optimizer import adam

apply_torch_settings()  # torch's threads and cuDNN settings, before any tensor work (core/numerics.py)


def train_recordings(sources_dir: Path, corpus_log: Path) -> list[Recording]:
    """Recordings the corpus assigned to the train split (music and speech)."""
    split = {rid: r["split"] for rid, r in json.loads(corpus_log.read_text(encoding="utf-8"))["recordings"].items()}
    return [r for r in load_manifest(sources_dir) if split.get(r.rec_id) == "train"]


def extra_recordings(extra_dir: Path, sources_dir: Path) -> list[Recording]:
    """Every recording of `backbone_sources`, refused by name if its bytes are one of the corpus's sources:
    params.yaml keeps the packages apart, this keeps a file shipped by two packages out of training."""
    corpus = {r.sha256: r.rec_id for r in load_manifest(sources_dir)}
    extra = load_manifest(extra_dir)
    shared = [f"{r.rec_id} = {corpus[r.sha256]}" for r in extra if r.sha256 in corpus]
    if shared:
        raise ValueError(f"{extra_dir}: recordings identical to corpus sources: {', '.join(shared[:5])}")
    return extra


class PairSampler:
    """Endless batches of (clean window, transformed copy) log-mel pairs, seeded."""

    def __init__(self, audio: list[np.ndarray], cfg: BackboneTrainingConfig, feat: FeatureConfig, seed: int) -> None:
        self.audio = [a for a in audio if a.size > feat.sample_rate * 3]
        self.cfg, self.feat = cfg, feat
        self.logmel = LogMel(feat)
        self.rng = np.random.default_rng(seed)
        self.presets = cfg.augment_presets
        self.window = int(feat.window_s * feat.sample_rate)

    def frames(self, x: np.ndarray) -> torch.Tensor:
        """Log-mel of one window cut or zero-padded to the backbone's segment length."""
        with torch.no_grad():
            mel = self.logmel(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        n = self.feat.window_frames
        return F.pad(mel[:n], (0, 0, 0, max(0, n - mel.shape[0])))

    def pair(self, step_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.audio[int(self.rng.integers(len(self.audio)))]
        start = int(self.rng.integers(0, x.size - self.window))
        clean = x[start : start + self.window]
        chain = [dict(s) for s in self.presets[int(self.rng.integers(len(self.presets)))]]
        backgrounds = {}
        for step in chain:
            if step["name"] == "mix":  # another training window as interference
                other = self.audio[int(self.rng.integers(len(self.audio)))]
                o = int(self.rng.integers(0, other.size - self.window))
                backgrounds[step["source"]] = other[o : o + self.window]
        if self.rng.random() < float(self.cfg.speed_probability):
            chain.append({"name": "speed", "factor": float(self.rng.choice(self.cfg.speed_factors))})
        copy = (
            apply_chain(clean, self.feat.sample_rate, chain, seed=step_seed, backgrounds=backgrounds)
            if chain
            else clean
        )
        return self.frames(clean), self.frames(copy)

    def batches(self, batch_pairs: int) -> Iterator[torch.Tensor]:
        """(2 * batch, 1, frames, mels): the clean windows first, then their copies in the same order."""
        k = 0
        while True:
            pairs = [self.pair(k * batch_pairs + i) for i in range(batch_pairs)]
            k += 1
            yield torch.stack([p[0] for p in pairs] + [p[1] for p in pairs]).unsqueeze(1)


def info_nce(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent: each window must pick out its copy among the other 2B - 1 windows."""
    z = F.normalize(z, dim=1)
    n = z.shape[0] // 2
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, target)


def _prefetch(it: Iterator[torch.Tensor], depth: int = 2) -> Iterator[torch.Tensor]:
    """Prepare batches in a thread so augmentation overlaps the training step."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        for item in it:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.5)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return

    threading.Thread(target=work, daemon=True).start()
    try:
        while True:
            yield q.get()
    finally:
        stop.set()


def train_backbone(
    params: Params,
    sources_dir: str | os.PathLike[str],
    corpus_dir: str | os.PathLike[str],
    output: str | os.PathLike[str],
    curve_path: str | os.PathLike[str],
    extra_sources_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    on_checkpoint: Callable[[int, torch.nn.Module], None] | None = None,
) -> dict[str, Any]:
    """Train for `max_steps` steps (the reproducible budget); `budget_s` is only a safety cap.

    A run stopped by the cap is marked in the metadata: its step count depends on the machine.
    Checkpoints let a killed run resume; `on_checkpoint(step, model)` sees the model at each one
    (learning curves of the descriptor, scripts/backbone_probe.py).
    """
    cfg = params.backbone_training
    seed = cfg.seed
    torch.manual_seed(seed)
    device = resolve_device(params.device)
    feat = FeatureConfig.from_params(params)
    recs = train_recordings(Path(sources_dir), Path(corpus_dir) / "construction_log.json")
    paths = [Path(sources_dir) / r.path for r in recs]
    extra: list[Recording] = []
    if cfg.extra_sources:
        if extra_sources_dir is None:
            raise ValueError(
                "backbone_training.extra_sources is true: name the backbone_sources folder (--extra-sources)"
            )
        extra = extra_recordings(Path(extra_sources_dir), Path(sources_dir))
        paths += [Path(extra_sources_dir) / r.path for r in extra]
    audio = [
        load_audio(p, sample_rate=feat.sample_rate)
        for p in tqdm(paths, desc="decode", unit="file", disable=not progress, leave=False)
    ]
    model = KumarCNN().to(device, memory_format=torch.channels_last)
    opt = adam(model.parameters(), float(cfg.learning_rate))
    output, curve_path = Path(output), Path(curve_path)
    ckpt = output.with_name(output.stem + ".ckpt")
    step, elapsed, curve = 0, 0.0, []
    if ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if state["config"] == plain(cfg) and state.get("optimizer_kind") == OPTIMIZER_KIND:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            step, elapsed, curve = state["step"], state["elapsed"], state["curve"]
    sampler = PairSampler(audio, cfg, feat, seed + step)  # resumed runs continue with fresh pairs
    budget, max_steps = float(cfg.budget_s), cfg.max_steps
    model.train()
    bar = tqdm(total=max_steps, initial=step, desc="backbone", unit="step", disable=not progress)
    start = time.perf_counter() - elapsed
    for batch in _prefetch(sampler.batches(cfg.batch_pairs)):
        if step >= max_steps or time.perf_counter() - start >= budget:
            break
        x = batch.to(device).contiguous(memory_format=torch.channels_last)
        loss = info_nce(model.mac(x), float(cfg.temperature))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        value = loss.item()
        curve.append({"step": step, "loss": round(value, 5), "seconds": round(time.perf_counter() - start, 1)})
        bar.update(1)
        bar.set_postfix(loss=f"{value:.3f}")
        if step % cfg.checkpoint_every == 0:
            _checkpoint(ckpt, model, opt, step, time.perf_counter() - start, curve, cfg)
            if on_checkpoint is not None:
                on_checkpoint(step, model)
                model.train()
    bar.close()
    model.eval()
    seconds = round(time.perf_counter() - start, 1)
    meta = {
        "objective": "InfoNCE on MAC descriptors of clean vs transformed 2 s windows (train split"
        + (" and backbone_sources)" if extra else " only)"),
        "steps": step,
        "stopped_by": "max_steps" if step >= max_steps else "time cap (not reproducible)",
        "recordings": [r.rec_id for r in recs],
        "extra_recordings": [r.rec_id for r in extra],
        "final_loss": curve[-1]["loss"] if curve else None,
        "config": plain(cfg),
        "numerics": numerics_settings(),
    }
    # no wall time in the file (the curve has it): the same training writes the same bytes, so DVC
    # re-runs nothing downstream of a retraining that changed no weight
    save_state(output, model.cpu(), meta)
    atomic_write_json(curve_path, curve)
    ckpt.unlink(missing_ok=True)
    return {**meta, "seconds": seconds}


def _checkpoint(
    path: Path,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    step: int,
    elapsed: float,
    curve: list[dict[str, Any]],
    cfg: BackboneTrainingConfig,
) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "step": step,
        "elapsed": elapsed,
        "curve": curve,
        "config": plain(cfg),
        "optimizer_kind": OPTIMIZER_KIND,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
