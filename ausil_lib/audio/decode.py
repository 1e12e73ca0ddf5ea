"""Decode the audio track of any video or audio file through an ffmpeg binary.

The reference implementation decodes with ffmpeg to mono 44.1 kHz 16-bit PCM, converts to
float, removes the mean and divides by the peak.  Decoding through a pipe keeps torchaudio's
codec back end (torchcodec) out of the picture and works the same for every container.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

import numpy as np

from ..core.formats import atomic_path


class AudioError(RuntimeError):
    """A file whose audio cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type[AudioError], tuple[str, str]]:
        """Rebuilt from path and reason, so the error crosses from a worker process intact."""
        return (AudioError, (self.path, self.reason))


@cache
def find_ffmpeg(explicit: str | None = None) -> str:
    """Path of the ffmpeg binary: the configured one, else the pinned imageio-ffmpeg wheel's, else PATH's.

    The wheel's binary comes before PATH's so that a machine with a system ffmpeg decodes and encodes
    with the same pinned build as every other machine: another build gives other bytes.
    """
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise FileNotFoundError(
                f"ffmpeg binary {explicit!r} (audio.ffmpeg in params.yaml) is not an executable file"
            )
        return explicit
    try:
        import imageio_ffmpeg
    except ImportError:  # pragma: no cover - the wheel is a pinned requirement
        on_path = shutil.which("ffmpeg")
        if on_path:
            return on_path
        raise FileNotFoundError("the imageio-ffmpeg wheel is not installed and there is no ffmpeg on PATH") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


@cache
def ffmpeg_build(ffmpeg: str | None = None) -> str:
    """The first line of `ffmpeg -version`: which build made a file's bytes (recorded beside them)."""
    exe = find_ffmpeg(ffmpeg)
    proc = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True, text=True, check=False, timeout=60)
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 or not lines:
        raise FileNotFoundError(f"{exe}: `ffmpeg -version` failed (exit {proc.returncode}): not a usable ffmpeg")
    return lines[0].strip()


# ffmpeg's stderr phrases, in the order they are checked, mapped to the reason users see.
_FFMPEG_REASONS: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("matches no streams", "does not contain any stream", "Output file does not contain any stream"),
        "no audio stream",
    ),
    (("Permission denied",), "unreadable path (permission denied)"),
    (("No such file or directory",), "missing file"),
    (
        (
            "Invalid data found when processing input",
            "moov atom not found",
            "EBML header parsing failed",
            "Invalid argument",
            "could not find codec parameters",
            "Failed to find two consecutive MPEG audio frames",
            "End of file",
        ),
        "corrupt or unsupported container",
    ),
)


def _reason_from_stderr(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    for phrases, reason in _FFMPEG_REASONS:
        for line in lines:
            if any(p in line for p in phrases):
                return f"{reason} (ffmpeg: {line.strip()})"
    tail = " | ".join(lines[-2:])
    return f"ffmpeg could not decode the audio ({tail or 'no message'})"


def decode_pcm16(
    path: str | os.PathLike[str], sample_rate: int = 44100, ffmpeg: str | None = None, timeout_s: float = 600.0
) -> np.ndarray:
    """Decode the first audio stream to mono int16 samples at `sample_rate`.

    Raises AudioError for a missing or unreadable path, a file without an audio stream and a
    corrupt container, so callers over thousands of videos can record the failure and go on.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "missing file")
    if path.is_dir():
        raise AudioError(path, "is a directory, not a media file")
    if not os.access(path, os.R_OK):
        raise AudioError(path, "unreadable path (permission denied)")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    cmd = [
        find_ffmpeg(ffmpeg),
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        str(path),
        "-vn",
        "-sn",
        "-dn",
        "-map",
        "0:a:0",
        "-ac",
        "1",
        "-ar",
        str(sample_rate),
        "-f",
        "s16le",
        "-acodec",
        "pcm_s16le",
        "pipe:1",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise AudioError(path, f"decoding took longer than {timeout_s:g} s") from None
    stderr = proc.stderr.decode("utf-8", errors="replace")
    if proc.returncode != 0:
        raise AudioError(path, _reason_from_stderr(stderr))
    if len(proc.stdout) % 2:
        raise AudioError(path, "unreadable data (odd number of PCM bytes)")
    return np.frombuffer(proc.stdout, dtype="<i2").copy()


def normalise(samples: np.ndarray) -> np.ndarray:
    """Float32 in [-1, 1]: remove the mean, divide by the peak; silence stays zeros (no NaN)."""
    audio = samples.astype(np.float32)
    if audio.size == 0:
        return audio
    audio -= audio.mean(dtype=np.float64).astype(np.float32)
    peak = float(np.abs(audio).max())
    if peak > 0:
        audio /= peak
    else:
        audio[:] = 0.0
    return audio


def load_audio(
    path: str | os.PathLike[str],
    sample_rate: int = 44100,
    ffmpeg: str | None = None,
    min_duration_s: float = 0.0,
    timeout_s: float = 600.0,
) -> np.ndarray:
    """Mono float32 audio of a media file, normalised as the AuSiL reference does."""
    pcm = decode_pcm16(path, sample_rate=sample_rate, ffmpeg=ffmpeg, timeout_s=timeout_s)
    duration = pcm.size / sample_rate
    if pcm.size == 0:
        raise AudioError(path, "no audio samples decoded (empty audio stream)")
    if duration < min_duration_s:
        raise AudioError(path, f"too short: {duration:.3f} s of audio, at least {min_duration_s:g} s needed")
    return normalise(pcm)


def encode(
    path: str | os.PathLike[str],
    audio: np.ndarray,
    sample_rate: int,
    codec_args: list[str] | None = None,
    ffmpeg: str | None = None,
    still_image: bool = False,
) -> None:
    """Write float audio in [-1, 1] to a media file through ffmpeg (format from the extension).

    With `still_image` a 16x16 black frame is added as a video stream, so the file is a real
    video (used to build test files and the embedded corpus).  Written atomically.
    """
    path = Path(path)
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()
    cmd = [find_ffmpeg(ffmpeg), "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    if still_image:
        # an explicit duration: with -shortest the frame count would depend on pipe timing
        cmd += ["-f", "lavfi", "-i", f"color=c=black:s=16x16:r=1:d={max(audio.size / sample_rate, 1e-3):.6f}"]
    cmd += ["-f", "s16le", "-ar", str(sample_rate), "-ac", "1", "-i", "pipe:0"]
    if still_image:
        cmd += ["-map", "0:v:0", "-map", "1:a:0"]
    # strict interleaving: otherwise packet order depends on how fast the pipe delivers the audio
    cmd += ["-fflags", "+bitexact", "-flags", "+bitexact", "-map_metadata", "-1", "-max_interleave_delta", "0"]
    with atomic_path(path, keep_suffix=True) as tmp:  # ffmpeg picks the container by the extension
        proc = subprocess.run([*cmd, *(codec_args or []), str(tmp)], input=pcm, capture_output=True, check=False)
        if proc.returncode != 0:
            reason = proc.stderr.decode("utf-8", "replace").strip()[-300:]
            raise AudioError(path, "ffmpeg could not encode: " + reason)
