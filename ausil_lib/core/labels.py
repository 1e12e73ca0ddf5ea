"""Names and id rules a reader sees, defined once for the corpus, the datasets, training, the CLI and
the reports: a label or an id spelt two ways would silently split one set of videos into two."""

from __future__ import annotations

import re

# Labels of an annotation file, {query: {label: [video ids]}}
DA = "DA"  # duplicate audio: the relevant videos of every audio task
JUNK = "JUNK"  # left out of the query's ranking: neither relevant nor a negative

# `--model released`: the authors' checkpoint pinned in params.yaml `release`
RELEASED_MODEL = "released"
RELEASED_RUN = "ausil-released"
RELEASED_LABEL = "AuSiL, authors' released model (AudioSet backbone, VCDB-trained)"
NOT_AVAILABLE = "not available: run `ausil fetch-weights`"

# the baselines' method names (`ausil baseline-similarity --method`, `ausil baseline-locate --method`, datasets.methods)
BASELINES = ("dejavu", "spectro-slides", "spectro-tiles")

_SPEED_MARK = "_x"
_FACTOR = re.compile(r"\d+(?:\.\d+)?")


def speed_copy_id(video_id: str, factor: float) -> str:
    """Id of the copy of `video_id` re-rendered at speed `factor` (the paper's speed protocol):
    `<id>_x<factor>`, in the embedded corpus and the real datasets alike."""
    return f"{video_id}{_SPEED_MARK}{factor:g}"


def speed_copy_of(copy_id: str) -> tuple[str, float] | None:
    """(video id, factor) of a speed copy's id; None for an id that is not one."""
    video_id, mark, factor = copy_id.rpartition(_SPEED_MARK)
    if mark and video_id and _FACTOR.fullmatch(factor):
        return video_id, float(factor)
    return None
