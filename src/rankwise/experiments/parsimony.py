"""Law of parsimony: gradient descent on a deep matrix factorisation moves only a small subspace.

"The Law of Parsimony in Gradient Descent for Learning Deep Linear Networks", Yaras, Wang, Hu,
Zhu, Balzano, Qu (arXiv 2306.01154), as presented in the survey (arXiv 2503.19859, §3). Fit a
rank-r target Φ (d × d) by W_L⋯W_1 with loss ½‖W_L⋯W_1 − Φ‖_F², every factor initialised
orthogonal times a small ε, plain GD. Then for every t each factor decomposes as

    W_l(t) = U_l · diag(W̃_l(t), ρ(t)·I_{d−2r}) · V_lᵀ

with U_l, V_l fixed from the start: only a 2r-dimensional subspace of each factor learns, the
other d − 2r singular values all equal ρ(t), which stays ≈ ε (it shrinks like ρ⁵ per step,
negligible for small ε). Measured here: the singular values σᵢ(W_l(t)), how many leave ε, and how
much each factor moves inside vs outside its final 2r-dimensional learning subspace.
"""

from __future__ import annotations

import torch

from .common import ExperimentResult, out_path, single_threaded


def _factors_grad(Ws: list[torch.Tensor], phi: torch.Tensor) -> tuple[list[torch.Tensor], float]:
    """Closed-form gradients of ½‖W_L⋯W_1 − Φ‖² w.r.t. each factor: (W_L⋯W_{l+1})ᵀ E (W_{l−1}⋯W_1)ᵀ."""
    d = phi.shape[0]
    eye = torch.eye(d, dtype=phi.dtype)
    left = [eye]  # left[l] = W_{l-1}⋯W_1 (product of the factors below l)
    for w in Ws[:-1]:
        left.append(w @ left[-1])
    err = Ws[-1] @ left[-1] - phi  # E = W_L⋯W_1 − Φ
    grads = [None] * len(Ws)
    above = eye  # W_L⋯W_{l+1}
    for i in range(len(Ws) - 1, -1, -1):
        grads[i] = above.t() @ err @ left[i].t()
        above = above @ Ws[i]
    return grads, 0.5 * float((err ** 2).sum())


@single_threaded
def run(out_dir=None, width: int = 30, depth: int = 3, rank: int = 3, eps: float = 0.03, lr: float = 0.1,
        steps: int = 600, record_every: int = 5, tol: float = 1e-3, seed: int = 0) -> ExperimentResult:
    """Train the factorisation in float64 and measure which singular values move.

    Args:
        out_dir: where ``parsimony.png`` goes (None: no figure).
        width: d; depth: L; rank: r of the target (singular values r, r−1, …, 1).
        eps: init scale (each factor is ε times a random orthogonal matrix).
        lr, steps: plain gradient descent.
        record_every: recording period of σᵢ(t).
        tol: a singular value "changed" when |σ − ε| > tol·ε at the end.

    Returns:
        metrics: ``changed`` (per factor, count of changed singular values), ``bound`` (2r),
        ``relative_error`` of the learned product, ``move_outside`` (per factor, ‖ΔW_l V_⊥‖/‖ΔW_l‖, how
        much of the update lies outside the 2r-dim subspace), ``update_rank`` (per factor, σ > 1e-4·σ₁).
    """
    dt = torch.float64
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(width, rank, generator=g, dtype=dt))
    V, _ = torch.linalg.qr(torch.randn(width, rank, generator=g, dtype=dt))
    phi = U @ torch.diag(torch.arange(rank, 0, -1, dtype=dt)) @ V.t()  # (d, d), rank r
    Ws = [eps * torch.linalg.qr(torch.randn(width, width, generator=g, dtype=dt))[0] for _ in range(depth)]
    W0 = [w.clone() for w in Ws]
    steps_rec, sig, losses = [], [[] for _ in range(depth)], []
    snapshots = []
    for t in range(steps + 1):
        grads, loss = _factors_grad(Ws, phi)
        if t % record_every == 0 or t == steps:
            steps_rec.append(t)
            losses.append(loss)
            for i, w in enumerate(Ws):
                sig[i].append(torch.linalg.svdvals(w).tolist())
            snapshots.append([w.clone() for w in Ws])
        if t < steps:
            Ws = [w - lr * gr for w, gr in zip(Ws, grads, strict=True)]

    product = Ws[0]
    for w in Ws[1:]:
        product = w @ product
    rel_err = float(torch.linalg.norm(product - phi) / torch.linalg.norm(phi))
    changed, move_out, upd_rank, inside_t, outside_t = [], [], [], [], []
    for i in range(depth):
        s = torch.linalg.svdvals(Ws[i])
        changed.append(int(((s - eps).abs() > tol * eps).sum()))
        delta = Ws[i] - W0[i]
        _, ds, dVh = torch.linalg.svd(delta)
        upd_rank.append(int((ds > 1e-4 * ds[0]).sum()))
        V_in = dVh[: 2 * rank].t()  # (d, 2r): the final learning subspace (input side)
        P_out = torch.eye(width, dtype=dt) - V_in @ V_in.t()
        move_out.append(float(torch.linalg.norm(delta @ P_out) / torch.linalg.norm(delta)))
        inside_t.append([float(torch.linalg.norm((snap[i] - W0[i]) @ V_in)) for snap in snapshots])
        outside_t.append([float(torch.linalg.norm((snap[i] - W0[i]) @ P_out)) for snap in snapshots])
    metrics = {"changed": changed, "bound": 2 * rank, "relative_error": rel_err, "move_outside": move_out,
               "update_rank": upd_rank, "width": width, "eps": eps}
    series = {"steps": steps_rec, "loss": losses, "singular_values": sig, "move_inside": inside_t,
              "move_outside": outside_t}
    result = ExperimentResult("parsimony", metrics, series)
    path = out_path(out_dir, "parsimony.png")
    if path is not None:
        result.figure = _figure(result, path)
    return result


def _figure(result: ExperimentResult, path):
    from ..analysis.plot import new_figure, save

    s = result.series
    depth = len(s["singular_values"])
    fig, ax = new_figure(depth + 1, width=3.6)
    for i in range(depth):
        traj = torch.tensor(s["singular_values"][i])  # (T, d)
        for j in range(traj.shape[1]):
            ax[0, i].plot(s["steps"], traj[:, j].tolist(), lw=0.8)
        ax[0, i].set(title=f"σᵢ(W{i + 1}(t)): {result.metrics['changed'][i]} of {traj.shape[1]} move",
                     xlabel="GD step", yscale="log")
    for i in range(depth):
        # from the first record after t = 0: the update is exactly zero at t = 0 (log scale)
        ax[0, depth].plot(s["steps"][1:], s["move_inside"][i][1:], lw=1.0, label=f"W{i + 1}: inside 2r-subspace")
        ax[0, depth].plot(s["steps"][1:], s["move_outside"][i][1:], lw=1.0, ls="--", label=f"W{i + 1}: outside")
    ax[0, depth].set(title="‖(W(t) − W(0))·P‖_F", xlabel="GD step", yscale="log")
    ax[0, depth].legend(fontsize=6)
    return save(fig, path)
