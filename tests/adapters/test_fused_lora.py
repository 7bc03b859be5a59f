"""The fused LoRA linear path against the plain path (base forward + factored add), its reference."""

import copy
import io
import pickle

import pytest
import torch
from torch import nn

import rankwise
from rankwise.core.host import AdaptedForward
from tests.helpers import perturb


def layers():
    from transformers.pytorch_utils import Conv1D
    return {"linear": lambda: nn.Linear(24, 16), "linear-nobias": lambda: nn.Linear(24, 16, bias=False),
            "conv1d": lambda: Conv1D(16, 24)}


def plain_path(layer, x):
    """Reference: the layer class's own forward, then every active adapter's add_delta."""
    return layer.rankwise.run(layer, x, type(layer).forward(layer, x))


@pytest.mark.parametrize("kind", ["linear", "linear-nobias", "conv1d"])
@pytest.mark.parametrize("shape", [(7, 24), (3, 5, 24)])
@pytest.mark.parametrize("x_grad", [True, False])
def test_fused_matches_plain_outputs_and_grads(kind, shape, x_grad):
    pytest.importorskip("transformers")
    layer = layers()[kind]()
    rankwise.adapt(nn.Sequential(layer), rankwise.LoRAConfig(rank=4, alpha=7, targets=type(layer)))
    perturb(nn.Sequential(layer))
    adapter = layer.rankwise["default"]
    x = torch.randn(*shape)
    x1, x2 = x.clone().requires_grad_(x_grad), x.clone().requires_grad_(x_grad)
    assert adapter.fused_forward(layer, x1) is not None  # the fast path is really taken
    y_fast = layer(x1)
    assert type(y_fast.grad_fn).__name__ == "FusedLoRALinearBackward"
    grads_fast = torch.autograd.grad(y_fast.square().sum(), [adapter.delta.lora_A, adapter.delta.lora_B]
                                     + ([x1] if x_grad else []))
    y_ref = plain_path(layer, x2)
    grads_ref = torch.autograd.grad(y_ref.square().sum(), [adapter.delta.lora_A, adapter.delta.lora_B]
                                    + ([x2] if x_grad else []))
    torch.testing.assert_close(y_fast, y_ref, atol=1e-5, rtol=1e-5)
    for gf, gr in zip(grads_fast, grads_ref, strict=True):
        torch.testing.assert_close(gf, gr, atol=1e-5, rtol=1e-4)


def test_plain_path_used_when_fused_is_not_applicable():
    layer = nn.Linear(8, 8)
    model = nn.Sequential(layer)
    rankwise.adapt(model, rankwise.LoRAConfig(rank=2, targets=nn.Linear, dropout=0.2))
    model.train()
    assert layer.rankwise["default"].fused_forward(layer, torch.randn(2, 8)) is None  # dropout active
    model.eval()
    assert layer.rankwise["default"].fused_forward(layer, torch.randn(2, 8)) is not None
    layer.weight.requires_grad_(True)  # a user who trains W0 too gets the plain path
    assert layer.rankwise["default"].fused_forward(layer, torch.randn(2, 8)) is None


def test_forward_override_survives_deepcopy_pickle_and_is_removed_on_unload():
    model = nn.Sequential(nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 3))
    rankwise.adapt(model, rankwise.LoRAConfig(rank=2, targets=nn.Linear))
    perturb(model)
    x = torch.randn(4, 6)
    out = model(x)
    clone = copy.deepcopy(model)
    assert clone[0].forward.module is clone[0]
    torch.testing.assert_close(clone(x), out)
    buf = io.BytesIO()
    torch.save(model, buf)  # full-model pickling (trusted files only) still works
    buf.seek(0)
    restored = torch.load(buf, weights_only=False)
    torch.testing.assert_close(restored(x), out)
    assert pickle.loads(pickle.dumps(model))[2].forward.module is not None
    rankwise.unload(model)
    assert "forward" not in model[0].__dict__ and not hasattr(model[0], "rankwise")


def test_existing_instance_forward_override_is_kept_and_restored():
    layer = nn.Linear(4, 4)
    calls = []

    def wrapped(x):
        calls.append(1)
        return type(layer).forward(layer, x)

    layer.forward = wrapped  # what accelerate's hooks do
    model = nn.Sequential(layer)
    rankwise.adapt(model, rankwise.LoRAConfig(rank=2, targets=nn.Linear))
    assert isinstance(layer.forward, AdaptedForward) and layer.forward.previous is wrapped
    model(torch.randn(2, 4))
    assert calls == [1]  # the previous override still runs (plain path)
    rankwise.merge_and_unload(model)
    assert layer.forward is wrapped


@pytest.mark.parametrize("kind", ["linear", "linear-nobias", "conv1d"])
def test_fused_dora_matches_plain_dora(kind):
    pytest.importorskip("transformers")
    layer = layers()[kind]()
    rankwise.adapt(nn.Sequential(layer), rankwise.LoRAConfig(rank=3, alpha=5, targets=type(layer), dora=True))
    perturb(nn.Sequential(layer), std=0.3)
    adapter = layer.rankwise["default"]
    params = [adapter.delta.lora_A, adapter.delta.lora_B, adapter.wrapper.magnitude]
    x = torch.randn(3, 5, 24)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y_fast = layer(x1)
    assert type(y_fast.grad_fn).__name__ == "FusedDoRALinearBackward"
    grads_fast = torch.autograd.grad(y_fast.square().sum(), params + [x1])
    y_ref = plain_path(layer, x2)
    grads_ref = torch.autograd.grad(y_ref.square().sum(), params + [x2])
    torch.testing.assert_close(y_fast, y_ref, atol=1e-5, rtol=1e-5)
    for gf, gr in zip(grads_fast, grads_ref, strict=True):
        torch.testing.assert_close(gf, gr, atol=1e-5, rtol=1e-4)
