"""DoRA against a plain-PyTorch reference written from the paper's formula."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rankwise
from tests.helpers import perturb


def dora_reference(w0, bias, a, b, magnitude, s, x):
    """y = m ⊙ (W0 + sBA)x / ‖W0 + sBA‖_row + bias, with the norm detached (DoRA §4.3)."""
    w = w0 + s * b @ a
    norm = torch.linalg.vector_norm(w, dim=1).detach()
    return F.linear(x, (magnitude / norm)[:, None] * w, bias)


@pytest.mark.parametrize("bias", [True, False])
def test_dora_forward_and_gradients_match_reference(bias):
    layer = nn.Linear(20, 12, bias=bias)
    model = nn.Sequential(layer)
    rankwise.adapt(model, rankwise.LoRAConfig(rank=3, alpha=6, targets=nn.Linear, dora=True))
    perturb(model, std=0.3)
    adapter = layer.rankwise["default"]
    x = torch.randn(5, 7, 20)
    y = model(x)
    params = [adapter.delta.lora_A, adapter.delta.lora_B, adapter.wrapper.magnitude]
    ref_params = [p.detach().clone().requires_grad_(True) for p in params]
    a, b, m = ref_params
    y_ref = dora_reference(layer.weight, layer.bias, a, b, m, adapter.delta.scale, x)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    (y_ref * g).sum().backward()
    for p, r in zip(params, ref_params, strict=True):
        torch.testing.assert_close(p.grad, r.grad, atol=1e-5, rtol=1e-4)


def test_dora_magnitude_starts_at_row_norms_and_output_at_base():
    layer = nn.Linear(10, 6)
    x = torch.randn(4, 10)
    ref = layer(x)
    rankwise.adapt(nn.Sequential(layer), rankwise.LoRAConfig(rank=2, targets=nn.Linear, dora=True))
    torch.testing.assert_close(layer.rankwise["default"].wrapper.magnitude.detach(), layer.weight.norm(dim=1).detach())
    torch.testing.assert_close(layer(x), ref)


def test_factored_row_norms_match_materialised():
    layer = nn.Linear(40, 30)
    rankwise.adapt(nn.Sequential(layer), rankwise.LoRAConfig(rank=5, alpha=7, targets=nn.Linear))
    delta = layer.rankwise["default"].delta
    with torch.no_grad():
        delta.lora_B.normal_()
    fast = delta.row_norms_with(layer.weight)
    slow = torch.linalg.vector_norm(layer.weight + delta.delta_matrix(), dim=1)
    torch.testing.assert_close(fast, slow.detach(), atol=1e-5, rtol=1e-5)


def test_fast_path_matches_general_path():
    """With one adapter and no dropout DoRA uses a fused path; stacking a second adapter uses the general one."""
    layer = nn.Linear(16, 8)
    model = nn.Sequential(layer)
    rankwise.adapt(model, rankwise.LoRAConfig(rank=2, targets=nn.Linear, dora=True), name="d")
    perturb(model)
    x = torch.randn(3, 16)
    fast = model(x)
    adapter = layer.rankwise["d"]
    base_out = layer.weight @ x.t()
    base_out = base_out.t() + layer.bias
    general = adapter.wrapper(adapter.delta, layer, x, x.clone(), base_out.clone(), base_out)
    torch.testing.assert_close(fast, general, atol=1e-6, rtol=1e-5)


def test_dora_with_dropout_uses_dropped_input_for_base_term():
    layer = nn.Linear(16, 8, bias=False)
    model = nn.Sequential(layer)
    rankwise.adapt(model, rankwise.LoRAConfig(rank=2, targets=nn.Linear, dora=True, dropout=0.5))
    perturb(model)
    adapter = layer.rankwise["default"]
    model.train()
    x = torch.randn(6, 16)
    torch.manual_seed(5)
    y = model(x)
    torch.manual_seed(5)
    xd = F.dropout(x, adapter.dropout, True)
    g = adapter.wrapper.magnitude / adapter.delta.row_norms_with(layer.weight)
    s = adapter.delta.scale
    lora = (xd @ adapter.delta.lora_A.t()) @ adapter.delta.lora_B.t()
    expected = F.linear(x, layer.weight) + (g - 1) * F.linear(xd, layer.weight) + g * s * lora
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)


def test_delta_weight_while_merged_does_not_break_unmerge():
    layer = nn.Linear(10, 6)
    model = nn.Sequential(layer)
    rankwise.adapt(model, rankwise.LoRAConfig(rank=2, targets=nn.Linear, dora=True))
    perturb(model)
    w0 = layer.weight.detach().clone()
    rankwise.merge(model)
    layer.rankwise["default"].delta_weight(layer.weight)  # analysis on the merged weight: no side effect
    rankwise.unmerge(model)
    torch.testing.assert_close(layer.weight.detach(), w0, atol=1e-6, rtol=0)
