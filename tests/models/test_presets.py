"""Presets build the advertised shapes; lm_loss matches a hand computation."""

import math

import pytest
import torch

from rankwise.errors import ConfigError
from rankwise.models import build_causal_lm, lm_loss


def test_preset_shapes_and_seed():
    a, b = build_causal_lm("llama-tiny", 300, seed=1), build_causal_lm("llama-tiny", 300, seed=1)
    assert a.config.hidden_size == 128 and a.config.num_hidden_layers == 4
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    with pytest.raises(ConfigError, match="llama-tiny"):
        build_causal_lm("llama-7b", 300)


def test_lm_loss_is_token_weighted_cross_entropy():
    model = build_causal_lm("llama-tiny", 300, seed=0)
    x = torch.randint(0, 300, (4, 12), generator=torch.Generator().manual_seed(0))
    ref = model(input_ids=x, labels=x).loss.item()  # HF's mean over the same shifted targets
    assert lm_loss(model, [x[:1], x[1:]]) == pytest.approx(ref, rel=1e-5)
    assert lm_loss(model, [x]) < math.log(300) + 1
