"""Restarts, switches, re-SVDs and refactorisations keep the function; optimizer state is edited as documented."""

import pytest
import torch

from rankwise.reparam.optim_state import moment_tensors, prune_state

from .common import build, logits, optimizer, train


def test_relora_restart_merges_reinitialises_prunes_and_keeps_function():
    model, schedule = build("relora", restart_every=2, prune="reset")
    opt = optimizer(model)
    train(model, schedule, opt, 0, 1)
    # step 1 by hand, to look at the model right before and after its restart
    x = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(101))
    model(input_ids=x, labels=x).loss.backward()
    opt.step()
    layer, adapter = schedule.pairs[0]
    expect = layer.weight.detach() + adapter.delta.delta_matrix().detach()
    before = logits(model)
    schedule.after_step(1, opt)
    assert schedule.restarts == 1
    torch.testing.assert_close(layer.weight.detach(), expect, rtol=1e-6, atol=1e-7)   # W0 += s·B·A
    torch.testing.assert_close(logits(model), before, rtol=1e-5, atol=1e-5)
    a, b = adapter.delta.lora_A, adapter.delta.lora_B
    assert torch.count_nonzero(b) == 0 and torch.count_nonzero(a) == a.numel()   # A re-drawn: not the 0·0 quirk
    assert all(torch.count_nonzero(t) == 0 for t in moment_tensors(opt, a) + moment_tensors(opt, b))
    train(model, schedule, opt, 2, 3)
    assert torch.count_nonzero(b) > 0                                            # trains right after the restart


def test_relora_jagged_lr():
    _, schedule = build("relora", restart_every=10, restart_warmup=4)
    factors = [schedule.lr_factor(s) for s in range(8, 16)]
    assert factors == [1.0, 1.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("mode", ["random", "magnitude"])
def test_prune_fraction_one_mask_for_both_moments(mode):
    p = torch.nn.Parameter(torch.zeros(50, 40))
    opt = torch.optim.Adam([p])
    p.grad = torch.randn(50, 40)
    opt.step()
    m0, v0 = opt.state[p]["exp_avg"].clone(), opt.state[p]["exp_avg_sq"].clone()
    prune_state(opt, [p], mode, 0.9, torch.Generator().manual_seed(0))
    m, v = opt.state[p]["exp_avg"], opt.state[p]["exp_avg_sq"]
    kept = v != 0
    assert 0.05 < kept.float().mean().item() < 0.15
    assert torch.equal(m != 0, kept)                            # never m ≠ 0 where v = 0
    assert torch.equal(m[kept], m0[kept]) and torch.equal(v[kept], v0[kept])
    if mode == "magnitude":
        assert v[kept].min() >= v0.flatten().kthvalue(int(0.9 * v0.numel())).values


def test_switchlora_switches_keep_function_and_freeze_counterparts():
    model, schedule = build("switchlora", switch_every=1, freeze_steps=2)    # p = 1: every vector switches
    opt = optimizer(model)
    train(model, schedule, opt, 0, 1)
    layer, adapter = schedule.pairs[0]
    a, b = adapter.delta.lora_A, adapter.delta.lora_B
    x = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(7))
    model(input_ids=x, labels=x).loss.backward()
    opt.step()
    before, a_old, b_old = logits(model), a.detach().clone(), b.detach().clone()
    schedule.after_step(1, opt)
    torch.testing.assert_close(logits(model), before, rtol=1e-5, atol=1e-5)
    assert not torch.equal(a, a_old) and not torch.equal(b, b_old)
    assert all(torch.count_nonzero(t) == 0 for t in moment_tensors(opt, a) + moment_tensors(opt, b))
    assert bool((schedule.frozen_a[0] == 2).all()) and bool((schedule.frozen_b[0] == 2).all())
    # frozen vectors do not move on the next step
    schedule.interval = 10 ** 9                                                  # no more switches
    a_now, b_now = a.detach().clone(), b.detach().clone()
    train(model, schedule, opt, 2, 3)
    assert torch.equal(a, a_now) and torch.equal(b, b_now)


def test_switchlora_probability_decays_to_a_third():
    _, schedule = build("switchlora", switch_every=10, switch_decay_steps=100)
    assert schedule.probability(0) == pytest.approx(0.1)
    assert schedule.probability(100) == pytest.approx(0.1 / 3)


def test_sst_trains_only_sampled_pairs_and_resvd_keeps_function():
    model, schedule = build("sst", rank=3, sample_every=2, restart_every=3)
    opt = optimizer(model)
    layer = schedule.layers[0]
    u0, v0, s0 = layer.U.detach().clone(), layer.V.detach().clone(), layer.sigma.detach().clone()
    active = layer.active.clone()
    assert int(active.sum()) == 3
    train(model, schedule, opt, 0, 1)
    assert torch.equal(layer.U[:, ~active], u0[:, ~active]) and torch.equal(layer.V[:, ~active], v0[:, ~active])
    assert not torch.equal(layer.U[:, active], u0[:, active]) and not torch.equal(layer.sigma, s0)
    train(model, schedule, opt, 1, 2)
    x = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(8))
    model(input_ids=x, labels=x).loss.backward()
    schedule.before_step(2)
    opt.step()
    before, w = logits(model), layer.dense_weight().detach().clone()
    schedule.after_step(2, opt)                                                  # re-SVD
    torch.testing.assert_close(layer.dense_weight(), w, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits(model), before, rtol=1e-4, atol=1e-5)
    eye = torch.eye(layer.U.shape[1])
    torch.testing.assert_close(layer.U.t() @ layer.U, eye, rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", ["low-rank", "sltrain", "lost", "relora"])
def test_refactorisation_keeps_function_and_resets_moments(method):
    model, schedule = build(method, refactor_every=2, refactor_warmup=2, restart_every=1000)
    opt = optimizer(model)
    train(model, schedule, opt, 0, 1)
    x = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(9))
    model(input_ids=x, labels=x).loss.backward()
    opt.step()
    before = logits(model)
    schedule.after_step(1, opt)
    torch.testing.assert_close(logits(model), before, rtol=1e-4, atol=1e-5)
    refactor = schedule.schedules[1]
    b, a = refactor.pairs[0]
    torch.testing.assert_close(b.t() @ b, a @ a.t(), rtol=1e-4, atol=1e-5)
    assert all(torch.count_nonzero(t) == 0 for t in moment_tensors(opt, a) + moment_tensors(opt, b))
    assert [schedule.lr_factor(s) for s in (1, 2, 3, 4)] == [1.0, 0.5, 1.0, 0.5]
