"""Bulk extraction into a feature store: equal to the per-video path, bad files, resume, workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ausil_lib.features.bulk import extract_to_store
from ausil_lib.features.extraction import Extractor, feature_path, load_features
from ausil_lib.features.logmel import FeatureConfig
from ausil_lib.features.store import FeatureStore, StoreError
from ausil_lib.models.backbone import BackboneInfo, KumarCNN, MacExtractor

from ..helpers import SR, encode_clips, video_without_audio

CLIPS = {"a": ("a.mp4", 2.5), "b": ("b.ogg", 4.0), "c": ("c.webm", 6.0), "d": ("d.wav", 1.2)}


def released_segments(seconds: float) -> int:
    """Segments at the 1 s step as the released extractor cuts them (1-176 zero rows, then 1-87; block pairs)."""
    frames = int(seconds * SR) // 512 + 1
    padded = frames + 176 - frames % 176
    padded += 87 - padded % 87
    return padded // 87 - 1


TOTAL_SEGMENTS = sum(released_segments(s) for _, s in CLIPS.values())  # 4 + 4 + 6 + 2 = 16


def make_extractor(device: str = "cpu") -> Extractor:
    torch.manual_seed(0)
    return Extractor(
        MacExtractor(KumarCNN(), device),
        BackboneInfo("random", "UNTRAINED test backbone", "random-test"),
        FeatureConfig(),
    )


@pytest.fixture(scope="module")
def extractor() -> Extractor:
    return make_extractor()


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Four good clips of different lengths and containers, made once for the module."""
    return encode_clips(tmp_path_factory.mktemp("media"), CLIPS)


@pytest.fixture(scope="module")
def reference(
    extractor: Extractor, media: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, np.ndarray]:
    """Descriptors of the per-video path (Extractor.extract_to)."""
    out = tmp_path_factory.mktemp("per_video")
    for vid, path in media.items():
        extractor.extract_to(vid, path, out)
    return {vid: load_features(feature_path(out, vid)).descriptors for vid in media}


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, str]:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 30000, dtype=np.uint8).tobytes())
    no_audio = tmp_path / "no_audio.mp4"
    video_without_audio(no_audio)
    return {"corrupt": str(corrupt), "no_audio": str(no_audio), "missing": str(tmp_path / "gone.mp4")}


def open_store(root: Path, extractor: Extractor, **kwargs) -> FeatureStore:
    return FeatureStore(root, extractor.signature, **kwargs)


@pytest.mark.parametrize(
    "batch_segments, batches",
    [
        (2, [2] * (TOTAL_SEGMENTS // 2)),  # every video is split across batches
        (5, [5] * (TOTAL_SEGMENTS // 5) + [TOTAL_SEGMENTS % 5]),  # batches mix videos and split them
        (64, [TOTAL_SEGMENTS]),  # all four videos in one batch
    ],
)
def test_equal_to_per_video_extraction(
    tmp_path: Path,
    extractor: Extractor,
    media: dict[str, str],
    reference: dict[str, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    batch_segments: int,
    batches: list[int],
) -> None:
    sizes: list[int] = []
    backbone = extractor.mac.extract

    def recording(segments: torch.Tensor, batch_size: int) -> np.ndarray:
        sizes.append(segments.shape[0])
        return backbone(segments, batch_size)

    monkeypatch.setattr(extractor.mac, "extract", recording)
    store = open_store(tmp_path / "s", extractor)
    report = extract_to_store(extractor, media, store, workers=0, batch_segments=batch_segments, progress=False)
    assert sizes == batches
    assert report.extracted == list(media) and not report.failed and not report.skipped
    assert report.audio_seconds == pytest.approx(sum(s for _, s in CLIPS.values()), abs=0.1)
    reopened = FeatureStore(tmp_path / "s", readonly=True)
    for vid, path in media.items():
        got = reopened.get(vid)
        assert got.shape == reference[vid].shape
        assert np.abs(got - reference[vid]).max() < 1e-5
        meta = reopened.meta(vid)
        assert meta["path"] == path and meta["n_segments"] == got.shape[0]
        assert meta["signature"] == extractor.signature


def test_bad_files_are_reported_and_good_ones_stored(
    tmp_path: Path, extractor: Extractor, media: dict[str, str], bad_files: dict[str, str]
) -> None:
    videos = {"a": media["a"], **bad_files, "d": media["d"]}
    store = open_store(tmp_path / "s", extractor)
    report = extract_to_store(extractor, videos, store, workers=2, progress=False)
    assert report.extracted == ["a", "d"] and store.ids() == ["a", "d"]
    assert set(report.failed) == set(bad_files)
    assert "corrupt" in report.failed["corrupt"][1]
    assert "no audio stream" in report.failed["no_audio"][1]
    assert report.failed["missing"] == (bad_files["missing"], "missing file")
    lines = (tmp_path / "s" / "failures.tsv").read_text().splitlines()
    assert lines[0] == "video_id\tpath\treason" and sorted(line.split("\t")[0] for line in lines[1:]) == sorted(
        bad_files
    )


def test_resume_skips_stored_videos_and_keeps_work_on_interrupt(
    tmp_path: Path, extractor: Extractor, media: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(tmp_path / "s", extractor)
    add = store.add

    def interrupted_add(vid: str, *args) -> None:
        if vid == "c":
            raise KeyboardInterrupt
        add(vid, *args)

    monkeypatch.setattr(store, "add", interrupted_add)
    with pytest.raises(KeyboardInterrupt):
        extract_to_store(extractor, media, store, workers=0, batch_segments=1, progress=False)
    assert FeatureStore(tmp_path / "s", readonly=True).ids() == ["a", "b"]  # flushed on the way out

    resumed = open_store(tmp_path / "s", extractor)
    second = extract_to_store(extractor, media, resumed, workers=0, progress=False)
    assert second.skipped == ["a", "b"] and second.extracted == ["c", "d"]
    third = extract_to_store(extractor, media, open_store(tmp_path / "s", extractor), workers=0, progress=False)
    assert third.extracted == [] and third.skipped == list(media) and not third.failed


def test_workers_give_identical_stores(tmp_path: Path, extractor: Extractor, media: dict[str, str]) -> None:
    stores = {}
    for workers in (0, 2):
        stores[workers] = open_store(tmp_path / f"w{workers}", extractor)
        extract_to_store(
            extractor,
            media,
            stores[workers],
            workers=workers,
            batch_segments=4,
            progress=False,
            failures_path=tmp_path / f"failures{workers}.tsv",
        )
    assert stores[0].ids() == stores[2].ids() == list(media)
    for vid in media:
        np.testing.assert_array_equal(stores[0].get(vid), stores[2].get(vid))
        assert stores[0].meta(vid) == stores[2].meta(vid)
    assert (tmp_path / "failures2.tsv").read_text() == "video_id\tpath\treason\n"


def test_store_of_another_extractor_is_refused(tmp_path: Path, extractor: Extractor, media: dict[str, str]) -> None:
    store = FeatureStore(tmp_path / "s", {**extractor.signature, "time_step_ms": 125})
    with pytest.raises(StoreError, match="time_step_ms"):
        extract_to_store(extractor, media, store, workers=0, progress=False)
    assert len(store) == 0 and not (tmp_path / "s" / "failures.tsv").exists()
    readonly = FeatureStore(tmp_path / "s", readonly=True)
    with pytest.raises(StoreError, match="read-only"):
        extract_to_store(extractor, media, readonly, workers=0, progress=False)


@pytest.mark.gpu
def test_amp_descriptors_close_to_float32(tmp_path: Path, media: dict[str, str]) -> None:
    gpu = make_extractor("cuda")
    full = open_store(tmp_path / "fp32", gpu)
    half = open_store(tmp_path / "amp", gpu)
    extract_to_store(gpu, media, full, workers=0, batch_segments=4, progress=False)
    extract_to_store(gpu, media, half, workers=0, batch_segments=4, amp=True, progress=False)
    for vid in media:
        a, b = full.get(vid), half.get(vid)
        cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert cosine.min() > 0.999
        assert not np.array_equal(a, b)  # autocast did run in float16
