"""The corpus's bytes do not depend on the CPU: every encoder and every transform, native against emulated.

qemu-user runs the same binaries on an emulated processor of another maker and SIMD level (TCG has no
AVX-512), so a code path that gives other bytes on other CPUs shows up here on one machine. libopus did:
its bytes on an Intel Xeon differed from those on every emulated CPU, so the corpus no longer uses it
(docs/reproducibility.md). scripts/setup.sh installs qemu-user where it runs as root.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ausil_lib.audio.decode import encode, find_ffmpeg
from ausil_lib.datasets.embedded.corpus import CODECS

from ...helpers import CROSS_CPU_MARKS, QEMU, SR, chords, script_digests

pytestmark = CROSS_CPU_MARKS
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


def test_every_transform_gives_the_same_samples_on_an_emulated_cpu() -> None:
    # an AMD model: with AVX2, so numpy's OpenBLAS runs the same pinned Haswell kernels as on the host
    native = script_digests(_TRANSFORMS, [])
    emulated = script_digests(_TRANSFORMS, [QEMU, "-cpu", "EPYC-Rome"])
    assert len(native) >= 10
    assert {n for n in native if native[n] != emulated[n]} == set()
