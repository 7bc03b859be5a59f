"""LoRA-Pro's AdamW and AltLoRA's optimizer against plain dense / least-squares references; resume; catalogue path.

The references never use the optimizers' code: they take the full gradient G = ∂L/∂W from a dense forward
pass (W = W0 + s·B·A as one m × n tensor) and run each paper's algorithm with m × n matrices, pinv and lstsq.
"""

import copy
import io

import pytest
import torch
from torch import nn

import rankwise
from rankwise.optim import AltLoRAOptimizer, LoRAProAdamW
from rankwise.optim.altlora_optimizer import NON_FACTOR_EPS
from rankwise.train import TrainConfig, prepare_method, train

RIDGE = 1e-14  # both sides; only keeps (BᵀB)⁻¹ finite at B = 0, where it multiplies exact zeros


def _layer(b_init: bool, seed: int = 0):
    """One fp64 Linear(5 → 6) with a rank-2 LoRA (s = 2.5); B random instead of 0 if ``b_init``."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(5, 6, bias=False)).double()
    rankwise.adapt(net, rankwise.LoRAConfig(rank=2, alpha=5, targets=nn.Linear))
    d = net[0].rankwise["default"].delta
    assert d.lora_A.dtype == torch.float64 and d.scale == 2.5
    if b_init:
        with torch.no_grad():
            d.lora_B.copy_(0.3 * torch.randn(d.lora_B.shape, generator=torch.Generator().manual_seed(7),
                                             dtype=torch.float64))
    g = torch.Generator().manual_seed(3)
    x = torch.randn(16, 5, generator=g, dtype=torch.float64)
    y = torch.randn(16, 6, generator=g, dtype=torch.float64)
    return net, d, x, y


def _dense_grad(w0, a, b, s, x, y):
    """G = ∂L/∂W at W = W0 + s·B·A, from a dense forward pass."""
    w = (w0 + s * b @ a).detach().requires_grad_(True)
    ((x @ w.t() - y) ** 2).mean().backward()
    return w.grad


def _ridge_inv(k):
    return torch.linalg.inv(k + RIDGE * torch.eye(k.shape[0], dtype=k.dtype))


def _lift_map(a, b, s):
    """(vec x, vec y) -> vec(s·(B·x + y·A)) as a dense (m·n) × (r·n + m·r) matrix."""
    r, n = a.shape
    m = b.shape[0]
    cols = []
    for k in range(r * n + m * r):
        z = torch.zeros(r * n + m * r, dtype=a.dtype)
        z[k] = 1
        cols.append((s * (b @ z[: r * n].view(r, n) + z[r * n:].view(m, r) @ a)).reshape(-1))
    return torch.stack(cols, 1)


def _lorapro_adamw_dense(w0, a, b, s, x, y, steps, lr, betas, eps, wd):
    """The paper's LoRA-Pro-with-AdamW, written with m × n matrices and brute-force least squares."""
    b1, b2 = betas
    m_, v_ = torch.zeros_like(w0), torch.zeros_like(w0)
    for t in range(1, steps + 1):
        g = _dense_grad(w0, a, b, s, x, y)
        pb = b @ _ridge_inv(b.t() @ b) @ b.t()                      # projector on col(B), m × m
        pa = a.t() @ _ridge_inv(a @ a.t()) @ a                      # projector on row(A), n × n
        geq = pb @ g + (torch.eye(w0.shape[0], dtype=g.dtype) - pb) @ g @ pa   # G on the tangent space
        m_ = b1 * m_ + (1 - b1) * geq
        v_ = b2 * v_ + (1 - b2) * geq ** 2
        d = (m_ / (1 - b1 ** t)) / (v_.sqrt() / (1 - b2 ** t) ** 0.5 + eps)
        # among the least-squares solutions of s·(B·uA + uB·A) ≈ D, the one nearest (s·BᵀD, s·D·Aᵀ)
        lift = _lift_map(a, b, s)
        z0 = torch.cat([(s * b.t() @ d).reshape(-1), (s * d @ a.t()).reshape(-1)])
        fitted = lift @ torch.linalg.lstsq(lift, d.reshape(-1), driver="gelsd").solution
        z = z0 - torch.linalg.pinv(lift) @ (lift @ z0 - fitted)
        ua, ub = z[: a.numel()].view_as(a), z[a.numel():].view_as(b)
        a, b = a * (1 - lr * wd) - lr * ua, b * (1 - lr * wd) - lr * ub
    return a, b


def _run(net, opt, x, y, steps):
    losses = []
    for _ in range(steps):
        loss = ((net(x) - y) ** 2).mean()
        losses.append(loss.item())
        loss.backward()
        opt.step()
        opt.zero_grad()
    return losses


@pytest.mark.parametrize("b_init,wd", [(False, 0.0), (True, 0.1)])
def test_lorapro_adamw_matches_dense_reference(b_init, wd):
    net, d, x, y = _layer(b_init)
    w0 = net[0].weight.detach().clone()
    a0, b0 = d.lora_A.detach().clone(), d.lora_B.detach().clone()
    opt = LoRAProAdamW(net, lr=0.05, betas=(0.9, 0.99), eps=1e-8, weight_decay=wd, ridge=RIDGE)
    _run(net, opt, x, y, 5)
    a_ref, b_ref = _lorapro_adamw_dense(w0, a0, b0, d.scale, x, y, 5, 0.05, (0.9, 0.99), 1e-8, wd)
    torch.testing.assert_close(d.lora_A.detach(), a_ref, atol=1e-9, rtol=1e-8)
    torch.testing.assert_close(d.lora_B.detach(), b_ref, atol=1e-9, rtol=1e-8)
    assert opt.state[d.lora_A]["exp_avg"].shape == (6, 5)   # the paper's m × n moments


def _altlora_dense(w0, a, b, s, x, y, steps, lr, beta1, wd):
    """AltLoRA (Algorithm 1) in W's space: Φ_A, Φ_B are the m × n momenta of the A and B half-steps.

    A half-step: Φ_A ← P_B·(β1·Φ_A + (1−β1)·G), the A step solves s·B·δA = Φ_A (least squares).
    B half-step (new A, the step's G): Φ_B ← β1·Φ_B·P_A + (1−β1)·G·Aᵀ_old(AAᵀ)⁻¹A, s·δB·A = Φ_B.
    """
    phi_a, phi_b = torch.zeros_like(w0), torch.zeros_like(w0)
    for t in range(1, steps + 1):
        g = _dense_grad(w0, a, b, s, x, y)
        phi_a = b @ _ridge_inv(b.t() @ b) @ b.t() @ (beta1 * phi_a + (1 - beta1) * g)
        a_old = a
        a = a - lr / (1 - beta1 ** t) * (torch.linalg.pinv(s * b) @ phi_a)
        a = a - lr * wd * a
        k = _ridge_inv(a @ a.t())
        phi_b = beta1 * phi_b @ (a.t() @ k @ a) + (1 - beta1) * g @ a_old.t() @ k @ a
        b = b - lr / (1 - beta1 ** t) * (phi_b @ torch.linalg.pinv(s * a))
        b = b - lr * wd * b
    return a, b


@pytest.mark.parametrize("b_init,wd", [(False, 0.0), (True, 0.05)])
def test_altlora_momentum_matches_dense_reference(b_init, wd):
    net, d, x, y = _layer(b_init)
    w0 = net[0].weight.detach().clone()
    a0, b0 = d.lora_A.detach().clone(), d.lora_B.detach().clone()
    opt = AltLoRAOptimizer(net, lr=0.1, betas=(0.8, 0.999), weight_decay=wd, ridge=RIDGE)
    _run(net, opt, x, y, 6)
    a_ref, b_ref = _altlora_dense(w0, a0, b0, d.scale, x, y, 6, 0.1, 0.8, wd)
    torch.testing.assert_close(d.lora_A.detach(), a_ref, atol=1e-9, rtol=1e-8)
    torch.testing.assert_close(d.lora_B.detach(), b_ref, atol=1e-9, rtol=1e-8)
    st = opt.state[d.lora_A]
    assert st["exp_avg"].shape == (2, 5) and st["basis"].shape == (6, 2)   # nothing m × n


def _altlora_plus_lstsq(w0, a, b, s, x, y, steps, lr, betas, eps):
    """AltLoRA+ (the reference code's ``altlora_plus``) with each projection written as a least-squares solve."""
    b1, b2 = betas
    ls = lambda p, q: torch.linalg.lstsq(p, q, driver="gelsd").solution  # noqa: E731  argmin ‖p·X − q‖
    m_a, v_a, basis_b = torch.zeros_like(a), torch.zeros_like(a), torch.zeros_like(b)
    m_b, v_b, basis_a = torch.zeros_like(b), torch.zeros_like(b), torch.zeros_like(a)
    for t in range(1, steps + 1):
        g = _dense_grad(w0, a, b, s, x, y)
        ga = ls(s * b, g)                                     # argmin ‖s·B·X − G‖
        v_a = b2 * v_a + (1 - b2) * ga ** 2
        step_a = (b1 * ls(b, basis_b) @ m_a + (1 - b1) * ga) / (v_a.sqrt() + eps)
        m_a, basis_b = b1 * m_a + (1 - b1) * ga, b
        a_old, a = a, a - lr / (1 - b1 ** t) * step_a
        gb = ls(s * a @ a.t(), a_old @ g.t()).t()             # (1/s²)·gB·(AAᵀ)⁻¹ with gB = s·G·Aᵀ_old
        v_b = b2 * v_b + (1 - b2) * gb ** 2
        step_b = (b1 * m_b @ ls(a.t(), basis_a.t()).t() + (1 - b1) * gb) / (v_b.sqrt() + eps)
        m_b, basis_a = b1 * m_b + (1 - b1) * gb, a
        b = b - lr / (1 - b1 ** t) * step_b
    return a, b


@pytest.mark.parametrize("b_init", [False, True])
def test_altlora_plus_matches_least_squares_reference(b_init):
    net, d, x, y = _layer(b_init)
    w0 = net[0].weight.detach().clone()
    a0, b0 = d.lora_A.detach().clone(), d.lora_B.detach().clone()
    opt = AltLoRAOptimizer(net, lr=0.02, betas=(0.9, 0.99), eps=1e-4, ridge=RIDGE, adaptive=True)
    _run(net, opt, x, y, 5)
    a_ref, b_ref = _altlora_plus_lstsq(w0, a0, b0, d.scale, x, y, 5, 0.02, (0.9, 0.99), 1e-4)
    torch.testing.assert_close(d.lora_A.detach(), a_ref, atol=1e-9, rtol=1e-8)
    torch.testing.assert_close(d.lora_B.detach(), b_ref, atol=1e-9, rtol=1e-8)


def _plain(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))


def _net(seed=0):
    net = _plain(seed)
    rankwise.adapt(net, rankwise.LoRAConfig(rank=2, alpha=4, targets=nn.Linear))
    net[2].bias.requires_grad_(True)  # a trainable non-factor parameter: AdamW path
    return net


def _data():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(64, 8, generator=g)
    return x, torch.sin(x[:, :4] * 2)


MAKERS = {"lorapro-adamw": lambda net, lr: LoRAProAdamW(net, lr=lr, weight_decay=0.01),
          "altlora": lambda net, lr: AltLoRAOptimizer(net, lr=lr, weight_decay=0.01),
          "altlora+": lambda net, lr: AltLoRAOptimizer(net, lr=lr, weight_decay=0.01, adaptive=True)}


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_non_factor_parameters(name):
    """Parameters outside any B·A pair (a bias here) get torch.optim.AdamW's update in both optimizers."""
    net = _net()
    x, y = _data()
    bias = net[2].bias
    twin = bias.detach().clone().requires_grad_(True)
    opt = MAKERS[name](net, 1e-2)
    eps = opt.defaults["eps"] if name == "lorapro-adamw" else NON_FACTOR_EPS
    ref = torch.optim.AdamW([twin], lr=1e-2, weight_decay=0.01, eps=eps)
    for _ in range(3):
        ((net(x) - y) ** 2).mean().backward()
        twin.grad = bias.grad.clone()
        opt.step()
        ref.step()
        opt.zero_grad()
    torch.testing.assert_close(bias.detach(), twin.detach(), atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_state_is_weights_only_and_resume_is_exact(name):
    x, y = _data()
    lr = 5e-3
    net = _net()
    opt = MAKERS[name](net, lr)
    for i in range(8):
        ((net(x) - y) ** 2).mean().backward()
        opt.step()
        opt.zero_grad()
        if i == 3:
            buf = io.BytesIO()
            torch.save(opt.state_dict(), buf)
            snap = copy.deepcopy(net.state_dict())
    buf.seek(0)
    net2 = _net()
    net2.load_state_dict(snap)
    opt2 = MAKERS[name](net2, lr)
    opt2.load_state_dict(torch.load(buf, weights_only=True))
    for _ in range(4):
        ((net2(x) - y) ** 2).mean().backward()
        opt2.step()
        opt2.zero_grad()
    for p, q in zip(net.parameters(), net2.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=0, rtol=0)


# lr per mode: AltLoRA's default is momentum SGD on projected gradients, so it takes a larger lr than the Adam forms
MODES = [("lora-pro", "lorapro_optimizer", "adamw", LoRAProAdamW, 1e-2),
         ("lora-pro", "lorapro_optimizer", "rule", torch.optim.AdamW, 3e-2),
         ("altlora", "altlora_optimizer", "momentum", AltLoRAOptimizer, 0.3),
         ("altlora", "altlora_optimizer", "adam", AltLoRAOptimizer, 3e-3),
         ("altlora", "altlora_optimizer", "rule", torch.optim.AdamW, 3e-2)]


@pytest.mark.parametrize("method,option,mode,kind,lr", MODES)
def test_catalogue_modes_build_their_optimizer_and_reduce_loss(method, option, mode, kind, lr):
    net = _plain()
    prepared = prepare_method(net, method, {"rank": 2, "alpha": 4, "targets": nn.Linear, "options": {option: mode}},
                              lr=lr, total_steps=30)
    assert type(prepared.optimizer) is kind
    x, y = _data()
    losses = []
    for step in range(30):
        loss = ((net(x) - y) ** 2).mean()
        losses.append(loss.item())
        loss.backward()
        prepared.schedule.before_step(step)
        prepared.optimizer.step()
        prepared.schedule.after_step(step, prepared.optimizer)
        prepared.optimizer.zero_grad()
    assert losses[-1] < 0.8 * losses[0], losses


def test_defaults_are_the_papers_algorithms():
    assert rankwise.method_config("lora-pro").option("lorapro_optimizer") == "adamw"
    assert rankwise.method_config("altlora").option("altlora_optimizer") == "momentum"


@pytest.mark.parametrize("method,option", [("lora-pro", "lorapro_optimizer"), ("altlora", "altlora_optimizer")])
def test_unknown_mode_is_refused_before_anything_changes(method, option):
    with pytest.raises(rankwise.ConfigError, match=option):
        rankwise.method_config(method, options={option: "sgdm"})


@pytest.mark.parametrize("method,option", [("lora-pro", "lorapro_optimizer"), ("altlora", "altlora_optimizer")])
def test_optimizer_modes_refuse_a_plain_optimizer(method, option):
    net = _plain()
    cfg = rankwise.method_config(method, rank=2, targets=nn.Linear)
    net2 = copy.deepcopy(net)
    rankwise.adapt(net, cfg)
    sched = rankwise.get_method(method).schedule(net, cfg, 4)
    x, y = _data()
    ((net(x) - y) ** 2).mean().backward()
    before = [p.detach().clone() for p in net.parameters()]
    with pytest.raises(rankwise.ConfigError, match=f"{option}.*'rule'"):
        sched.before_step(0)  # a plain torch.optim.Adam would now train the factors as ordinary LoRA
    assert all(torch.equal(p, q) for p, q in zip(before, net.parameters(), strict=True))
    opt = rankwise.get_method(method).optimizer(net, cfg, sched, lr=1e-3)
    sched.before_step(0)      # the method's own optimizer holds every pair: accepted
    opt.step()
    rankwise.adapt(net2, cfg)  # an optimizer over another copy of the model does not count
    with pytest.raises(rankwise.ConfigError):
        rankwise.get_method(method).schedule(net2, cfg, 4).before_step(0)


def test_pair_split_across_params_is_refused():
    net = _net()
    d = net[0].rankwise["default"].delta
    with pytest.raises(rankwise.ConfigError, match="only its A factor"):
        LoRAProAdamW(net, [d.lora_A], lr=1e-3)


def test_shared_loop_resume_is_bit_identical_with_lorapro_adamw(tmp_path):
    from tests.helpers import tiny_llama
    from tests.train.test_loop import task

    def go(out, steps, resume=False):
        torch.manual_seed(0)
        model = tiny_llama()
        cfg = TrainConfig(steps=steps, lr=3e-3, warmup=0.0, lr_schedule="constant", eval_every=0, save_every=3,
                          log_every=1, eval_batches=1, progress=False)
        prepared = prepare_method(model, "lora-pro", {"rank": 4}, lr=cfg.lr, total_steps=cfg.steps)
        assert isinstance(prepared.optimizer, LoRAProAdamW)
        train(model, task(), prepared, cfg, out, resume=resume)
        return model

    full = go(tmp_path / "a", 6)
    go(tmp_path / "b", 3)
    resumed = go(tmp_path / "b", 6, resume=True)
    for (n, p), q in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(p, q), n


@pytest.mark.parametrize("name", sorted(MAKERS))
@pytest.mark.parametrize("bad", [{"lr": -1.0}, {"betas": (0.9, 1.0)}, {"weight_decay": -0.1}, {"ridge": -1e-3}])
def test_bad_hyperparameters_are_named_before_any_state(name, bad):
    cls = LoRAProAdamW if name == "lorapro-adamw" else AltLoRAOptimizer
    net = _net()
    with pytest.raises(ValueError, match=cls.__name__ + ".*" + next(iter(bad))):
        cls(net, **{"lr": 1e-3, **bad})
