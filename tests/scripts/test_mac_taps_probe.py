"""scripts/mac_taps_probe.py slices the stored descriptor by layer: its columns must be that layer's MAC."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F

from ausil_lib.models.backbone import MAC_TAPS, KumarCNN

from . import load_script

_probe = partial(load_script, "mac_taps_probe")


@pytest.mark.parametrize("tap", ["layer1", "layer8", "layer14", "layer18"])
def test_columns_of_a_tap_are_its_mac(tap: str) -> None:
    probe = _probe()
    torch.manual_seed(0)
    model = KumarCNN().eval()
    x = torch.randn(2, 1, 128, 128)
    acts = {}
    for name in MAC_TAPS:
        getattr(model, name).register_forward_hook(lambda _m, _i, out, name=name: acts.__setitem__(name, out))
    with torch.no_grad():
        full = model.mac(x)
    own = F.normalize(F.normalize(acts[tap], p=2, dim=1).amax(dim=(2, 3)), p=2, dim=1)
    torch.testing.assert_close(full[:, probe.columns((tap,))], own)


def test_subsets_keep_the_descriptor_order() -> None:
    probe = _probe()
    cols = probe.columns(probe.SUBSETS["layer7-14"])
    assert cols.tolist() == sorted(cols.tolist()) and len(set(cols.tolist())) == cols.size
    assert probe.columns(probe.SUBSETS["all (paper)"]).tolist() == list(range(sum(probe.TAP_CHANNELS)))
