"""SoRA (proximal L1 gates, pruning) and DyLoRA (nested ranks) against plain-PyTorch formulas."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rankwise
from rankwise.adapters.dylora import DyLoRASchedule
from rankwise.adapters.sora import SoRASchedule
from tests.helpers import perturb


def _net(method, **kw):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
    rankwise.adapt(net, rankwise.method_config(method, rank=4, alpha=8, targets=nn.Linear, **kw))
    return net


def _data():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(64, 8, generator=g)
    return x, torch.sin(x[:, :4] * 2)


def _train(net, sched, steps, lr=1e-2, opt=None):
    x, y = _data()
    opt = opt or torch.optim.AdamW(rankwise.trainable_parameters(net), lr=lr, weight_decay=0.0)
    for step in range(steps):
        loss = ((net(x) - y) ** 2).mean() + sched.loss_term()
        loss.backward()
        sched.before_step(step)
        opt.step()
        sched.after_step(step, opt)
        opt.zero_grad()
    return opt


def _loss(net):
    x, y = _data()
    with torch.no_grad():
        return ((net(x) - y) ** 2).mean().item()


# ---- SoRA ---------------------------------------------------------------------------------------
def test_sora_forward_count_and_merge():
    net = _net("sora")
    perturb(net)
    layer, d = net[0], net[0].rankwise["default"].delta
    x = torch.randn(3, 8)
    ref = F.linear(x, layer.weight + d.scale * (d.lora_B * d.gate) @ d.lora_A, layer.bias)
    torch.testing.assert_close(net[0](x), ref, atol=1e-6, rtol=1e-6)
    assert sum(p.numel() for p in layer.rankwise.parameters()) == 4 * (8 + 16) + 4
    y = net(x)
    rankwise.merge(net)
    torch.testing.assert_close(net(x), y, atol=1e-5, rtol=1e-5)


def test_sora_proximal_step_matches_soft_threshold():
    net = _net("sora", options={"sora_lambda": 0.5})
    sched = SoRASchedule(net, rankwise.adapter_config(net))
    d = net[0].rankwise["default"].delta
    x, y = _data()
    opt = torch.optim.SGD(rankwise.trainable_parameters(net), lr=0.1)
    ((net(x) - y) ** 2).mean().backward()
    expected = d.gate.detach() - 0.1 * d.gate.grad
    expected = torch.sign(expected) * (expected.abs() - 0.1 * 0.5).clamp_min(0)
    opt.step()
    sched.after_step(0, opt)
    torch.testing.assert_close(d.gate.detach(), expected)


def test_sora_trains_prunes_and_round_trips(tmp_path):
    net = _net("sora", options={"sora_lambda": 3.5})
    start = _loss(net)
    _train(net, SoRASchedule(net, rankwise.adapter_config(net)), 40)
    assert _loss(net) < 0.95 * start  # strong λ: it trains while whole components are switched off
    x = torch.randn(5, 8)
    y = net(x)
    ranks = rankwise.prune_gates(net)
    assert min(ranks.values()) < 4  # the L1 step zeroed some gates
    torch.testing.assert_close(net(x), y, atol=1e-6, rtol=1e-6)
    rankwise.save_adapter(net, tmp_path / "rw")
    rankwise.save_adapter(net, tmp_path / "peft", format="peft")  # folded into plain LoRA factors
    base = _net("lora")
    rankwise.unload(base)
    for folder in ("rw", "peft"):
        other = rankwise.load_adapter(copy.deepcopy(base), tmp_path / folder)
        torch.testing.assert_close(other(x), y, atol=1e-5, rtol=1e-5)
    loaded = rankwise.load_adapter(copy.deepcopy(base), tmp_path / "rw")
    assert rankwise.adapter_config(loaded).parameterisation == "sora"


# ---- DyLoRA -------------------------------------------------------------------------------------
def test_dylora_forward_at_each_rank_and_set_rank():
    net = _net("dylora")
    perturb(net)
    layer, d = net[0], net[0].rankwise["default"].delta
    x = torch.randn(3, 8)
    for b in (1, 3, 4):
        rankwise.set_rank(net, b)
        ref = F.linear(x, layer.weight + 8 / b * d.lora_B[:, :b] @ d.lora_A[:b], layer.bias)
        torch.testing.assert_close(layer(x), ref, atol=1e-6, rtol=1e-6)
    with pytest.raises(rankwise.ConfigError, match="rank must be"):
        rankwise.set_rank(net, 5)
    assert sum(p.numel() for p in layer.rankwise.parameters()) == 4 * (8 + 16)


def test_dylora_trains_every_rank_resumes_and_round_trips(tmp_path):
    net = _net("dylora")
    cfg = rankwise.adapter_config(net)
    before = {b: (rankwise.set_rank(net, b), _loss(net))[1] for b in (1, 2, 4)}
    sched = DyLoRASchedule(net, cfg)
    seen = set()
    net.train()
    opt = None
    for _ in range(6):
        seen.add(sched.rank)
        opt = _train(net, sched, 10, opt=opt)
    assert seen <= {1, 2, 3, 4} and len(seen) > 1
    state, snap = copy.deepcopy(sched.state_dict()), copy.deepcopy(net.state_dict())
    ranks = [sched.rank] + [(sched.after_step(0, None), sched.rank)[1] for _ in range(5)]
    sched2 = DyLoRASchedule(net, cfg)
    sched2.load_state_dict(state)
    assert [sched2.rank] + [(sched2.after_step(0, None), sched2.rank)[1] for _ in range(5)] == ranks
    net.load_state_dict(snap)
    net.eval()
    for b in (1, 2, 4):
        rankwise.set_rank(net, b)
        assert _loss(net) < before[b]
    rankwise.set_rank(net, 2)
    x = torch.randn(5, 8)
    y = net(x)
    rankwise.save_adapter(net, tmp_path / "rw")
    rankwise.save_adapter(net, tmp_path / "peft", format="peft")
    base = _net("lora")
    rankwise.unload(base)
    for folder in ("rw", "peft"):
        torch.testing.assert_close(rankwise.load_adapter(copy.deepcopy(base), tmp_path / folder)(x), y,
                                   atol=1e-5, rtol=1e-5)
    rankwise.merge(net)
    torch.testing.assert_close(net(x), y, atol=1e-5, rtol=1e-5)


def test_dylora_frozen_updates_only_the_drawn_component():
    net = _net("dylora", options={"dylora_frozen": True})
    sched = DyLoRASchedule(net, rankwise.adapter_config(net))
    while sched.rank < 2:
        sched.after_step(0, None)
    b = sched.rank
    net.train()
    x, y = _data()
    ((net(x) - y) ** 2).mean().backward()
    sched.before_step(0)
    d = net[2].rankwise["default"].delta
    assert torch.all(d.lora_A.grad[: b - 1] == 0) and torch.all(d.lora_A.grad[b:] == 0)
    assert d.lora_B.grad[:, b - 1].abs().sum() > 0
