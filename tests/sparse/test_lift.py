"""LIFT: principal-weight masks against a plain SVD, sparse updates, refresh, save/load, resume, modules_to_save."""

import copy
import json

import pytest
import torch
from torch import nn

import rankwise
from rankwise.sparse import LIFTAdamW, LIFTConfig, lift, load_lift, principal_mask_indices, save_lift


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


def test_weight_decay_is_fine_with_the_sparse_optimizer():
    net = _net()
    w0 = net[0].weight.detach().clone()
    sched = lift(net, LIFTConfig(rank=1, targets=nn.Linear))
    _run(net, sched, LIFTAdamW(rankwise.trainable_parameters(net), sched, lr=1e-2, weight_decay=0.1), 2)
    changed = (net[0].weight.detach() != w0).flatten().nonzero().view(-1)
    assert changed.numel() and set(changed.tolist()) <= set(sched.layers[0].idx.tolist())


def test_modules_to_save_train_in_full_and_round_trip(tmp_path):
    net = _net()
    head0 = net[2].weight.detach().clone()
    sched = lift(net, LIFTConfig(rank=1, approx_rank=2, refresh_every=3, targets="0", modules_to_save="2"))
    assert [n for n, p in net.named_parameters() if p.requires_grad] == ["0.weight", "2.weight", "2.bias"]
    assert sched.trainable_count() == (12 + 16) + 16 * 4 + 4
    _run(net, sched, LIFTAdamW(rankwise.trainable_parameters(net), sched, lr=1e-2, weight_decay=0.1), 8)
    assert not torch.equal(net[2].weight, head0)  # the head trained in full
    save_lift(sched, tmp_path)
    assert json.loads((tmp_path / "lift.json").read_text())["config"]["modules_to_save"] == ["2"]
    x, _ = _data()
    fresh = load_lift(_net(), tmp_path)
    torch.testing.assert_close(fresh(x), net(x), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(fresh[2].weight, net[2].weight, atol=0, rtol=0)


def test_load_refuses_a_model_whose_saved_module_differs_and_changes_nothing(tmp_path):
    net = _net()
    sched = lift(net, LIFTConfig(rank=1, targets="0", modules_to_save=["2"]))
    _run(net, sched, LIFTAdamW(rankwise.trainable_parameters(net), sched, lr=1e-2), 2)
    save_lift(sched, tmp_path)
    torch.manual_seed(0)
    other = nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 3))  # same layer "0", another head
    before = copy.deepcopy(other.state_dict())
    with pytest.raises(rankwise.AdapterFileError, match=r"'2\.(weight|bias)' has shape"):
        load_lift(other, tmp_path)
    for k, v in other.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_module_both_targeted_and_saved_is_refused_before_any_change():
    net = _net()
    with pytest.raises(rankwise.TargetError, match="modules_to_save and also adapted"):
        lift(net, LIFTConfig(rank=1, targets=nn.Linear, modules_to_save=["2"]))
    assert all(p.requires_grad for p in net.parameters())  # nothing frozen
    with pytest.raises(rankwise.ConfigError, match="modules_to_save"):
        LIFTConfig(modules_to_save=[""])
