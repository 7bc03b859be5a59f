"""LoRA-Pro, AltLoRA and ALLoRA against brute-force least squares and plain-PyTorch formulas."""

import copy

import pytest
import torch
from torch import nn

import rankwise
from rankwise.optim.allora import ALLoRARule
from rankwise.optim.altlora import AltLoRARule, altlora_grad
from rankwise.optim.lora_pro import LoRAProRule, lora_pro_grads, solve_sylvester_sym


def _factors(m=6, n=5, r=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(r, n, generator=g, dtype=torch.float64)
    b = torch.randn(m, r, generator=g, dtype=torch.float64)
    full = torch.randn(m, n, generator=g, dtype=torch.float64)
    return a, b, full


def _lift_map(a, b, s):
    """The linear map (vec gA′, vec gB′) -> vec(s·(B·gA′ + gB′·A)) as a dense matrix (brute force)."""
    r, n = a.shape
    m = b.shape[0]
    cols = []
    for k in range(r * n + m * r):
        z = torch.zeros(r * n + m * r, dtype=a.dtype)
        z[k] = 1
        ga, gb = z[: r * n].view(r, n), z[r * n:].view(m, r)
        cols.append((s * (b @ ga + gb @ a)).reshape(-1))
    return torch.stack(cols, 1)


def test_sylvester_solver():
    g = torch.Generator().manual_seed(0)
    p = torch.randn(3, 3, generator=g, dtype=torch.float64)
    q = torch.randn(4, 4, generator=g, dtype=torch.float64)
    p, q = p @ p.t() + 0.1 * torch.eye(3, dtype=p.dtype), q @ q.t()
    c = torch.randn(3, 4, generator=g, dtype=torch.float64)
    x = solve_sylvester_sym(p, q, c)
    torch.testing.assert_close(p @ x + x @ q, c)


@pytest.mark.parametrize("s", [1.0, 2.5])
def test_lora_pro_equals_brute_force_least_squares(s):
    a, b, full = _factors()
    ga, gb = s * b.t() @ full, s * full @ a.t()  # what backward gives the factors
    ga2, gb2 = lora_pro_grads(a, b, ga, gb, s, ridge=0.0)
    m_ = _lift_map(a, b, s)
    z0 = torch.cat([ga.reshape(-1), gb.reshape(-1)])
    z_ls = torch.linalg.lstsq(m_, full.reshape(-1), driver="gelsd").solution
    fitted = m_ @ z_ls
    # 1) the equivalent gradient is the best low-rank match of the full gradient
    torch.testing.assert_close(s * (b @ ga2 + gb2 @ a), fitted.view_as(full), atol=1e-9, rtol=1e-9)
    # 2) among all minimisers, the one closest to the raw gradients: z0 − M⁺(M·z0 − fitted)
    z_best = z0 - torch.linalg.pinv(m_) @ (m_ @ z0 - fitted)
    torch.testing.assert_close(torch.cat([ga2.reshape(-1), gb2.reshape(-1)]), z_best, atol=1e-8, rtol=1e-8)


def _net(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
    rankwise.adapt(net, rankwise.LoRAConfig(rank=2, alpha=4, targets=nn.Linear))
    return net


def _data():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(64, 8, generator=g)
    return x, torch.sin(x[:, :4] * 2)


def _loss(net, x, y):
    return ((net(x) - y) ** 2).mean()


def test_lora_pro_rule_rewrites_grads_and_wrapper_matches():
    net = _net()
    x, y = _data()
    net2 = copy.deepcopy(net)
    _loss(net, x, y).backward()
    raw = {id(p): p.grad.clone() for p in rankwise.trainable_parameters(net)}
    LoRAProRule(net).before_step(0)
    d = net[0].rankwise["default"].delta
    ga, gb = lora_pro_grads(d.lora_A, d.lora_B, raw[id(d.lora_A)], raw[id(d.lora_B)], d.scale)
    torch.testing.assert_close(d.lora_A.grad, ga)
    torch.testing.assert_close(d.lora_B.grad, gb)
    # the optimizer wrapper = rule + plain SGD step
    opt = torch.optim.SGD(rankwise.trainable_parameters(net), lr=0.1)
    opt.step()
    wrapped = rankwise.optim.LoRAPro(torch.optim.SGD(rankwise.trainable_parameters(net2), lr=0.1), net2)
    _loss(net2, x, y).backward()
    wrapped.step()
    for p, q in zip(rankwise.trainable_parameters(net), rankwise.trainable_parameters(net2), strict=True):
        torch.testing.assert_close(p, q)


def test_altlora_projection_is_the_one_factor_least_squares_step():
    a, b, full = _factors(seed=1)
    s = 1.5
    gb2 = altlora_grad(a, b, s * full @ a.t(), s, "B", ridge=0.0)
    gb_ls = torch.linalg.lstsq((s * a).t(), full.t()).solution.t()  # argmin ‖s·gB′·A − G‖
    torch.testing.assert_close(gb2, gb_ls)
    ga2 = altlora_grad(a, b, s * b.t() @ full, s, "A", ridge=0.0)
    torch.testing.assert_close(ga2, torch.linalg.lstsq(s * b, full).solution)
    net = _net()
    x, y = _data()
    _loss(net, x, y).backward()
    rule = AltLoRARule(net)
    rule.before_step(0)  # step 0 moves B only
    d = net[0].rankwise["default"].delta
    assert d.lora_A.grad is None and d.lora_B.grad is not None


def test_allora_scales_rows_and_preset_drops_scale_and_dropout():
    cfg = rankwise.method_config("allora", rank=3)
    assert cfg.alpha == 3 and cfg.dropout == 0 and cfg.scale(3, cfg.alpha) == 1
    net = _net()
    x, y = _data()
    _loss(net, x, y).backward()
    d = net[0].rankwise["default"].delta
    raw = d.lora_A.grad.clone()
    ALLoRARule(net).before_step(0)
    expected = raw / torch.sqrt(d.lora_A.detach().square().sum(1, keepdim=True) + 1.0)
    torch.testing.assert_close(d.lora_A.grad, expected)


@pytest.mark.parametrize("wrap", ["LoRAPro", "AltLoRA", "ALLoRA"])
def test_rules_reduce_loss_and_resume_exactly(wrap):
    x, y = _data()
    make = getattr(rankwise.optim, wrap)
    net = _net()
    opt = make(torch.optim.AdamW(rankwise.trainable_parameters(net), lr=1e-2), net)
    start = _loss(net, x, y).item()
    for i in range(20):
        _loss(net, x, y).backward()
        opt.step()
        opt.zero_grad()
        if i == 9:
            state, snap = copy.deepcopy(opt.state_dict()), copy.deepcopy(net.state_dict())
    assert _loss(net, x, y).item() < 0.9 * start
    net2 = _net()
    net2.load_state_dict(snap)
    opt2 = make(torch.optim.AdamW(rankwise.trainable_parameters(net2), lr=1e-2), net2)
    opt2.load_state_dict(state)
    for _ in range(10):
        _loss(net2, x, y).backward()
        opt2.step()
        opt2.zero_grad()
    for p, q in zip(rankwise.trainable_parameters(net), rankwise.trainable_parameters(net2), strict=True):
        torch.testing.assert_close(p, q, atol=0, rtol=0)


def test_rules_refuse_models_without_ba_adapters():
    net = nn.Sequential(nn.Linear(4, 4))
    rankwise.adapt(net, rankwise.LoRAConfig(rank=2, dora=True, targets=nn.Linear))
    with pytest.raises(rankwise.ConfigError, match="LoRA-Pro"):
        LoRAProRule(net)
