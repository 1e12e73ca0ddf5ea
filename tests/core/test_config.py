"""params.yaml is read once into frozen, typed configs: the defaults are the shipped file's, and a
misspelt key, an unknown section or a value of the wrong type stops the run naming the key."""

from __future__ import annotations

import copy
import re
from dataclasses import FrozenInstanceError, fields, replace
from pathlib import Path

import pytest
import yaml

from ausil_lib.cli import main
from ausil_lib.core.config import (
    Params,
    backbone_sources_params,
    cross_corpus_params,
    load_params,
    parse_params,
    plain,
    train_corpus_params,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


def shipped() -> dict:
    return copy.deepcopy(SHIPPED)


@pytest.mark.parametrize("section", [f.name for f in fields(Params)])
def test_defaults_are_the_shipped_params_yaml(section: str) -> None:
    """One place for defaults: the dataclasses'. A change to either them or params.yaml fails here."""
    assert section in SHIPPED, f"params.yaml has no section {section}"
    assert getattr(load_params(ROOT / "params.yaml"), section) == getattr(Params(), section)


def test_every_setting_params_yaml_names_is_kept() -> None:
    """Nothing the file says is dropped: read back as plain YAML, every key has the file's value."""
    loaded = plain(load_params(ROOT / "params.yaml"))
    named = loaded["datasets"].pop("named")
    loaded["datasets"].update(named)

    def check(expected: object, got: object, key: str) -> None:
        if isinstance(expected, dict):
            for k, v in expected.items():
                check(v, got[k], f"{key}.{k}")
        elif isinstance(expected, list):
            assert isinstance(got, list) and len(got) == len(expected), key
            for i, (v, g) in enumerate(zip(expected, got)):
                check(v, g, f"{key}[{i}]")
        else:
            assert got == expected, key

    check(SHIPPED, loaded, "params")


def test_misspelt_features_key_names_it() -> None:
    raw = shipped()
    raw["features"]["n_melz"] = 128
    with pytest.raises(ValueError, match=r"unknown setting 'features\.n_melz'; valid keys of features: n_mels"):
        parse_params(raw)


def test_the_command_line_stops_on_it(tmp_path: Path, capsys) -> None:
    raw = shipped()
    raw["features"]["n_melz"] = 128
    raw["release"]["manifest"] = str(tmp_path / "manifest.json")  # had it run, it would have written here
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["--params", str(path), "fetch-weights", "--verify-only", "--no-progress"]) == 2
    assert "unknown setting 'features.n_melz'" in capsys.readouterr().err
    assert not (tmp_path / "manifest.json").exists()


def test_unknown_section_is_refused() -> None:
    raw = shipped()
    raw["featurez"] = {"n_mels": 128}
    with pytest.raises(ValueError, match=r"unknown section 'featurez'; valid keys of params.yaml: device, audio"):
        parse_params(raw)


@pytest.mark.parametrize(
    "path, key",
    [
        (("corpus", "sizes", "default"), "foo"),
        (("training",), "gama"),
        (("release", "backbone"), "sha"),
        (("datasets", "fivr5k", "subset"), "queriez"),
        (("datasets", "svd", "layout"), "gt"),
        (("sources", "speech"), "voice"),
        (("corpus", "hard_cases", "short_overlap"), "overlap"),
    ],
)
def test_nested_unknown_keys_are_refused(path: tuple[str, ...], key: str) -> None:
    raw = shipped()
    section = raw
    for name in path:
        section = section[name]
    section[key] = 1
    dotted = ".".join((*path, key)).replace(".", r"\.")
    with pytest.raises(ValueError, match=rf"unknown setting '{dotted}'"):
        parse_params(raw)


def test_a_misspelt_datasets_setting_is_not_taken_for_a_dataset() -> None:
    raw = shipped()
    raw["datasets"]["decode_workerz"] = 4
    with pytest.raises(ValueError, match=r"datasets\.decode_workerz"):
        parse_params(raw)
    raw = shipped()
    raw["datasets"]["youtub"] = {"retries": 3}  # a mapping names a dataset, whose keys are checked
    with pytest.raises(ValueError, match=r"unknown setting .datasets\.youtub\.retries."):
        parse_params(raw)


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("training", "max_steps"), "80", r"training\.max_steps must be an integer, got '80'"),
        (("features", "top_db"), "loud", r"features\.top_db must be a number or null"),
        (("backbone", "fuse_bn"), "yes", r"backbone\.fuse_bn must be true or false"),
        (("extract", "batch_size"), True, r"extract\.batch_size must be an integer, got True"),
        (("corpus", "speed_factors"), 2.0, r"corpus\.speed_factors must be a list"),
        (("benchmark_speed", "time_steps_ms"), [1000, "fast"], r"benchmark_speed\.time_steps_ms\[1\]"),
        (("corpus", "sizes", "tiny", "queries_per_recording"), "one", r"queries_per_recording must be an integer"),
        (("datasets", "youtube"), ["yt-dlp"], r"datasets\.youtube must be a mapping"),
    ],
)
def test_wrong_types_are_refused_naming_the_key(path: tuple[str, ...], value: object, message: str) -> None:
    raw = shipped()
    section = raw
    for name in path[:-1]:
        section = section[name]
    section[path[-1]] = value
    with pytest.raises(ValueError, match=message):
        parse_params(raw)


def test_values_are_checked_where_they_are_read() -> None:
    raw = shipped()
    raw["corpus"]["size"] = "huge"
    with pytest.raises(ValueError, match="corpus.size 'huge' is not one of corpus.sizes: default, tiny"):
        parse_params(raw)
    raw = shipped()
    raw["datasets"]["enabled"] = ["fivr5"]
    with pytest.raises(ValueError, match=r"datasets\.enabled names undefined datasets \['fivr5'\]"):
        parse_params(raw)


def test_missing_keys_take_the_defaults() -> None:
    assert parse_params({}) == Params()
    assert parse_params({"training": {"gamma": 0.6}}).training.max_steps == Params().training.max_steps


def test_configs_are_frozen() -> None:
    params = load_params(ROOT / "params.yaml")
    with pytest.raises(FrozenInstanceError):
        params.training.gamma = 2.0  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        params.features = params.features  # type: ignore[misc]
    assert isinstance(params.corpus.speed_factors, tuple) and isinstance(params.sources.variant_groups[0], tuple)
    with pytest.raises(TypeError):
        params.corpus.transform_presets["new"] = ()  # type: ignore[index]
    with pytest.raises(TypeError):
        params.corpus.transform_presets["room"][0]["absorption"] = 0.5  # type: ignore[index]


def test_plain_gives_back_the_yaml_shapes() -> None:
    """What training metadata and the construction log hold: lists and dicts, as before."""
    cfg = load_params(ROOT / "params.yaml").backbone_training
    assert plain(cfg) == SHIPPED["backbone_training"]
    assert isinstance(plain(cfg)["augment_presets"][1], list)


@pytest.mark.parametrize(
    ("section", "edit", "message"),
    [
        (  # a package the cross-corpus set already uses
            "backbone_sources",
            lambda s, raw: s["debian_packages"].append(raw["cross_corpus"]["sources"]["debian_packages"][0]),
            "backbone_sources and cross_corpus.sources both use the package 'xmoto-data'",
        ),
        (  # a voice of the main corpus's speech
            "backbone_sources",
            lambda s, raw: s["speech"]["voices"].append("de"),
            "backbone_sources and sources both use the voice 'de'",
        ),
        (  # an album name, so two folders would hold recordings with one id
            "cross_corpus",
            lambda s, raw: s["sources"]["debian_packages"][0].update(album="wesnoth"),
            "cross_corpus.sources and sources both use the album 'wesnoth'",
        ),
        (  # the package kept for checks outside the repository
            "backbone_sources",
            lambda s, raw: s["debian_packages"][0].update(name="warzone2100-music"),
            "backbone_sources: package warzone2100-music is reserved",
        ),
    ],
)
def test_source_sets_never_share_material(section: str, edit, message: str) -> None:
    raw = shipped()
    edit(raw[section], raw)
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_params(raw)


def test_a_user_folder_replaces_the_packages_it_would_share() -> None:
    """With music_dir set, a section's Debian packages are not fetched, so they cannot clash."""
    raw = shipped()
    raw["backbone_sources"]["debian_packages"] = raw["sources"]["debian_packages"]
    raw["backbone_sources"]["music_dir"] = "my_music"
    assert parse_params(raw).backbone_sources.music_dir == "my_music"


def test_the_fetch_helpers_swap_sources_without_a_clash() -> None:
    params = load_params(ROOT / "params.yaml")
    assert backbone_sources_params(params).sources == params.backbone_sources
    assert cross_corpus_params(params).sources == params.cross_corpus.sources
    extra = train_corpus_params(params)
    assert extra.sources == params.backbone_sources
    assert extra.corpus.split_fractions == {"train": 1.0, "val": 0.0, "test": 0.0} and not extra.corpus.speed_splits
    size = extra.corpus.sizes[extra.corpus.size]
    assert size.queries_per_recording == params.train_corpus.queries_per_recording
    # only the split, the seed and the queries per recording differ from the main corpus's construction
    same = replace(
        extra.corpus,
        seed=params.corpus.seed,
        split_fractions=params.corpus.split_fractions,
        speed_splits=params.corpus.speed_splits,
        sizes=params.corpus.sizes,
    )
    assert same == params.corpus and extra.corpus.seed == params.train_corpus.seed


def test_the_train_corpus_needs_a_query_per_recording() -> None:
    raw = shipped()
    raw["train_corpus"]["queries_per_recording"] = 0
    with pytest.raises(ValueError, match="train_corpus.queries_per_recording must be at least 1, got 0"):
        parse_params(raw)
