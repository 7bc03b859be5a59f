"""Property tests: random configs on random models either raise a rankwise error and leave the model
exactly as it was, or adapt it so that it starts at the base model and merges losslessly."""

import copy

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import rankwise


class MLP(nn.Module):
    def __init__(self, widths):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.head = nn.Linear(widths[-1], 3)

    def forward(self, x):
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return self.head(x)


target_choices = st.sampled_from([
    "all-linear", ["layers.0"], ["head"], ["layers.1", "head"], r"layers\.\d+", ["nope"], [nn.Linear], ["layers"],
    [nn.LayerNorm], "xyz\\d",
])


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(widths=st.lists(st.integers(1, 12), min_size=2, max_size=4), rank=st.integers(1, 14),
       alpha=st.floats(0.5, 64), targets=target_choices, init=st.sampled_from(["default", "gaussian", "pissa", "olora",
                                                                               "milora"]),
       dora=st.booleans(), rslora=st.booleans(), seed=st.integers(0, 2**16))
def test_random_configs_never_corrupt_a_model(widths, rank, alpha, targets, init, dora, rslora, seed):
    torch.manual_seed(seed)
    model = MLP(widths).double().eval()  # float64: large α·‖BA‖ would make fp32 rounding the thing under test
    x = torch.randn(5, widths[0], dtype=torch.float64)
    ref = model(x).detach()
    state = copy.deepcopy(model.state_dict())
    try:
        cfg = rankwise.LoRAConfig(rank=rank, alpha=alpha, targets=targets, init=init, dora=dora, rslora=rslora)
        rankwise.adapt(model, cfg)
    except rankwise.RankwiseError as e:
        assert str(e)  # a message naming the culprit
        assert model.state_dict().keys() == state.keys()
        assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
        assert all(p.requires_grad for p in model.parameters())
        return
    torch.testing.assert_close(model(x), ref, atol=1e-9, rtol=1e-9)
    with torch.no_grad():
        for p in rankwise.trainable_parameters(model):
            p.add_(0.1 * torch.randn_like(p))
    out = model(x).detach()
    rankwise.merge(model)
    torch.testing.assert_close(model(x), out, atol=1e-9, rtol=1e-9)
    rankwise.unload(model)
    torch.testing.assert_close(model(x), ref, atol=1e-9, rtol=1e-9)
    for k, v in state.items():
        torch.testing.assert_close(model.state_dict()[k], v, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("bad", [None, 3, "lora", object()])
def test_adapt_rejects_non_configs(bad):
    with pytest.raises(rankwise.ConfigError):
        rankwise.adapt(MLP([3, 3]), bad)
