"""Low-rank updates in trained networks: most singular values of a layer's update stay near zero.

The survey's trajectory view (arXiv 2503.19859, §3; "Compressible Dynamics in Deep
Overparameterized Low-Rank Learning & Adaptation", Yaras et al., arXiv 2406.04112): gradient
descent changes each weight only in a few directions, so ΔW = W(T) − W(0) is approximately
low-rank even when W(0) is a full-rank random matrix. This is why LoRA and GaLore lose little.

Setting: a deep linear network and a ReLU MLP, 64 → h → h → h → 10 (no biases), default PyTorch
init, full-batch gradient descent with cross-entropy on scikit-learn's digits. Measured: the
singular values of the penultimate layer's update (the h × h layer feeding the classifier) and
its 90 % / 99 % energy ranks, next to min(m, n) = h. For the linear network each step's gradient of
that layer is Wₗ₊₁ᵀ·E·Hᵀ, rank ≤ 10 (the number of classes); for the MLP the ReLU masks lift that
bound, yet the update stays low-rank.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..analysis.measures import energy_rank
from .common import ExperimentResult, digits, out_path, single_threaded


def _train(kind: str, hidden: int, depth: int, steps: int, lr: float, seed: int, data) -> dict:
    x_tr, y_tr, x_te, y_te = data
    torch.manual_seed(seed)
    dims = [x_tr.shape[1]] + [hidden] * (depth - 1) + [10]
    layers = [nn.Linear(a, b, bias=False) for a, b in zip(dims[:-1], dims[1:], strict=True)]
    mods: list[nn.Module] = []
    for i, layer in enumerate(layers):
        mods.append(layer)
        if kind == "mlp" and i < len(layers) - 1:
            mods.append(nn.ReLU())
    net = nn.Sequential(*mods)
    w0 = [layer.weight.detach().clone() for layer in layers]
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    for _ in range(steps):
        loss = F.cross_entropy(net(x_tr), y_tr)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = float((net(x_te).argmax(1) == y_te).float().mean())
    pen = len(layers) - 2  # the layer feeding the classifier
    delta = layers[pen].weight.detach() - w0[pen]
    s = torch.linalg.svdvals(delta)
    return {"delta_singular_values": s.tolist(), "rank90": energy_rank(s, 0.9), "rank99": energy_rank(s, 0.99),
            "size": min(delta.shape), "test_accuracy": acc, "train_loss": float(loss.detach()),
            "weight_singular_values": torch.linalg.svdvals(layers[pen].weight.detach()).tolist()}


@single_threaded
def run(out_dir=None, hidden: int = 100, depth: int = 4, steps: int = 300, lr_linear: float = 0.2,
        lr_mlp: float = 0.5, seed: int = 0) -> ExperimentResult:
    """Train both networks; return the penultimate layer's update spectrum and energy ranks.

    Returns:
        metrics: per network (``linear``, ``mlp``): ``rank99``, ``rank90``, ``size`` (= hidden),
        ``test_accuracy``.
    """
    data = digits(seed=seed)
    runs = {"linear": _train("linear", hidden, depth, steps, lr_linear, seed, data),
            "mlp": _train("mlp", hidden, depth, steps, lr_mlp, seed, data)}
    metrics = {k: {m: v[m] for m in ("rank90", "rank99", "size", "test_accuracy", "train_loss")}
               for k, v in runs.items()}
    result = ExperimentResult("low_rank_updates", metrics, runs)
    path = out_path(out_dir, "low_rank_updates.png")
    if path is not None:
        result.figure = _figure(result, path)
    return result


def _figure(result: ExperimentResult, path):
    from ..analysis.plot import new_figure, save

    fig, ax = new_figure(2)
    for j, (k, v) in enumerate(result.series.items()):
        s = v["delta_singular_values"]
        idx = range(1, len(s) + 1)
        ax[0, j].semilogy(idx, s, "o", ms=2.5, label="σᵢ(W(T) − W(0))")
        ax[0, j].semilogy(idx, v["weight_singular_values"], ".", ms=2, color="0.6", label="σᵢ(W(T))")
        ax[0, j].axvline(v["rank99"], color="k", ls=":", lw=0.8, label=f"99% energy rank = {v['rank99']}")
        name = "deep linear network" if k == "linear" else "ReLU MLP"
        ax[0, j].set(xlabel="index i", title=f"{name}: penultimate layer ({v['size']}×{v['size']})")
        ax[0, j].legend(fontsize=7)
    return save(fig, path)
