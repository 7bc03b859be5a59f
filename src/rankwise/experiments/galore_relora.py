"""GaLore ≡ ReLoRA under plain gradient descent.

The survey (arXiv 2503.19859, §4) notes that two low-rank training schemes coincide:

* GaLore ("GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection", Zhao et al.,
  arXiv 2403.03507) with plain GD: every T steps take P = top-r left singular vectors of the full
  gradient G; every step W ← W − η·P·Pᵀ·∇_W L(W).
* a one-sided ReLoRA ("ReLoRA: High-Rank Training Through Low-Rank Updates", Lialin et al.,
  arXiv 2307.05695): W = W_m + B·A with B frozen, A trained by GD; every T steps merge W_m ← W_m + B·A,
  set A = 0 and re-initialise B = top-r left singular vectors of the full gradient at W_m.

Since ∇_A L(W_m + B·A) = Bᵀ·∇_W L, the ReLoRA step changes W by −η·B·Bᵀ·∇_W L: the GaLore step with
P = B. Both sides are written here in plain float64 PyTorch (independently of ``rankwise.optim``) on
a two-layer tanh network; ReLoRA's A-gradient comes from autograd through W_m + B·A, so the
agreement is checked, not assumed. Full-rank GD runs alongside to show that the projection matters.
"""

from __future__ import annotations

import torch

from .common import ExperimentResult, out_path, single_threaded


def _loss(ws: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    h = torch.tanh(x @ ws[0].t())  # (N, hidden)
    return 0.5 * ((h @ ws[1].t() - y) ** 2).mean(0).sum()


def _grads(ws, x, y):
    ws = [w.detach().requires_grad_() for w in ws]
    loss = _loss(ws, x, y)
    return list(torch.autograd.grad(loss, ws)), float(loss.detach())


def _top_left(g: torch.Tensor, r: int) -> torch.Tensor:
    U, _, _ = torch.linalg.svd(g, full_matrices=False)
    return U[:, :r]  # (m, r)


@single_threaded
def run(out_dir=None, n_in: int = 20, hidden: int = 24, n_out: int = 16, samples: int = 128, rank: int = 2,
        period: int = 10, resets: int = 6, lr: float = 0.2, seed: int = 0) -> ExperimentResult:
    """Train the same network with GD-GaLore, GD-ReLoRA (one-sided, SVD-reset B) and full GD; compare weights.

    Args:
        out_dir: where ``galore_relora.png`` goes (None: no figure).
        n_in, hidden, n_out, samples: network and random regression data (teacher network targets).
        rank: r of the projection / of B.
        period: T, steps between GaLore refreshes = ReLoRA resets.
        resets: number of periods (total steps = period·resets).
        lr: GD step size.

    Returns:
        metrics: ``max_weight_diff`` (max |W_GaLore − W_ReLoRA| over all steps and weights),
        ``galore_vs_full`` (max |W_GaLore − W_fullGD| at the end), losses at start and end.
    """
    dt = torch.float64
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, n_in, generator=g, dtype=dt)
    teacher = [torch.randn(hidden, n_in, generator=g, dtype=dt) / n_in ** 0.5,
               torch.randn(n_out, hidden, generator=g, dtype=dt) / hidden ** 0.5]
    y = torch.tanh(x @ teacher[0].t()) @ teacher[1].t()
    init = [torch.randn(hidden, n_in, generator=g, dtype=dt) / n_in ** 0.5,
            torch.randn(n_out, hidden, generator=g, dtype=dt) / hidden ** 0.5]

    galore = [w.clone() for w in init]
    full = [w.clone() for w in init]
    merged = [w.clone() for w in init]                                           # ReLoRA's W_m
    Bs = [torch.zeros(w.shape[0], rank, dtype=dt) for w in init]                 # (m, r), frozen
    As = [torch.zeros(rank, w.shape[1], dtype=dt) for w in init]                 # (r, n), trained
    Ps = [None, None]
    diffs, loss_g, loss_r, loss_f = [], [], [], []
    for t in range(period * resets):
        # GaLore: refresh P every T steps from the full gradient, then a projected GD step
        gg, lg = _grads(galore, x, y)
        if t % period == 0:
            Ps = [_top_left(gr, rank) for gr in gg]
        galore = [w - lr * P @ (P.t() @ gr) for w, P, gr in zip(galore, Ps, gg, strict=True)]
        # ReLoRA: at a reset merge B·A, zero A, B from the SVD of the full gradient at the merged weight
        if t % period == 0:
            merged = [wm + B @ A for wm, B, A in zip(merged, Bs, As, strict=True)]
            As = [torch.zeros_like(A) for A in As]
            full_g, _ = _grads(merged, x, y)
            Bs = [_top_left(gr, rank) for gr in full_g]
        As = [A.requires_grad_() for A in As]
        lr_loss = _loss([wm + B @ A for wm, B, A in zip(merged, Bs, As, strict=True)], x, y)
        ga = torch.autograd.grad(lr_loss, As)
        As = [(A - lr * gA).detach() for A, gA in zip(As, ga, strict=True)]
        relora = [wm + B @ A for wm, B, A in zip(merged, Bs, As, strict=True)]
        # full-rank GD for reference
        gf, lf = _grads(full, x, y)
        full = [w - lr * gr for w, gr in zip(full, gf, strict=True)]
        diffs.append(max(float((a - b).abs().max()) for a, b in zip(galore, relora, strict=True)))
        loss_g.append(lg)
        loss_r.append(float(lr_loss.detach()))
        loss_f.append(lf)
    metrics = {"max_weight_diff": max(diffs),
               "galore_vs_full": max(float((a - b).abs().max()) for a, b in zip(galore, full, strict=True)),
               "loss_start": loss_g[0], "loss_end": float(_loss(galore, x, y)),
               "loss_end_full": float(_loss(full, x, y)), "steps": period * resets, "resets": resets}
    series = {"weight_diff": diffs, "loss_galore": loss_g, "loss_relora": loss_r, "loss_full": loss_f}
    result = ExperimentResult("galore_relora", metrics, series)
    path = out_path(out_dir, "galore_relora.png")
    if path is not None:
        result.figure = _figure(result, path, period)
    return result


def _figure(result: ExperimentResult, path, period: int):
    from ..analysis.plot import new_figure, save

    s = result.series
    fig, ax = new_figure(2)
    steps = list(range(len(s["loss_galore"])))
    ax[0, 0].plot(steps, s["loss_full"], "k:", label="full-rank GD")
    ax[0, 0].plot(steps, s["loss_galore"], lw=2.5, alpha=0.5, label="GaLore (GD)")
    ax[0, 0].plot(steps, s["loss_relora"], "--", label="ReLoRA (B from SVD of grad)")
    for t in range(0, len(steps), period):
        ax[0, 0].axvline(t, color="0.85", lw=0.6, zorder=0)
    ax[0, 0].set(xlabel="step", ylabel="loss", title="same trajectory (grey: refresh / reset)", yscale="log")
    ax[0, 0].legend(fontsize=7)
    ax[0, 1].semilogy(steps, [max(d, 1e-18) for d in s["weight_diff"]])
    ax[0, 1].set(xlabel="step", ylabel="max |W_GaLore − W_ReLoRA|", title="float64 weight difference")
    return save(fig, path)
