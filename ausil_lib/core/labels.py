"""Names a reader sees, defined once for the CLI, the pipeline stages and the reports."""

from __future__ import annotations

# `--model released`: the authors' checkpoint pinned in params.yaml `release`
RELEASED_MODEL = "released"
RELEASED_RUN = "ausil-released"
RELEASED_LABEL = "AuSiL, authors' released model (AudioSet backbone, VCDB-trained)"
NOT_AVAILABLE = "not available: run `ausil fetch-weights`"
