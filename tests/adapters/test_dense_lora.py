"""DenseLoRA: shared encoder/decoder per projection type, a dense r×r matrix per layer, not mergeable."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rankwise
from tests.helpers import fit, perturb


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.q = nn.Linear(16, 16)
        self.up = nn.Linear(16, 24)

    def forward(self, x):
        return x + self.up(torch.tanh(self.q(x)))[..., :16]


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(Block(), Block())


def adapt(model=None):
    model = make_model() if model is None else model
    return rankwise.adapt(model, rankwise.method_config("dense-lora", rank=4, alpha=8, targets=["q", "up"]))


def test_encoder_decoder_shared_per_projection_type_and_parameter_count():
    model = adapt()
    q0, q1, up0 = (model[0].q.rankwise["default"].delta, model[1].q.rankwise["default"].delta,
                   model[0].up.rankwise["default"].delta)
    assert q0.dense_E is q1.dense_E and q0.dense_D is q1.dense_D and q0.dense_E is not up0.dense_E
    assert q0.dense_M is not q1.dense_M
    n = sum(p.numel() for p in rankwise.trainable_parameters(model))
    assert n == 4 * (16 + 16) + 4 * (16 + 24) + 4 * 4 * 4  # one (E, D) per group + r² per layer


def test_forward_matches_formula_and_starts_at_base():
    base = make_model()
    x = torch.randn(3, 16)
    y0 = base(x)
    model = adapt(base)
    torch.testing.assert_close(model(x), y0)
    perturb(model, std=0.3)
    layer = model[0].up
    d = layer.rankwise["default"].delta
    h = torch.randn(5, 16)
    ref = F.linear(h, layer.weight, layer.bias) + d.scale * F.gelu(F.gelu(h @ d.dense_E.t()) @ d.dense_M.t()
                                                                    @ d.dense_D.t())
    torch.testing.assert_close(layer(h), ref)


def test_merge_is_refused_before_any_change():
    model = adapt()
    perturb(model, std=0.3)
    w = model[0].q.weight.detach().clone()
    with pytest.raises(rankwise.AdapterStateError, match="not linear"):
        rankwise.merge(model)
    with pytest.raises(rankwise.AdapterStateError, match="not linear"):
        rankwise.merge_and_unload(model)
    assert torch.equal(model[0].q.weight, w) and rankwise.adapter_names(model) == ["default"]


def test_round_trip_keeps_sharing(tmp_path):
    model = adapt()
    perturb(model, std=0.3)
    x = torch.randn(3, 16)
    y = model(x)
    rankwise.save_adapter(model, tmp_path)
    fresh = rankwise.load_adapter(make_model(), tmp_path)
    torch.testing.assert_close(fresh(x), y)
    assert fresh[0].q.rankwise["default"].delta.dense_E is fresh[1].q.rankwise["default"].delta.dense_E


def test_a_few_steps_reduce_the_loss():
    teacher = adapt()
    perturb(teacher, std=0.3)
    x = torch.randn(32, 16, generator=torch.Generator().manual_seed(1))
    target = teacher(x).detach()
    model = adapt()
    losses = fit(model, x, target)
    assert losses[-1] < 0.7 * losses[0], losses
