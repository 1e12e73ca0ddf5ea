"""scripts/ausil_data_curve.py: the similarity CNN's starting weights (--cnn-init) and the time step of --features."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F

from ausil_lib.models.ausil import AuSiL, SimilarityCNN

from . import load_script

_script = partial(load_script, "ausil_data_curve")


def test_identity_start_outputs_the_max_pooled_map() -> None:
    torch.manual_seed(0)
    cnn = SimilarityCNN()
    _script().initialise_cnn(cnn, "identity")
    sim = torch.rand(2, 17, 22) * 2 - 1  # cosine similarities: [-1, 1]
    with torch.no_grad():
        out = cnn(sim)
    # two 2x2 poolings drop an odd last row / column: 4x4 blocks of the first 16 x 20
    expected = F.max_pool2d(sim[:, None, :16, :20], 4).squeeze(1)
    assert torch.allclose(out, expected, atol=1e-6)


def test_glorot_start_has_zero_biases_and_kernels_within_the_bound() -> None:
    torch.manual_seed(0)
    cnn = SimilarityCNN()
    _script().initialise_cnn(cnn, "glorot")
    for conv in (cnn.conv1, cnn.conv2, cnn.conv3, cnn.fconv):
        k = conv.kernel_size[0] * conv.kernel_size[1]
        bound = (6.0 / (conv.in_channels * k + conv.out_channels * k)) ** 0.5
        assert torch.count_nonzero(conv.bias) == 0
        assert 0.5 * bound < float(conv.weight.detach().abs().max()) <= bound  # drawn across the range


def test_torch_start_is_the_pipelines_and_unknown_schemes_are_refused() -> None:
    script = _script()
    torch.manual_seed(0)
    built = AuSiL().state_dict()
    torch.manual_seed(0)
    model = script.initialised("torch")()
    assert all(torch.equal(built[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="cnn-init"):
        script.initialise_cnn(SimilarityCNN(), "he")


def test_the_training_builds_its_model_with_the_chosen_start() -> None:
    model = _script().initialised("identity")(variant="full")
    assert isinstance(model, AuSiL)
    head = model.cnn.fconv
    assert float(head.bias.detach()) == -1.0 and float(head.weight[0, 1:].detach().abs().sum()) == 0.0
