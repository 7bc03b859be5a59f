"""Fira and APOLLO against their update rules, written out in closed form on small matrices."""

import math

import pytest
import torch

from rankwise.optim import APOLLO, Fira, GaLoreAdamW
from rankwise.optim.apollo import APOLLOMini
from rankwise.optim.projectors.random import gaussian_basis

B1, B2, EPS, LR = 0.9, 0.999, 1e-6, 1e-2


def grads(shape, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    # norms that grow fast, so the norm-growth limiter engages
    return [torch.randn(shape, generator=g, dtype=torch.float64) * (1.5 ** t) for t in range(steps)]


def adam(low, state, t):
    state["m"] = B1 * state.get("m", 0) + (1 - B1) * low
    state["v"] = B2 * state.get("v", 0) + (1 - B2) * low * low
    return state["m"] / (state["v"].sqrt() + EPS), LR * math.sqrt(1 - B2 ** t) / (1 - B1 ** t)


def limit(u, state, gamma=1.01):
    norm = u.norm().item()
    if "prev" in state:
        lim = max(norm / (state["prev"] + 1e-8), gamma) / gamma
        u = u / lim
        state["prev"] = norm / lim
    else:
        state["prev"] = norm
    return u


def run(opt_cls, shape, gs, **group):
    w = torch.nn.Parameter(torch.zeros(shape, dtype=torch.float64))
    opt = opt_cls([{"params": [w], **group}], lr=LR)
    bases = []
    for g in gs:
        w.grad = g.clone()
        opt.step()
        bases.append(opt.basis(w).clone())
    return w.detach(), bases


@pytest.mark.parametrize("shape", [(6, 4), (4, 7)])
def test_fira_closed_form(shape):
    alpha, gs = 0.25, grads(shape, 5)
    got, _ = run(Fira, shape, gs, rank=2, update_gap=3, scale=alpha)
    w, st, lim = torch.zeros(shape, dtype=torch.float64), {}, {}
    for t, g in enumerate(gs, 1):
        if (t - 1) % 3 == 0:
            u, _, vh = torch.linalg.svd(g, full_matrices=False)
            b = vh[:2] if shape[0] >= shape[1] else u[:, :2]
        right = shape[0] >= shape[1]
        low = g @ b.t() if right else b.t() @ g
        n, size = adam(low, st, t)
        back = (lambda x: x @ b) if right else (lambda x: b @ x)  # noqa: B023
        dim = 1 if right else 0
        phi = n.norm(dim=dim, keepdim=True) / (low.norm(dim=dim, keepdim=True) + 1e-8)
        s = limit(phi * (g - alpha * back(low)), lim)
        w = w - size * (alpha * back(n) + s)
    torch.testing.assert_close(got, w, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("shape", [(6, 4), (4, 7)])
def test_apollo_channel_closed_form(shape):
    gs = grads(shape, 5, seed=1)
    got, bases = run(APOLLO, shape, gs, rank=2, update_gap=2)
    w, st, lim = torch.zeros(shape, dtype=torch.float64), {}, {}
    right = shape[0] >= shape[1]
    for t, (g, b) in enumerate(zip(gs, bases, strict=True), 1):
        low = g @ b.t() if right else b.t() @ g
        n, size = adam(low, st, t)
        dim = 1 if right else 0
        phi = n.norm(dim=dim, keepdim=True) / (low.norm(dim=dim, keepdim=True) + 1e-8)
        w = w - size * math.sqrt(1.0) * limit(phi * g, lim)
    torch.testing.assert_close(got, w, rtol=1e-9, atol=1e-12)
    # the basis is the seeded Gaussian one, resampled at refreshes (steps 0, 2, 4) only
    assert torch.equal(bases[0], bases[1]) and not torch.equal(bases[1], bases[2])
    assert bases[0].shape == ((2, shape[1]) if right else (shape[0], 2))


def test_apollo_mini_tensor_closed_form():
    shape, gs = (5, 8), grads((5, 8), 4, seed=2)
    got, bases = run(APOLLOMini, shape, gs, rank=1, update_gap=10)
    w, st, lim = torch.zeros(shape, dtype=torch.float64), {}, {}
    for t, (g, b) in enumerate(zip(gs, bases, strict=True), 1):
        low = b.t() @ g  # left side: 1×8
        n, size = adam(low, st, t)
        phi = n.norm() / (low.norm() + 1e-8)
        w = w - size * math.sqrt(128.0) * limit(phi * g, lim)
    torch.testing.assert_close(got, w, rtol=1e-9, atol=1e-12)


def test_random_basis_is_seeded_gaussian_with_variance_one_over_rank():
    b = gaussian_basis((300, 400), 50, "left", seed=7, dtype=torch.float32, device=torch.device("cpu"))
    assert b.shape == (300, 50)
    assert torch.equal(b, gaussian_basis((300, 400), 50, "left", 7, torch.float32, torch.device("cpu")))
    assert abs(b.var().item() - 1 / 50) < 1e-3


def test_fira_with_full_rank_projection_reduces_to_galore_plus_scaled_zero_residual():
    # rank = min(m, n) and α = 1: the residual G − P·R is 0, so Fira's update equals GaLore's
    shape, gs = (6, 4), grads((6, 4), 3, seed=3)
    fira, _ = run(Fira, shape, gs, rank=4, scale=1.0)
    galore, _ = run(GaLoreAdamW, shape, gs, rank=4, scale=1.0)
    torch.testing.assert_close(fira, galore, rtol=1e-9, atol=1e-12)
