"""Real source recordings for the embedded corpus: music from Debian's archive, espeak-ng speech.

`fetch_sources` materialises `data/sources/` from pinned package versions (no root needed:
`apt-get download` + `dpkg-deb -x`), renders speech with espeak-ng, and writes
`data/sources/manifest.json`: every recording with its package, version, SHA-256, duration,
licence, album and variant group. `data.dvc` pins the resulting directory, so DVC can verify that
a rebuild used exactly the same recordings. A folder of the user's own audio can replace the
Debian music (`sources.music_dir`).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...audio.decode import AudioError, encode, load_audio
from ...core.config import DebianPackage, Params, SpeechConfig
from ...core.download import sha256_file
from ...core.formats import atomic_write_json, atomic_write_text

AUDIO_EXTENSIONS = {".ogg", ".oga", ".opus", ".mp3", ".flac", ".wav", ".m4a", ".aac", ".mp4", ".mkv", ".webm"}


class SourceError(RuntimeError):
    """A source that cannot be obtained; the message says what to install or configure."""


@dataclass(frozen=True)
class Recording:
    rec_id: str  # "<album>/<stem>", unique
    path: str  # relative to the sources directory
    kind: str  # music | speech
    album: str  # package or folder: recordings of one album are hard negatives for each other
    group: str  # variant group: recordings that share material never cross a split
    duration_s: float
    sha256: str
    licence: str
    origin: str  # package=version, espeak-ng voice, or user folder

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _run(cmd: Sequence[str], cwd: Path | None = None) -> None:
    try:
        proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, check=False)
    except FileNotFoundError as exc:
        raise SourceError(f"{cmd[0]} not found: {exc}") from exc
    if proc.returncode != 0:
        raise SourceError(f"{' '.join(cmd)} failed: {proc.stderr.decode('utf-8', 'replace').strip()[-400:]}")


def variant_group(stem: str, groups: Sequence[Sequence[str]]) -> str:
    """The group a track belongs to: the first listed member of its variant group, else itself."""
    for members in groups:
        if stem in members:
            return members[0]
    return stem


def fetch_debian_music(pkg: DebianPackage, dest: Path, work: Path) -> list[tuple[Path, str]]:
    """Download one pinned package, check its SHA-256, extract the matching audio files into dest."""
    name, version = pkg.name, pkg.version
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise SourceError(
            "apt-get and dpkg-deb are needed to fetch the default music (Debian/Ubuntu); "
            "or set sources.music_dir in params.yaml to a folder of your own audio files"
        )
    _run(["apt-get", "download", f"{name}={version}"], cwd=work)
    debs = sorted(work.glob(f"{name}_*.deb"))
    if not debs:
        raise SourceError(
            f"apt-get download {name}={version} produced no .deb (is the package in your apt sources? "
            "run `apt-get update` as root)"
        )
    deb = debs[0]
    digest = sha256_file(deb)
    if pkg.sha256 and digest != pkg.sha256:
        raise SourceError(f"{deb.name}: SHA-256 {digest} does not match params.yaml ({pkg.sha256})")
    root = work / f"{name}.x"
    _run(["dpkg-deb", "-x", str(deb), str(root)])
    found = sorted(p for p in root.rglob("*") if p.is_file() and fnmatch.fnmatch(str(p.relative_to(root)), pkg.glob))
    if not found:
        raise SourceError(f"{deb.name}: no file matches {pkg.glob!r}")
    out_dir = dest / pkg.album
    out_dir.mkdir(parents=True, exist_ok=True)
    copyright_files = sorted(root.glob("usr/share/doc/*/copyright"))
    if copyright_files:
        (dest.parent / "licences").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(copyright_files[0], dest.parent / "licences" / f"{name}.copyright")
    files = []
    for src in found:
        target = out_dir / src.name
        shutil.copyfile(src, target)
        files.append((target, f"{name}={version}"))
    return files


def render_speech(cfg: SpeechConfig, dest: Path, sample_rate: int) -> list[Path]:
    """Sentences spoken by espeak-ng in several voices: the speech mixed into transformed copies."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SourceError(
            "espeak-ng is not installed: `apt-get install espeak-ng` (done by scripts/setup.sh as root), "
            "or set sources.speech.enabled: false in params.yaml"
        )
    dest.mkdir(parents=True, exist_ok=True)
    sentences = list(cfg.sentences)
    out = []
    for v, voice in enumerate(cfg.voices):
        for k in range(cfg.clips_per_voice):
            # each clip strings several sentences together, rotated per voice, so clips differ
            text = " ".join(sentences[(v + k * 3 + j) % len(sentences)] for j in range(cfg.sentences_per_clip))
            with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
                _run([exe, "-v", voice, "-s", str(cfg.words_per_minute), "-w", tmp.name, text])
                audio = load_audio(tmp.name, sample_rate=sample_rate)
            target = dest / f"{voice}_{k}.flac"
            encode(target, audio * 0.9, sample_rate, ["-c:a", "flac"])
            out.append(target)
    return out


def fetch_sources(params: Params, sources_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Materialise every source recording and write the manifest; returns the manifest."""
    cfg = params.sources
    sr = params.audio.sample_rate
    sources_dir = Path(sources_dir)
    music_dir = sources_dir / "music"
    if music_dir.exists():
        shutil.rmtree(music_dir)
    music_dir.mkdir(parents=True)
    files: list[tuple[Path, str, str, str]] = []  # path, origin, licence, album
    if cfg.music_dir:
        user = Path(cfg.music_dir)
        if not user.is_dir():
            raise SourceError(f"sources.music_dir {user} is not a folder")
        for src in sorted(p for p in user.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS):
            album = src.parent.name or "user"
            target = music_dir / album / src.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
            files.append((target, f"user folder {user}", cfg.music_licence or "as provided by the user", album))
        if not files:
            raise SourceError(f"sources.music_dir {user} holds no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})")
    else:
        with tempfile.TemporaryDirectory() as work:
            for pkg in cfg.debian_packages:
                for path, origin in fetch_debian_music(pkg, music_dir, Path(work)):
                    files.append((path, origin, pkg.licence, pkg.album))
    excluded = set(cfg.exclude)
    recordings: list[Recording] = []
    skipped: dict[str, str] = {}
    for path, origin, licence, album in files:
        rec_id = f"{album}/{path.stem}"
        reason, duration = _inspect(path, rec_id, excluded, float(cfg.min_recording_s), sr)
        if reason:
            skipped[rec_id] = reason
            path.unlink()
            continue
        recordings.append(
            Recording(
                rec_id,
                str(path.relative_to(sources_dir)),
                "music",
                album,
                f"{album}/{variant_group(path.stem, cfg.variant_groups)}",
                duration,
                sha256_file(path),
                licence,
                origin,
            )
        )
    speech_dir = sources_dir / "speech"
    if speech_dir.exists():
        shutil.rmtree(speech_dir)
    if cfg.speech.enabled:
        for path in render_speech(cfg.speech, speech_dir, sr):
            recordings.append(
                Recording(
                    f"speech/{path.stem}",
                    str(path.relative_to(sources_dir)),
                    "speech",
                    "speech",
                    f"speech/{path.stem}",
                    _duration(path, sr),
                    sha256_file(path),
                    "generated by espeak-ng (GPL-3+ program; output unrestricted)",
                    f"espeak-ng voice {path.stem.rsplit('_', 1)[0]}",
                )
            )
    if not any(r.kind == "music" for r in recordings):
        raise SourceError("no usable music recordings: check sources in params.yaml")
    manifest = {
        "recordings": [r.to_dict() for r in sorted(recordings, key=lambda r: r.rec_id)],
        "skipped": dict(sorted(skipped.items())),
        "packages": [
            {k: getattr(p, k) for k in ("name", "version", "sha256", "licence", "album")} for p in cfg.debian_packages
        ]
        if not cfg.music_dir
        else [],
        "espeak_ng": _espeak_version() if cfg.speech.enabled else None,
    }
    atomic_write_json(sources_dir / "manifest.json", manifest)
    return manifest


def _inspect(path: Path, rec_id: str, excluded: set[str], min_s: float, sr: int) -> tuple[str | None, float]:
    """(reason the recording cannot be used or None, its duration in seconds)."""
    if rec_id in excluded:
        return "excluded in params.yaml (sources.exclude)", 0.0
    try:
        audio = load_audio(path, sample_rate=sr)
    except AudioError as exc:
        return exc.reason, 0.0
    duration = round(audio.size / sr, 3)
    if duration < min_s:
        return f"shorter than sources.min_recording_s ({duration:.1f} s < {min_s:g} s)", duration
    if not np.any(audio):
        return "silent", duration
    return None, duration


def _duration(path: Path, sr: int) -> float:
    return round(load_audio(path, sample_rate=sr).size / sr, 3)


def _espeak_version() -> str | None:
    exe = shutil.which("espeak-ng")
    if not exe:
        return None
    out = subprocess.run([exe, "--version"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False)
    # "eSpeak NG text-to-speech: 1.51  Data at: /usr/lib/...": keep the version, not the machine's path
    return out.stdout.decode("utf-8", "replace").split("Data at")[0].strip()


def load_manifest(sources_dir: str | os.PathLike[str]) -> list[Recording]:
    path = Path(sources_dir) / "manifest.json"
    if not path.is_file():
        raise SourceError(f"{path} not found: run `ausil fetch-sources` first (part of `make repro`)")
    data = json.loads(path.read_text(encoding="utf-8"))
    return [Recording(**r) for r in data["recordings"]]


def verify_against_dvc(dvc_file: str | os.PathLike[str], strict: bool = True) -> None:
    """Check that the materialised sources hash to the pins DVC holds in `dvc_file`.

    The workspace is hashed by committing it to the local DVC cache (a fresh clone has no cache,
    so DVC would only report "not in cache"); if that moved the pin, the pin is put back and the
    sources are refused (strict), or the new pin is kept on purpose (strict=False, a user's own
    music). `dvc repro` alone would silently re-pin changed sources.
    """
    from dvc.repo import Repo

    target = Path(dvc_file)
    pinned = target.read_text(encoding="utf-8")
    with Repo(".") as repo:
        if not repo.status(targets=[str(target)]):
            return
        repo.commit(str(target), force=True)
    if _pins(target.read_text(encoding="utf-8")) == _pins(pinned) or not strict:
        return
    atomic_write_text(target, pinned)
    raise SourceError(
        f"the fetched sources differ from the pins in {target}: a different package version or "
        "espeak-ng build produced other bytes. Re-run with --accept to pin these sources on purpose."
    )


def _pins(dvc_text: str) -> list[tuple[str, str]]:
    """(path, hash) of every output a .dvc file pins."""
    import yaml

    return [(o["path"], o["md5"]) for o in (yaml.safe_load(dvc_text) or {}).get("outs", [])]
