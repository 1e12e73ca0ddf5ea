"""scripts/backbone_probe.py: a dotted --set key overrides that params.yaml section, and only that key."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from ausil_lib.core.config import load_params
from ausil_lib.features.logmel import FeatureConfig

from . import load_script

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


_probe = partial(load_script, "backbone_probe")


@pytest.mark.parametrize("step_ms", [250, 500])
def test_feature_override_reaches_the_extractor_config(step_ms: int) -> None:
    params = load_params(PARAMS)
    changed = _probe().with_sections(params, {"features.time_step_ms": step_ms})
    assert FeatureConfig.from_params(changed).time_step_ms == step_ms
    assert changed.features.window_s == params.features.window_s  # the rest of the section kept
    assert changed.backbone_training == params.backbone_training


def test_unknown_key_fails_by_name() -> None:
    with pytest.raises(TypeError, match="time_step"):
        _probe().with_sections(load_params(PARAMS), {"features.time_step": 250})
