"""params.yaml access and device choice: the one place configuration is read.

Every params.yaml section is a frozen dataclass here, read once at the boundary (`load_params`) into
`Params`. The dataclass defaults are the settings' only defaults, and they equal the shipped
params.yaml (tests/core/test_config.py compares the two). A key a section does not know, at any level that
has a schema, stops the run with the dotted key and the valid keys; a value of the wrong type stops it
with the key. Lists become tuples and mappings `FrozenMap`s, so a loaded config cannot be changed.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints

import numpy as np
import torch
import yaml

from .numerics import apply_torch_settings

apply_torch_settings()  # torch's threads and cuDNN settings, before any tensor work (core/numerics.py)

DEFAULT_PARAMS = Path("params.yaml")


class FrozenMap(Mapping[str, Any]):
    """A read-only mapping, for settings whose keys are data (preset, size and dataset names)."""

    def __init__(self, items: Mapping[str, Any] | None = None) -> None:
        self._items = dict(items or {})

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"FrozenMap({self._items!r})"


def _freeze(value: Any) -> Any:
    """Free-form settings (transform steps) made immutable: lists to tuples, mappings to FrozenMaps."""
    if isinstance(value, Mapping):
        return FrozenMap({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def plain(value: Any) -> Any:
    """A config as the YAML it came from (dicts and lists): for JSON, metadata and comparison with those."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


# ------------------------------------------------------------------ reading a section by its schema

_SCALARS: dict[type, str] = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _key(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in get_args(tp))
    if origin is tuple:
        return "a list"
    if is_dataclass(tp) or origin is Mapping:
        return "a mapping"
    return _SCALARS.get(tp, "anything")


def _shape(tp: Any) -> str:
    origin = get_origin(tp)
    if is_dataclass(tp) or origin is Mapping:
        return "mapping"
    return "list" if origin is tuple else "scalar"


def _value_shape(value: Any) -> str:
    if isinstance(value, Mapping):
        return "mapping"
    return "list" if isinstance(value, (list, tuple)) else "scalar"


def _parse(tp: Any, value: Any, key: str) -> Any:
    """`value` (parsed YAML) checked against type `tp` and frozen; ValueError naming `key` otherwise."""
    if tp is Any:
        return _freeze(value)
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None) and _shape(a) == _value_shape(value)):
            try:
                return _parse(option, value, key)
            except ValueError as exc:
                errors.append(exc)
        if errors and _value_shape(value) != "scalar":
            raise errors[-1]  # a mapping or list of the right shape: its own error names the inner key
        raise ValueError(f"{key} must be {_describe(tp)}, got {value!r}")
    if is_dataclass(tp):
        return from_section(tp, value, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ValueError(f"{key} must be a list of {len(args)} values, got {value!r}")
        return tuple(_parse(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is Mapping:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise ValueError(f"{key} must be a mapping with string keys, got {value!r}")
        return FrozenMap({k: _parse(args[1], v, _key(key, k)) for k, v in value.items()})
    if tp not in _SCALARS:
        raise TypeError(f"{key}: no reader for type {tp!r}")
    ok = isinstance(value, (int, float)) if tp is float else isinstance(value, tp)
    if not ok or (tp is not bool and isinstance(value, bool)):
        raise ValueError(f"{key} must be {_SCALARS[tp]}, got {value!r}")
    return value


def from_section(cls: type, section: Any, name: str) -> Any:
    """A config dataclass from a params.yaml section (`name`: its dotted key; '' for the whole file).

    A misspelt or unknown key is an error naming it and the valid keys, never silently ignored;
    missing keys take the dataclass defaults. A class with `EXTRA_KEYS = (field, what)` collects the
    keys that are not its fields and hold mappings into that field (replacing its default entries):
    the named datasets of `datasets`."""
    if isinstance(section, cls):
        return section
    where = name or "params.yaml"
    if not isinstance(section, Mapping):
        raise ValueError(f"{where} must be a mapping of settings, got {section!r}")
    hints = get_type_hints(cls)
    extra_field, extra_what = getattr(cls, "EXTRA_KEYS", (None, None))
    known = [f.name for f in fields(cls) if f.name != extra_field]
    unknown = [k for k in section if k not in known and not (extra_field and isinstance(section[k], Mapping))]
    if unknown:
        label = f"{'setting' if name else 'section'} {_key(name, str(unknown[0]))!r}"
        named = f"; any other key names {extra_what} and holds a mapping" if extra_field else ""
        raise ValueError(f"unknown {label}; valid keys of {where}: {', '.join(known)}{named}")
    values = {f: _parse(hints[f], section[f], _key(name, f)) for f in known if f in section}
    if extra_field:
        item = get_args(hints[extra_field])[1]
        values[extra_field] = FrozenMap(
            {k: _parse(item, v, _key(name, k)) for k, v in section.items() if k not in known}
        )
    for f in fields(cls):
        if f.name not in values and f.default is MISSING and f.default_factory is MISSING:
            raise ValueError(f"{_key(name, f.name)} is required but not set")
    try:
        return cls(**values)
    except ValueError as exc:
        message = str(exc)
        raise ValueError(message if message.startswith(where) else f"{where}: {message}") from None


# ------------------------------------------------------------------ the sections of params.yaml

Chain = tuple[Mapping[str, Any], ...]  # transform steps, checked by audio/transforms.py validate_chain


@dataclass(frozen=True)
class AudioConfig:
    """params.yaml `audio`: decoding."""

    sample_rate: int = 44100
    ffmpeg: str | None = None  # None: PATH, then the imageio-ffmpeg wheel's binary
    min_duration_s: float = 0.1
    decode_timeout_s: float = 600


@dataclass(frozen=True)
class FeaturesConfig:
    """params.yaml `features`: the log-mel front end (features/logmel.py FeatureConfig adds the sample rate)."""

    n_mels: int = 128
    n_fft: int = 1024
    hop_length: int = 512
    # STFT edge padding: reflect, the default of the librosa (2019) the released extractor ran with
    # (librosa >= 0.10 pads with zeros, `constant`); only a video's first and last frame differ
    pad_mode: str = "reflect"
    top_db: float | None = 80.0
    window_s: float = 2.0
    time_step_ms: int = 1000
    segment_padding: str = "released"  # released | minimal (see features.padded_length)


MUSICNN_MODELS = ("MSD_vgg", "MTT_vgg")  # the musicnn wheel's VGG networks (models/musicnn.py)


@dataclass(frozen=True)
class BackboneConfig:
    """params.yaml `backbone`: which weights the extractor runs, and how."""

    source: str = "auto"  # auto | audioset | trained | random
    trained_weights: str = "models/backbone.pt"
    random_seed: int = 0
    fuse_bn: bool = True
    channels_last: bool = True
    partner: str = "none"  # none | MSD_vgg | MTT_vgg: musicnn's network beside the backbone (issue 13)
    partner_cache: str = "data/weights/musicnn"  # its pinned PyPI wheel and unpacked checkpoint

    def __post_init__(self) -> None:
        if self.partner not in ("none", *MUSICNN_MODELS):
            raise ValueError(f"backbone.partner must be none or one of {MUSICNN_MODELS}, got {self.partner!r}")


RELEASE_ROLES = ("backbone", "model_index", "model_data")
TF_DATA_SUFFIX = ".data-00000-of-00001"


@dataclass(frozen=True)
class ReleaseFile:
    """One released file: where it lives upstream, where it goes here, and its pinned digests."""

    path: str  # path inside the authors' repository
    dest: str  # path in this working tree
    git_blob: str  # git blob id at the pinned commit (always known: it is in the commit's tree)
    sha256: str | None = None  # pinned where this project has seen the bytes
    size: int | None = None  # bytes, where known


@dataclass(frozen=True)
class ReleaseConfig:
    """params.yaml `release`: the AuSiL authors' published files, pinned (models/weights.py fetches them)."""

    repository: str = "mever-team/ausil"
    commit: str = "51dc3b87bc412cd231aa7fc40703b8f4f582d2ec"
    url: str = "https://raw.githubusercontent.com/{repository}/{commit}/{path}"
    timeout_s: float = 60
    manifest: str = "data/weights/manifest.json"
    backbone: ReleaseFile = ReleaseFile(
        "feature_extraction/mx-h64-1024_0d3-1.17.pkl",
        "data/weights/mx-h64-1024_0d3-1.17.pkl",
        "18f7764281ba48a5f0d5eff8dfd3792f44911839",
    )
    model_index: ReleaseFile = ReleaseFile(
        "ckpt/model.index",
        "data/weights/ausil_released/model.index",
        "a42726a9cf5c2daa5fa9e2e4ce971ab1208ab355",
        sha256="e4ae1e08418c084ef081372abf7dce742dc8ca79427ad7e671b94abb5a359ba6",
        size=1317,
    )
    model_data: ReleaseFile = ReleaseFile(
        "ckpt/model.data-00000-of-00001",
        "data/weights/ausil_released/model.data-00000-of-00001",
        "d7abe97198b8bc17a5f821d63a268a27c6ee719a",
        size=26717212,
    )

    def __post_init__(self) -> None:
        if not self.model_index.dest.endswith(".index"):
            raise ValueError(f"release.model_index.dest must end in .index, got {self.model_index.dest!r}")
        if self.model_data.dest != self.model_prefix + TF_DATA_SUFFIX:
            raise ValueError(
                f"release.model_data.dest must be {self.model_prefix + TF_DATA_SUFFIX!r} (the data "
                f"shard beside {self.model_index.dest}), got {self.model_data.dest!r}"
            )

    @property
    def model_prefix(self) -> str:
        """The TensorFlow checkpoint prefix (what `--model` takes), e.g. data/weights/ausil_released/model."""
        return self.model_index.dest.removesuffix(".index")

    def files(self) -> dict[str, ReleaseFile]:
        return {role: getattr(self, role) for role in RELEASE_ROLES}

    def url_of(self, f: ReleaseFile) -> str:
        return self.url.format(repository=self.repository, commit=self.commit, path=f.path)


@dataclass(frozen=True)
class ExtractConfig:
    """params.yaml `extract`: `ausil extract` into per-video files."""

    batch_size: int = 128  # segments per backbone call
    decode_workers: int = 2


@dataclass(frozen=True)
class BenchmarkSpeedConfig:
    """params.yaml `benchmark_speed`."""

    audio_seconds: float = 100
    repeats: int = 3
    time_steps_ms: tuple[int, ...] = (1000, 125)


@dataclass(frozen=True)
class DebianPackage:
    """One pinned Debian package of music (sources.debian_packages)."""

    name: str
    version: str
    glob: str  # the audio files inside the package
    album: str
    licence: str
    sha256: str | None = None


@dataclass(frozen=True)
class SpeechConfig:
    """params.yaml `sources.speech`: espeak-ng clips mixed into transformed copies."""

    enabled: bool = True
    voices: tuple[str, ...] = ("en", "en-us", "de", "fr", "es", "it", "pt", "pl")
    clips_per_voice: int = 3
    sentences_per_clip: int = 4
    words_per_minute: int = 160
    sentences: tuple[str, ...] = (
        "The committee will publish its findings early next week.",
        "Heavy rain is expected along the coast during the night.",
        "Please keep your tickets ready for inspection at the gate.",
        "The museum reopened after two years of careful restoration.",
        "Several roads were closed because of the marathon this morning.",
        "Our correspondent spoke to residents who left their homes.",
        "The new bridge will connect both districts by next summer.",
        "Officials say the fire is now under control.",
        "Thousands gathered in the square to watch the parade.",
        "The team scored twice in the final minutes of the match.",
        "Scientists recorded the sound of the volcano for three days.",
        "Traffic is moving slowly on the northern ring road.",
    )


@dataclass(frozen=True)
class SourcesConfig:
    """params.yaml `sources`: the recordings the embedded corpus is built from."""

    music_dir: str | None = None  # a folder of the user's own audio instead of the Debian music
    music_licence: str | None = None
    debian_packages: tuple[DebianPackage, ...] = (
        DebianPackage(
            "extremetuxracer-data",
            "0.8.2-1",
            "usr/share/games/etr/music/*.ogg",
            "extremetuxracer",
            "GPL-2+ (Extreme Tux Racer data, Debian package extremetuxracer-data)",
            "8ce6c82e6fb89549d284f43f6c4b0a9d82e6c0e5da753bee0ef419276a21470c",
        ),
        DebianPackage(
            "wesnoth-1.16-music",
            "1:1.16.9-1",
            "usr/share/games/wesnoth/1.16/data/core/music/*.ogg",
            "wesnoth",
            "GPL-2 (Battle for Wesnoth music, Debian package wesnoth-1.16-music)",
            "f9bc3cde92b4ab30db5d7b85f89b4bcc3d788dd92602956d0347250850bf59bb",
        ),
    )
    exclude: tuple[str, ...] = ("wesnoth/silence",)
    min_recording_s: float = 20
    variant_groups: tuple[tuple[str, ...], ...] = (
        ("frantic", "frantic-old"),
        ("battle", "battle-epic"),
        ("elvish-theme", "elf-land"),
        ("victory", "victory2"),
        ("defeat", "defeat2"),
    )
    speech: SpeechConfig = field(default_factory=SpeechConfig)


SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class QueryLengths:
    """corpus.query_lengths_s: [low, high] seconds of SVD-like short and FIVR-like long queries."""

    short: tuple[float, float] = (8, 20)
    long: tuple[float, float] = (30, 60)


@dataclass(frozen=True)
class Positives:
    """corpus.positives: audio duplicates made for every query, per case (in this order)."""

    full: int = 1
    partial: int = 2
    embedded: int = 1
    transformed: int = 2


@dataclass(frozen=True)
class HardCase:
    """One of corpus.hard_cases: a short overlap, or the query segment through a transform chain."""

    overlap_s: float | None = None
    chain: Chain = ()


@dataclass(frozen=True)
class CorpusSize:
    """One of corpus.sizes."""

    queries_per_recording: int | Mapping[str, int]  # an int applies to every split
    distractors_per_recording: int
    speech_distractors: int
    hard_per_query: int = 0
    max_recordings_per_split: Mapping[str, int] | None = None


def _split_keys(key: str, value: Mapping[str, Any]) -> None:
    if set(value) != set(SPLITS):
        raise ValueError(f"{key} must give {', '.join(SPLITS)}, got {', '.join(value)}")


@dataclass(frozen=True)
class CorpusConfig:
    """params.yaml `corpus`: how the embedded benchmark is planned."""

    size: str = "default"  # a key of `sizes`
    seed: int = 0
    split_fractions: Mapping[str, float] = field(
        default_factory=lambda: FrozenMap({"train": 0.45, "val": 0.15, "test": 0.40})
    )
    min_shared_s: float = 0.5
    query_lengths_s: QueryLengths = field(default_factory=QueryLengths)
    long_query_share: float = 0.5
    video_share: float = 0.5
    video_formats: tuple[str, ...] = ("mp4", "webm")
    audio_formats: tuple[str, ...] = ("ogg", "mp3", "m4a", "flac")
    positives: Positives = field(default_factory=Positives)
    hard_cases: Mapping[str, HardCase] = field(
        default_factory=lambda: FrozenMap(
            {
                "short_overlap": HardCase(overlap_s=1.0),
                "loud_mix": HardCase(chain=_freeze([{"name": "mix", "snr_db": -5, "source": "music"}])),
                "heavy_distortion": HardCase(
                    chain=_freeze(
                        [
                            {"name": "mp3", "bitrate_kbps": 8},
                            {"name": "bandpass", "low_hz": 500, "high_hz": 2000},
                            {"name": "noise", "snr_db": 0},
                        ]
                    )
                ),
            }
        )
    )
    transform_presets: Mapping[str, Chain] = field(
        default_factory=lambda: _freeze(
            {
                "mp3_32k": [{"name": "mp3", "bitrate_kbps": 32}],
                "telephone": [
                    {"name": "bandpass", "low_hz": 300, "high_hz": 3400},
                    {"name": "mp3", "bitrate_kbps": 24},
                ],
                "lowpass_4k": [{"name": "lowpass", "cutoff_hz": 4000}],
                "speech_10db": [{"name": "mix", "snr_db": 10, "source": "speech"}],
                "speech_0db": [{"name": "mix", "snr_db": 0, "source": "speech"}],
                "music_5db": [{"name": "mix", "snr_db": 5, "source": "music"}],
                "gain_noise": [{"name": "gain", "db": -12}, {"name": "noise", "snr_db": 15}],
                "room": [{"name": "reverb", "room_m": [6.0, 4.5, 3.0], "absorption": 0.25}],
                "eq": [{"name": "eq", "gains_db": [6, -6, 3, 0, -4, 5, -6]}],
            }
        )
    )
    distractor_transform_share: float = 0.5
    speed_splits: tuple[str, ...] = ("test",)
    speed_factors: tuple[float, ...] = (0.25, 0.5, 0.75, 1.25, 1.5, 2.0)
    sizes: Mapping[str, CorpusSize] = field(
        default_factory=lambda: FrozenMap(
            {
                "default": CorpusSize(
                    queries_per_recording=FrozenMap({"train": 2, "val": 2, "test": 2}),
                    hard_per_query=1,
                    distractors_per_recording=3,
                    speech_distractors=8,
                ),
                "tiny": CorpusSize(
                    queries_per_recording=1, hard_per_query=1, distractors_per_recording=1, speech_distractors=1
                ),
            }
        )
    )

    def __post_init__(self) -> None:
        if self.size not in self.sizes:
            raise ValueError(f"corpus.size {self.size!r} is not one of corpus.sizes: {', '.join(self.sizes)}")
        _split_keys("corpus.split_fractions", self.split_fractions)
        for name, size in self.sizes.items():
            if isinstance(size.queries_per_recording, Mapping):
                _split_keys(f"corpus.sizes.{name}.queries_per_recording", size.queries_per_recording)


def _cross_sources() -> SourcesConfig:
    return SourcesConfig(
        debian_packages=(
            DebianPackage(
                "xmoto-data",
                "0.6.1+repack-9",
                "usr/share/games/xmoto/Textures/Musics/*.ogg",
                "xmoto",
                "GPL-2+ (X-Moto data, Debian package xmoto-data)",
                "458966c8291579df7dd215a3ebf48cb89fc94e94fe871d124b542eb6233c0e66",
            ),
            DebianPackage(
                "frozen-bubble-data",
                "2.212-11",
                "usr/share/games/frozen-bubble/snd/*zik*.ogg",
                "frozen-bubble",
                "GPL-2 (Frozen Bubble data, Debian package frozen-bubble-data)",
                "39cdfd07d9532d1558762cf265a844d09015c4540568573c50f444cc084166e0",
            ),
        ),
        exclude=(),
        variant_groups=(("frozen-mainzik-1p", "frozen-mainzik-2p"),),
        speech=SpeechConfig(
            voices=("nl", "sv", "cs", "ro"),
            sentences=(
                "The library will stay open late during the exam period.",
                "A strong wind damaged several roofs in the village.",
                "Passengers are asked to move to the rear of the bus.",
                "The orchestra played the symphony without a conductor.",
                "Prices for fresh vegetables rose sharply this winter.",
                "The rescue team reached the climbers before sunset.",
                "Students presented their projects to the city council.",
                "The harbour was closed to small boats for the weekend.",
                "A new exhibition of old maps opens on Friday.",
                "Farmers hope for rain after the long dry summer.",
                "The airport added three new routes to the north.",
                "Volunteers planted two hundred trees along the river.",
            ),
        ),
    )


def _backbone_sources() -> SourcesConfig:
    return SourcesConfig(
        debian_packages=(
            DebianPackage(
                "hedgewars-data",
                "1.0.2-6",
                "usr/share/games/hedgewars/Data/Music/*.ogg",
                "hedgewars",
                "GPL-2 (Hedgewars data, Debian package hedgewars-data)",
                "722225903a72604403e6e0026e40e9a6953f47a74d94efc5f55504bc05bb4761",
            ),
            DebianPackage(
                "supertux-data",
                "0.6.3-2",
                "usr/share/games/supertux2/music/*/*.ogg",
                "supertux",
                "GPL-2+ and CC-BY-SA (SuperTux data, Debian package supertux-data; per file in its copyright)",
                "a6ad8865972f1dbb5e7b49f4e1b381dd16a68f3028a3502cfeaca2400285d27f",
            ),
            DebianPackage(
                "freedroidrpg-data",
                "1.0-1",
                "usr/share/freedroidrpg/data/sound/music/*.ogg",
                "freedroidrpg",
                "GPL-2+ (FreedroidRPG data, Debian package freedroidrpg-data)",
                "16c3cfeb82b1ec20c98493bbe1de2e356bd1aec832845630a5a7f12e303baa2b",
            ),
        ),
        exclude=(),
        variant_groups=(),
        speech=SpeechConfig(
            voices=("fi", "hu", "tr", "da", "el", "sk", "hr", "lv"),
            sentences=(
                "The bakery on the corner sells bread until noon.",
                "Engineers inspected the tunnel before it reopened.",
                "The choir will sing in the cathedral on Sunday evening.",
                "A small earthquake was felt across the valley last night.",
                "The ferry timetable changes at the start of spring.",
                "Researchers counted the birds nesting on the island.",
                "The school added a second language to its courses.",
                "Snow closed the mountain pass for most of the day.",
                "The festival ended with fireworks over the lake.",
                "Doctors advise drinking water during the heat wave.",
                "The council approved a plan for new cycle lanes.",
                "An old steam train carried visitors to the coast.",
            ),
        ),
    )


RESERVED_PACKAGES = ("warzone2100-music",)  # kept for checks outside this repository: no section may use it


@dataclass(frozen=True)
class CrossCorpusConfig:
    """params.yaml `cross_corpus`: a second validation corpus, built like the main one from recordings,
    voices and sentences that no split of the main corpus uses (issue 13).

    Selection on `val` cannot see a model that learnt the main corpus's construction; a corpus with
    other material can. It has one split, `val`, and its speed copies (`val_speed`).
    """

    seed: int = 1
    sources: SourcesConfig = field(default_factory=_cross_sources)
    # model selection maximises (1 - w) * val mAP + w * cross-corpus val mAP
    selection_weight: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.selection_weight <= 1.0:
            raise ValueError(f"cross_corpus.selection_weight must be in [0, 1], got {self.selection_weight}")

    def corpus(self, main: CorpusConfig) -> CorpusConfig:
        """The main corpus's construction with every recording in `val` (and `val_speed`), own seed."""
        return replace(
            main,
            seed=self.seed,
            split_fractions=FrozenMap({"train": 0.0, "val": 1.0, "test": 0.0}),
            speed_splits=("val",),
        )


@dataclass(frozen=True)
class TrainCorpusConfig:
    """params.yaml `train_corpus`: more training queries for AuSiL's similarity network (issue 13), built
    with the main corpus's construction from `backbone_sources`, every recording in `train`.

    Trained on the 38 queries of the main train split alone, the network learns that material: it scores
    below its own input similarity (MAC + W) on the cross-corpus `val`, and more queries of the same
    recordings do not change that (scripts/ausil_data_curve.py). Queries of other recordings do
    (scripts/ausil_variety_probe.py).
    """

    seed: int = 3
    queries_per_recording: int = 1

    def __post_init__(self) -> None:
        if self.queries_per_recording < 1:
            raise ValueError(f"train_corpus.queries_per_recording must be at least 1, got {self.queries_per_recording}")

    def corpus(self, main: CorpusConfig) -> CorpusConfig:
        """The main corpus's construction with every recording in `train`, no speed copies, own seed."""
        size = replace(main.sizes[main.size], queries_per_recording=self.queries_per_recording)
        return replace(
            main,
            seed=self.seed,
            split_fractions=FrozenMap({"train": 1.0, "val": 0.0, "test": 0.0}),
            speed_splits=(),
            sizes=FrozenMap({**main.sizes, main.size: size}),
        )


@dataclass(frozen=True)
class BackboneTrainingConfig:
    """params.yaml `backbone_training`: the self-supervised backbone (when the AudioSet weights are absent)."""

    seed: int = 0
    max_steps: int = 200
    budget_s: float = 1500  # safety cap only
    batch_pairs: int = 24
    learning_rate: float = 0.001
    temperature: float = 0.03
    checkpoint_every: int = 25
    # also train on params.yaml `backbone_sources` (unlabelled recordings no corpus uses; issue 13)
    extra_sources: bool = False
    speed_probability: float = 0.4
    speed_factors: tuple[float, ...] = (0.5, 0.75, 1.25, 1.5, 2.0)
    augment_presets: tuple[Chain, ...] = _freeze(
        [
            [],
            [{"name": "mp3", "bitrate_kbps": 32}],
            [{"name": "bandpass", "low_hz": 300, "high_hz": 3400}],
            [{"name": "lowpass", "cutoff_hz": 4000}],
            [{"name": "mix", "snr_db": 5, "source": "other"}],
            [{"name": "mix", "snr_db": 0, "source": "other"}],
            [{"name": "gain", "db": -12}, {"name": "noise", "snr_db": 10}],
            [{"name": "eq", "gains_db": [6, -6, 3, 0, -4, 5, -6]}],
        ]
    )


@dataclass(frozen=True)
class TrainingConfig:
    """params.yaml `training`: the AuSiL similarity network (paper Section III-C)."""

    seed: int = 0
    pca_sample_size: int = 20000
    pca_eps: float = 1.0e-4
    positive_max_distance: float = 0.175  # the paper's value, tuned on AudioSet features
    negative_margin: float = 0.15  # the paper's value
    # paper: the two thresholds as given; calibrated: both scaled by one factor that puts
    # positive_max_distance at this quantile of the backbone's own train-positive distances
    mining: str = "paper"
    positive_quantile: float = 0.9
    gamma: float = 1.0
    r: float = 0.1
    learning_rate: float = 0.001
    batch_triplets: int = 32
    max_steps: int = 80
    budget_s: float = 1200  # safety cap only
    eval_every: int = 10

    def __post_init__(self) -> None:
        if self.mining not in ("paper", "calibrated"):
            raise ValueError(f"training.mining must be paper or calibrated, got {self.mining!r}")
        if not 0.0 < self.positive_quantile <= 1.0:
            raise ValueError(f"training.positive_quantile must be in (0, 1], got {self.positive_quantile}")


_CONNECTIVITY = {"diamond": 1, "square": 2}


@dataclass(frozen=True)
class DejavuConfig:
    """params.yaml `dejavu`: Dejavu's tunable settings; the defaults are the original Dejavu's, as in the paper.

    The PyPI fork changed three of them (its settings.py): fan_value 5, peak_neighborhood_size 10
    and connectivity_mask "square" (2 in its CONNECTIVITY_MASK), which is faster and yields about
    half the hashes.  The other values are the same in both.
    """

    fan_value: int = 15  # peaks each peak is paired with (fork: 5)
    peak_neighborhood_size: int = 20  # dilation steps of the peak mask (fork: 10)
    connectivity_mask: str = "diamond"  # diamond: no diagonal neighbours (fork: square)
    amp_min: float = 10  # dB floor of a spectrogram peak
    window_size: int = 4096  # FFT window in samples
    overlap_ratio: float = 0.5  # window overlap; one frame = window_size * (1 - ratio) samples
    min_hash_time_delta: int = 0  # frames between paired peaks
    max_hash_time_delta: int = 200
    peak_sort: bool = True  # sort peaks by time before pairing
    fingerprint_reduction: int = 20  # hex digits of the SHA-1 kept per hash
    fast_peak_filter: bool = True  # the diamond mask's maximum filter as repeated 5-point maxima: same
    # peaks, about 11x faster (baselines/dejavu.py); False: the scipy call Dejavu makes
    batch_insert: bool = True  # Dejavu's own rows, one multi-row INSERT per page (about 6x
    insert_page_size: int = 10000  # faster than its row-by-row executemany); False: its insert_hashes
    postgres_bindir: str | None = None  # null: pg_config --bindir, then /usr/lib/postgresql/*/bin
    postgres_start_timeout_s: float = 60.0
    workers: int = 2  # processes fingerprinting database files side by side (results do not depend on it)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.connectivity_mask not in _CONNECTIVITY:
            raise ValueError(
                f"connectivity_mask must be one of {sorted(_CONNECTIVITY)}, not {self.connectivity_mask!r}"
            )
        if self.fan_value < 2:
            raise ValueError("fan_value must be at least 2 (Dejavu pairs each peak with fan_value - 1 others)")
        if self.peak_neighborhood_size < 1 or self.window_size < 2 or self.insert_page_size < 1:
            raise ValueError("peak_neighborhood_size, window_size and insert_page_size must be positive")
        if not 0.0 <= self.overlap_ratio < 1.0:
            raise ValueError(f"overlap_ratio must be in [0, 1), not {self.overlap_ratio}")
        if not 0 <= self.min_hash_time_delta <= self.max_hash_time_delta:
            raise ValueError("need 0 <= min_hash_time_delta <= max_hash_time_delta")
        if not (2 <= self.fingerprint_reduction <= 40 and self.fingerprint_reduction % 2 == 0):
            # stored as decode(hash, 'hex'): an odd number of hex digits cannot be decoded
            raise ValueError("fingerprint_reduction must be an even number of hex digits in [2, 40]")

    @property
    def hop_samples(self) -> int:
        """Samples between spectrogram frames, as mlab.specgram steps with noverlap=int(wsize * ratio)."""
        return self.window_size - int(self.window_size * self.overlap_ratio)

    def module_settings(self) -> dict[str, Any]:
        """Values for the module-level names that dejavu.logic.fingerprint reads at call time."""
        return {
            "PEAK_NEIGHBORHOOD_SIZE": self.peak_neighborhood_size,
            "CONNECTIVITY_MASK": _CONNECTIVITY[self.connectivity_mask],
            "MIN_HASH_TIME_DELTA": self.min_hash_time_delta,
            "MAX_HASH_TIME_DELTA": self.max_hash_time_delta,
            "PEAK_SORT": self.peak_sort,
            "FINGERPRINT_REDUCTION": self.fingerprint_reduction,
        }


THRESHOLD_RULES = ("iterative", "multiples")
DIRECTIONS = ("query_to_ref", "ref_to_query")
TIE_VOTES = ("first", "all")


@dataclass(frozen=True)
class SpectroConfig:
    """params.yaml `spectro`: every setting of docs/spectro-baselines.md section 4, with the spec's
    defaults except ref_stride 4 (spec 3.10: a quarter of the exhaustive search's cost)."""

    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 320
    window: str = "hamming"
    band_lo: int = 20
    band_hi: int = 179
    frames_per_fp: int = 50
    silence_dbfs: float | None = -60.0
    n_images: int = 3
    threshold_rule: str = "iterative"
    multiples: tuple[float, ...] = (1.0, 2.0, 3.0)
    h_slides: int = 16
    v_slides: int = 10
    tile: int = 5
    kept_tiles: int = 32
    direction: str = "query_to_ref"
    tie_votes: str = "first"
    tau: int = 0
    ref_stride: int = 4
    device: str = "cpu"
    batch_size: int = 1024
    window_batch: int = 64
    workers: int = 2  # processes fingerprinting database files side by side (results do not depend on it)

    def __post_init__(self) -> None:
        object.__setattr__(self, "multiples", tuple(float(c) for c in self.multiples))
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        for name, value, allowed in (
            ("threshold_rule", self.threshold_rule, THRESHOLD_RULES),
            ("direction", self.direction, DIRECTIONS),
            ("tie_votes", self.tie_votes, TIE_VOTES),
        ):
            if value not in allowed:
                raise ValueError(f"spectro.{name} must be one of {allowed}, got {value!r}")
        for name in (
            "sample_rate",
            "n_fft",
            "hop",
            "frames_per_fp",
            "n_images",
            "h_slides",
            "v_slides",
            "tile",
            "kept_tiles",
            "ref_stride",
            "batch_size",
            "window_batch",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"spectro.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.tau < 0:
            raise ValueError(f"spectro.tau must be >= 0, got {self.tau}")
        if not 0 <= self.band_lo <= self.band_hi < self.n_fft // 2 + 1:
            raise ValueError(f"spectro band bins {self.band_lo}..{self.band_hi} outside 0..{self.n_fft // 2}")
        rows, frames = self.n_rows, self.frames_per_fp
        for axis, size, parts in (
            ("band rows", rows, self.h_slides),
            ("band rows", rows, self.tile),
            ("frames", frames, self.v_slides),
            ("frames", frames, self.tile),
        ):
            if size % parts:
                raise ValueError(f"spectro: {axis} ({size}) must divide evenly by {parts} (slides/tile settings)")
        if self.kept_tiles > self.tiles_per_image:
            raise ValueError(
                f"spectro.kept_tiles ({self.kept_tiles}) exceeds the {self.tiles_per_image} tiles per image"
            )
        if self.threshold_rule == "multiples" and (
            len(self.multiples) != self.n_images or list(self.multiples) != sorted(self.multiples)
        ):
            raise ValueError(
                f"spectro.multiples must hold n_images={self.n_images} non-decreasing values, got {self.multiples}"
            )
        if self.n_rows * self.frames_per_fp > np.iinfo(np.uint16).max:
            raise ValueError("spectro: a slide count would not fit the uint16 fingerprint")

    @property
    def n_rows(self) -> int:
        return self.band_hi - self.band_lo + 1

    @property
    def tiles_per_image(self) -> int:
        return (self.n_rows // self.tile) * (self.frames_per_fp // self.tile)

    def frontend_key(self, method: str) -> str:
        """The settings a stored fingerprint depends on, so fingerprints of other settings are never mixed."""
        keys = [
            "sample_rate",
            "n_fft",
            "hop",
            "window",
            "band_lo",
            "band_hi",
            "frames_per_fp",
            "silence_dbfs",
            "n_images",
            "threshold_rule",
        ]
        keys += ["multiples"] if self.threshold_rule == "multiples" else []
        keys += ["h_slides", "v_slides"] if method == "slides" else ["tile", "kept_tiles"]
        settings = asdict(self)
        return json.dumps({"method": method, **{k: settings[k] for k in keys}}, sort_keys=True)


@dataclass(frozen=True)
class LocalisationConfig:
    """params.yaml `localisation`: where in a video a duplicate is, from AuSiL's segment similarity map.

    The map is cut at a finer step than retrieval's so that a segment end lands within a fraction of a
    second; a band is kept when its mean robust z-score times the square root of its length in
    (non-overlapping) windows reaches `threshold_z` (docs/localisation.md)."""

    time_step_ms: int = 250
    threshold_z: float = 6.0
    min_duration_s: float = 2.0
    speed_min: float = 0.5
    speed_max: float = 2.0
    speed_steps: int = 61
    max_segments: int = 5
    top_k: int = 5

    def __post_init__(self) -> None:
        if self.time_step_ms <= 0 or self.speed_steps < 2 or self.max_segments < 1 or self.top_k < 1:
            raise ValueError("localisation: time_step_ms, speed_steps, max_segments and top_k must be positive")
        if not 0 < self.speed_min < 1 < self.speed_max:
            raise ValueError(
                f"localisation: need 0 < speed_min < 1 < speed_max, not {self.speed_min}, {self.speed_max}"
            )


@dataclass(frozen=True)
class AblationsConfig:
    """params.yaml `ablations`: the sweeps dvc.yaml runs (empty: not run)."""

    gammas: tuple[float, ...] = ()
    time_steps_ms: tuple[int, ...] = ()


@dataclass(frozen=True)
class YoutubeConfig:
    """params.yaml `datasets.youtube`: how yt-dlp is called and how politely."""

    command: tuple[str, ...] = ("yt-dlp",)
    format: str = "bestaudio/best"
    rate_limit: str | None = "4M"
    sleep_s: float = 1.0
    retries: int = 2
    timeout_s: float = 900
    url_template: str = "https://www.youtube.com/watch?v={id}"


@dataclass(frozen=True)
class AudioAnnotationConfig:
    """params.yaml `datasets.audio_annotation`: the AuSiL authors' DA labels (one Google Drive file)."""

    drive_id: str | None = "1Vr3NhySehJiNKIWJCicYK4pN9SjOwZ3N"
    sha256: str | None = None  # None: unverified; the stage records the digest it gets
    file: str | None = "ausil_audio_annotation"  # under datasets.root


@dataclass(frozen=True)
class ArchiveEntry:
    """One annotation file or video archive of a dataset: where to get it and its digest."""

    url: str | None = None
    sha256: str | None = None
    name: str | None = None  # file name to save as (default: the URL's)


@dataclass(frozen=True)
class DatasetLayout:
    """Where a dataset's files are under raw/ (each kind uses its own keys)."""

    annotation: str | None = None  # fivr
    youtube_ids: str | None = None  # fivr
    audio_annotation: str | None = None  # fivr, svd: DA labels of the dataset's own
    groundtruth: str | None = None  # svd
    unlabeled_ids: str | None = None  # svd
    annotation_dir: str | None = None  # vcdb
    annots_dir: str | None = None  # evve


@dataclass(frozen=True)
class Fivr5kSubset:
    """A FIVR subset drawn as the paper's FIVR-5K."""

    queries: int
    da_fraction: float
    distractors: int
    seed: int = 0


@dataclass(frozen=True)
class DatasetStats:
    """Published sizes, for the dry-run budget."""

    videos: int | None = None
    queries: int = 0
    mean_duration_s: float | None = None


DATASET_KINDS = ("fivr", "svd", "vcdb", "evve")


@dataclass(frozen=True)
class DatasetConfig:
    """One named dataset of params.yaml `datasets`."""

    kind: str  # fivr | svd | vcdb | evve
    annotation_files: tuple[ArchiveEntry, ...] = ()
    video_archives: tuple[ArchiveEntry, ...] = ()
    layout: DatasetLayout = field(default_factory=DatasetLayout)
    use_authors_audio_annotation: bool = False
    subset: Fivr5kSubset | None = None  # fivr
    include_unlabeled: bool = False  # svd
    val_topics: int = 0  # vcdb
    seed: int = 0  # vcdb
    time_step_ms: int | None = None  # None: features.time_step_ms
    stats: DatasetStats = field(default_factory=DatasetStats)

    def __post_init__(self) -> None:
        if self.kind not in DATASET_KINDS:
            raise ValueError(f"kind is {self.kind!r}; expected one of {DATASET_KINDS}")


def _shipped_datasets() -> FrozenMap:
    fivr_files = tuple(
        ArchiveEntry(f"https://raw.githubusercontent.com/MKLab-ITI/FIVR-200K/master/dataset/{name}")
        for name in ("annotation.json", "youtube_ids.txt")
    )
    fivr_layout = DatasetLayout(annotation="annotation.json", youtube_ids="youtube_ids.txt")
    return FrozenMap(
        {
            "fivr200k": DatasetConfig(
                "fivr",
                fivr_files,
                layout=fivr_layout,
                use_authors_audio_annotation=True,
                time_step_ms=1000,
                stats=DatasetStats(225960, 76, 117),
            ),
            "fivr5k": DatasetConfig(
                "fivr",
                fivr_files,
                layout=fivr_layout,
                use_authors_audio_annotation=True,
                subset=Fivr5kSubset(queries=50, da_fraction=0.35, distractors=5000, seed=0),
                time_step_ms=1000,
                stats=DatasetStats(5830, 50, 117),
            ),
            "svd": DatasetConfig(
                "svd",
                layout=DatasetLayout(groundtruth="test_groundtruth"),
                use_authors_audio_annotation=True,
                time_step_ms=125,
                stats=DatasetStats(6118, 167, 17),
            ),
            "vcdb": DatasetConfig(
                "vcdb",
                layout=DatasetLayout(annotation_dir="annotation"),
                val_topics=4,
                time_step_ms=1000,
                stats=DatasetStats(528, 0, 184),
            ),
            "evve": DatasetConfig(
                "evve", layout=DatasetLayout(annots_dir="annots"), time_step_ms=1000, stats=DatasetStats(2995, 620)
            ),
        }
    )


@dataclass(frozen=True)
class DatasetsConfig:
    """params.yaml `datasets`: the real datasets' shared settings; every other key names a dataset."""

    EXTRA_KEYS: ClassVar[tuple[str, str]] = ("named", "a dataset")

    enabled: tuple[str, ...] = ()  # the datasets dvc.yaml runs
    train_on: tuple[str, ...] = ()
    root: str = "data/real"
    model: str = "models/ausil_main.pt"
    methods: tuple[str, ...] = ("ausil",)
    speed_factors: tuple[float, ...] = (0.25, 0.5, 0.75, 1.25, 1.5, 2.0)
    store_dtype: str = "float16"
    shard_videos: int = 256
    decode_workers: int = 8
    batch_segments: int = 4096
    amp: bool = True
    similarity_batch_mb: int = 1024
    budget_audio_kbps: float = 128
    audio_annotation: AudioAnnotationConfig = field(default_factory=AudioAnnotationConfig)
    youtube: YoutubeConfig = field(default_factory=YoutubeConfig)
    named: Mapping[str, DatasetConfig] = field(default_factory=_shipped_datasets)

    def __post_init__(self) -> None:
        for key in ("enabled", "train_on"):
            if undefined := [name for name in getattr(self, key) if name not in self.named]:
                raise ValueError(f"datasets.{key} names undefined datasets {undefined} (defined: {list(self.named)})")


@dataclass(frozen=True)
class Params:
    """The whole params.yaml: one field per section (no global seed: each section that draws random numbers
    has its own `seed`)."""

    device: str = "auto"  # auto: CUDA when present, else CPU; cpu / cuda / cuda:N force one
    audio: AudioConfig = field(default_factory=AudioConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    release: ReleaseConfig = field(default_factory=ReleaseConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    benchmark_speed: BenchmarkSpeedConfig = field(default_factory=BenchmarkSpeedConfig)
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    cross_corpus: CrossCorpusConfig = field(default_factory=CrossCorpusConfig)
    backbone_sources: SourcesConfig = field(default_factory=_backbone_sources)
    train_corpus: TrainCorpusConfig = field(default_factory=TrainCorpusConfig)
    backbone_training: BackboneTrainingConfig = field(default_factory=BackboneTrainingConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    dejavu: DejavuConfig = field(default_factory=DejavuConfig)
    spectro: SpectroConfig = field(default_factory=SpectroConfig)
    localisation: LocalisationConfig = field(default_factory=LocalisationConfig)
    ablations: AblationsConfig = field(default_factory=AblationsConfig)
    datasets: DatasetsConfig = field(default_factory=DatasetsConfig)

    def __post_init__(self) -> None:
        """The three source sets never share a package, album or voice: the backbone's extra audio and the
        cross-corpus set are only worth something if no split of the main corpus holds their recordings."""
        named = {
            "sources": self.sources,
            "cross_corpus.sources": self.cross_corpus.sources,
            "backbone_sources": self.backbone_sources,
        }
        seen: dict[tuple[str, str], str] = {}
        if any(self.sources is other for other in list(named.values())[1:]):
            del named["sources"]  # put in place by one of the *_params functions below: not a clash
        for where, src in named.items():
            used = [] if src.music_dir else [("package", p.name) for p in src.debian_packages]
            used += [] if src.music_dir else [("album", p.album) for p in src.debian_packages]
            used += [("voice", v) for v in src.speech.voices] if src.speech.enabled else []
            for kind, name in used:
                if kind == "package" and name in RESERVED_PACKAGES:
                    raise ValueError(f"{where}: package {name} is reserved for checks outside this repository")
                if (kind, name) in seen and seen[kind, name] != where:
                    raise ValueError(f"{where} and {seen[kind, name]} both use the {kind} {name!r}")
                seen[kind, name] = where


def backbone_sources_params(params: Params) -> Params:
    """The settings that fetch the backbone's extra recordings: `backbone_sources` in place of `sources`."""
    return replace(params, sources=params.backbone_sources)


def cross_corpus_params(params: Params) -> Params:
    """The settings that build the cross-corpus validation set: its own sources and seed, the main
    corpus's construction, every recording in `val`."""
    cc = params.cross_corpus
    return replace(params, sources=cc.sources, corpus=cc.corpus(params.corpus))


def train_corpus_params(params: Params) -> Params:
    """The settings that build AuSiL's extra training corpus: `backbone_sources` as its recordings, the
    main corpus's construction, every recording in `train`."""
    return replace(params, sources=params.backbone_sources, corpus=params.train_corpus.corpus(params.corpus))


def parse_params(raw: Mapping[str, Any]) -> Params:
    """Params from parsed YAML (a test's dict, or params.yaml's): checked, typed and frozen."""
    return from_section(Params, raw, "")


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """The settings of a params.yaml; a missing, malformed or misspelt file is a clear error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: parameter file not found (run from the repository root or pass --params)")
    with path.open(encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of sections at the top level")
    try:
        return parse_params(raw)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def resolve_device(spec: str | None = "auto") -> torch.device:
    """`auto` picks CUDA when present, else CPU; an explicit CUDA request without a GPU fails."""
    apply_torch_settings()  # idempotent: the torch side of the pinning holds wherever a device is chosen
    spec = (spec or "auto").lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} requested in params.yaml but no CUDA device is available")
    return device


@contextmanager
def full_float32() -> Iterator[None]:
    """cuDNN runs float32 convolutions as TF32 (10-bit mantissa) on Ampere and later GPUs by default;
    measured on an H100 that moved MAC descriptors by up to 2.9e-4 from the CPU's. Float32 work runs
    with TF32 off, so a GPU gives the CPU's numbers; mixed precision is the explicit speed option."""
    cudnn = torch.backends.cudnn
    with cudnn.flags(
        enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic, allow_tf32=False
    ):
        yield
