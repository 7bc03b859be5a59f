"""LoRA's fused forward against a plain-PyTorch reference, on every layer type."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rankwise
from tests.helpers import perturb


def reference_forward(layer: nn.Module, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, s: float):
    """y = W0·x + b + s·(B·A)·x with ΔW formed explicitly in the layer's weight layout."""
    if isinstance(layer, nn.Linear):
        return F.linear(x, layer.weight + s * b @ a, layer.bias)
    if isinstance(layer, nn.Embedding):
        return F.embedding(x, layer.weight + s * (b @ a).t())
    if isinstance(layer, nn.Conv2d):
        w = layer.weight + s * (b @ a).reshape(layer.weight.shape)
        return F.conv2d(x, w, layer.bias, layer.stride, layer.padding, layer.dilation)
    w = layer.weight + s * (b @ a).t()  # transformers Conv1D stores (in, out)
    return x @ w + layer.bias


def make_layer(kind: str):
    if kind == "linear":
        return nn.Linear(24, 16), torch.randn(3, 5, 24)
    if kind == "embedding":
        return nn.Embedding(30, 16), torch.randint(0, 30, (3, 5))
    if kind == "conv2d":
        return nn.Conv2d(4, 16, 3, stride=2, padding=1), torch.randn(2, 4, 9, 9)
    from transformers.pytorch_utils import Conv1D
    return Conv1D(16, 24), torch.randn(3, 5, 24)


@pytest.mark.parametrize("kind", ["linear", "embedding", "conv2d", "conv1d"])
def test_fused_forward_and_grads_match_reference(kind):
    layer, x = make_layer(kind)
    model = nn.Sequential(layer)
    rankwise.adapt(model, rankwise.LoRAConfig(rank=3, alpha=5, targets=type(layer)))
    perturb(model)
    delta = layer.rankwise["default"].delta
    if x.is_floating_point():
        x.requires_grad_(True)
    y = model(x)
    a = delta.lora_A.detach().clone().requires_grad_(True)
    b = delta.lora_B.detach().clone().requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(x.is_floating_point())
    y_ref = reference_forward(layer, x_ref, a, b, delta.scale)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    (y_ref * g).sum().backward()
    torch.testing.assert_close(delta.lora_A.grad, a.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(delta.lora_B.grad, b.grad, atol=1e-5, rtol=1e-4)
    if x.is_floating_point():
        torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-5, rtol=1e-4)
    assert layer.weight.grad is None  # the base stays frozen


def test_delta_weight_matches_merged_minus_base():
    layer = nn.Linear(8, 6)
    rankwise.adapt(nn.Sequential(layer), rankwise.LoRAConfig(rank=2, alpha=3, targets=nn.Linear, rslora=True))
    adapter = layer.rankwise["default"]
    with torch.no_grad():
        adapter.delta.lora_B.normal_()
    expected = (3 / 2**0.5) * adapter.delta.lora_B @ adapter.delta.lora_A
    torch.testing.assert_close(adapter.delta_weight(layer.weight), expected.detach())


def test_dropout_only_touches_the_adapter_path():
    layer = nn.Linear(16, 16)
    model = nn.Sequential(layer)
    rankwise.adapt(model, rankwise.LoRAConfig(rank=2, targets=nn.Linear, dropout=0.5))
    x = torch.randn(4, 16)
    base = layer.weight @ x.t()
    model.train()
    torch.testing.assert_close(model(x), (base.t() + layer.bias))  # B = 0: no effect even with dropout
    perturb(model)
    model.eval()
    y1, y2 = model(x), model(x)
    assert torch.equal(y1, y2)  # dropout off in eval
