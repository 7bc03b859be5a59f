"""LIFT: principal-weight masks against a plain SVD, sparse updates, refresh, save/load, resume."""

import copy

import pytest
import torch
from torch import nn

import rankwise
from rankwise.sparse import LIFTConfig, lift, load_lift, principal_mask_indices, save_lift


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 4))


def _data():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(64, 12, generator=g)
    return x, torch.sin(x[:, :4] * 2)


def _run(net, sched, opt, steps, start=0):
    x, y = _data()
    for step in range(start, start + steps):
        ((net(x) - y) ** 2).mean().backward()
        sched.before_step(step)
        opt.step()
        sched.after_step(step, opt)
        opt.zero_grad()


def test_mask_is_top_entries_of_the_rank_k_approximation():
    w = torch.randn(9, 7, generator=torch.Generator().manual_seed(1))
    u, s, vh = torch.linalg.svd(w)
    wk = u[:, :3] @ torch.diag(s[:3]) @ vh[:3]
    expected = set(wk.abs().flatten().argsort(descending=True)[:10].tolist())
    assert set(principal_mask_indices(w, 3, 10).tolist()) == expected


def test_only_principal_entries_train_loss_drops_and_save_load(tmp_path):
    net = _net()
    w0 = [m.weight.detach().clone() for m in (net[0], net[2])]
    cfg = rankwise.method_config("lift", rank=1, approx_rank=2, refresh_every=0, targets=nn.Linear)
    sched = rankwise.get_method("lift").schedule(net, cfg, 30)
    assert sum(p.numel() for p in rankwise.trainable_parameters(net)) == 16 * 12 + 4 * 16  # dense W grads
    x, y = _data()
    start = ((net(x) - y) ** 2).mean().item()
    opt = torch.optim.Adam(rankwise.trainable_parameters(net), lr=1e-2)
    _run(net, sched, opt, 30)
    assert ((net(x) - y) ** 2).mean().item() < 0.9 * start
    for layer, w in zip(sched.layers, w0, strict=True):
        changed = (layer.weight.detach() != w).flatten().nonzero().view(-1)
        assert set(changed.tolist()) <= set(layer.idx.tolist())
        assert len(layer.idx) == 1 * sum(w.shape)
    save_lift(sched, tmp_path)
    fresh = load_lift(_net(), tmp_path)
    torch.testing.assert_close(fresh(x), net(x), atol=1e-6, rtol=1e-6)


def test_refresh_keeps_moments_only_on_the_new_mask_and_resume_is_exact():
    cfg = LIFTConfig(rank=1, approx_rank=2, refresh_every=5, targets=nn.Linear)
    net = _net()
    sched = lift(net, cfg)
    opt = torch.optim.Adam(rankwise.trainable_parameters(net), lr=5e-2)
    _run(net, sched, opt, 5)  # refresh after step 4
    for layer in sched.layers:
        st = opt.state[layer.weight]
        outside = torch.ones(layer.weight.numel(), dtype=torch.bool)
        outside[layer.idx] = False
        assert torch.all(st["exp_avg"].flatten()[outside] == 0)
    state, snap, ostate = copy.deepcopy(sched.state_dict()), copy.deepcopy(net.state_dict()), \
        copy.deepcopy(opt.state_dict())
    _run(net, sched, opt, 7, start=5)
    net2 = _net()
    sched2 = lift(net2, cfg)
    net2.load_state_dict(snap)
    sched2.load_state_dict(state)
    opt2 = torch.optim.Adam(rankwise.trainable_parameters(net2), lr=5e-2)
    opt2.load_state_dict(ostate)
    _run(net2, sched2, opt2, 7, start=5)
    for a, b in zip(net.parameters(), net2.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_weight_decay_is_refused():
    net = _net()
    sched = lift(net, LIFTConfig(rank=1, targets=nn.Linear))
    opt = torch.optim.AdamW(rankwise.trainable_parameters(net), lr=1e-2, weight_decay=0.1)
    with pytest.raises(rankwise.ConfigError, match="weight_decay"):
        _run(net, sched, opt, 1)
