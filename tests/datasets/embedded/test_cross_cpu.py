"""The corpus's bytes do not depend on the CPU: every encoder and every transform, native against emulated.

qemu-user runs the same binaries on an emulated processor of another maker and SIMD level (TCG has no
AVX-512), so a code path that gives other bytes on other CPUs shows up here on one machine. libopus did:
its bytes on an Intel Xeon differed from those on every emulated CPU, so the corpus no longer uses it
(docs/reproducibility.md). scripts/setup.sh installs qemu-user where it runs as root.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ausil_lib.audio.decode import encode, find_ffmpeg
from ausil_lib.datasets.embedded.corpus import CODECS

from ...helpers import SR, chords

QEMU = shutil.which("qemu-x86_64")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        platform.machine().lower() not in {"x86_64", "amd64"} or QEMU is None,
        reason="needs qemu-x86_64 on an x86-64 machine (scripts/setup.sh installs qemu-user as root)",
    ),
]
ROOT = Path(__file__).resolve().parents[3]
#: an AMD model with AVX2 and FMA, and an Intel one with SSE4.2 only: other makers and SIMD levels than most hosts
ENCODER_CPUS = ("EPYC-Rome", "Nehalem")


def _emulated_ffmpeg(directory: Path, cpu: str) -> str:
    """An executable that runs the pinned ffmpeg on the emulated `cpu`."""
    wrapper = directory / f"ffmpeg-{cpu}"
    wrapper.write_text(f'#!/bin/sh\nexec "{QEMU}" -cpu {cpu} "{find_ffmpeg()}" "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.mark.parametrize("cpu", ENCODER_CPUS)
@pytest.mark.parametrize("fmt", sorted(CODECS))
def test_each_corpus_encoder_writes_the_same_bytes_on_an_emulated_cpu(fmt: str, cpu: str, tmp_path: Path) -> None:
    codec, video = CODECS[fmt]
    audio = chords(2.0, seed=7)
    native, emulated = tmp_path / f"native.{fmt}", tmp_path / f"emulated.{fmt}"
    encode(native, audio, SR, codec, still_image=video)
    encode(emulated, audio, SR, codec, still_image=video, ffmpeg=_emulated_ffmpeg(tmp_path, cpu))
    assert native.stat().st_size > 1000
    assert native.read_bytes() == emulated.read_bytes(), f"{fmt} ({' '.join(codec)}) differs on emulated {cpu}"


# every transform of the corpus, run in a fresh interpreter so that numerics are pinned as in a stage
_TRANSFORMS = """
import hashlib, json
import ausil_lib
from ausil_lib.audio.transforms import apply_chain
from tests.audio.test_transforms import BACKGROUNDS, ONE_STEP, _tones
import numpy as np
x = (_tones((300.0, 1500.0, 6000.0)) + 0.002 * np.random.default_rng(0).standard_normal(3 * 44100)).astype(np.float32)
out = {n: hashlib.sha256(apply_chain(x, 44100, [s], seed=5, backgrounds=BACKGROUNDS).tobytes()).hexdigest()
       for n, s in ONE_STEP.items()}
print(json.dumps(out))
"""


def _transform_digests(prefix: list[str]) -> dict[str, str]:
    proc = subprocess.run(
        [*prefix, sys.executable, "-c", _TRANSFORMS], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_transform_gives_the_same_samples_on_an_emulated_cpu() -> None:
    # an AMD model: with AVX2, so numpy's OpenBLAS runs the same pinned Haswell kernels as on the host
    native = _transform_digests([])
    emulated = _transform_digests([QEMU, "-cpu", "EPYC-Rome"])
    assert len(native) >= 10
    assert {n for n in native if native[n] != emulated[n]} == set()
