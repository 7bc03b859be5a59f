"""LoRA's asymmetry: B starts at zero and must grow, A starts random; LoRA+ gives B a larger step.

"LoRA+: Efficient Low Rank Adaptation of Large Models" (Hayou, Ghosh, Yu, arXiv 2402.12354) shows
that with one learning rate for both factors the update ΔW = s·B·A learns inefficiently in wide
models, and that lr(B) = λ·lr(A) with λ ≈ 16 trains faster; "Asymmetry in Low-Rank Adapters of
Foundation Models" (Zhu et al., arXiv 2402.16842) studies the different roles of A and B. The
survey (arXiv 2503.19859, §4) discusses both.

Setting: a frozen two-layer tanh network on scikit-learn's digits inputs; the target is the same
network with a rank-r change of the first layer. A rank-r LoRA on that layer (A Kaiming-uniform,
B = 0, s = 1) is trained with Adam, learning rates lr(A) = lr and lr(B) = ratio·lr, for ratio 1 and
16. Recorded per step: the loss and ‖A‖_F, ‖B‖_F. Plain PyTorch, so it depends on nothing but torch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .common import ExperimentResult, digits, out_path, single_threaded


def _train(ratio: float, lr: float, steps: int, rank: int, seed: int, x: torch.Tensor) -> dict:
    g = torch.Generator().manual_seed(seed)
    d, h, o = x.shape[1], 64, 10
    W1 = torch.randn(h, d, generator=g) / math.sqrt(d)   # frozen first layer (h, d)
    W2 = torch.randn(o, h, generator=g) / math.sqrt(h)   # frozen second layer (o, h)
    U = torch.randn(h, rank, generator=g)
    V = torch.randn(rank, d, generator=g)
    target_w1 = W1 + 0.5 * U @ V / math.sqrt(d * rank)   # rank-r change to learn

    def net(w1):
        return torch.tanh(x @ w1.t()) @ W2.t()

    y = net(target_w1)
    A = ((torch.rand(rank, d, generator=g) * 2 - 1) / math.sqrt(d)).requires_grad_()  # Kaiming-uniform(a=√5)
    B = torch.zeros(h, rank, requires_grad=True)
    opt = torch.optim.Adam([{"params": [A], "lr": lr}, {"params": [B], "lr": ratio * lr}])
    loss_t, a_t, b_t = [], [], []
    for _ in range(steps):
        loss = F.mse_loss(net(W1 + B @ A), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_t.append(float(loss.detach()))
        a_t.append(float(A.detach().norm()))
        b_t.append(float(B.detach().norm()))
    return {"loss": loss_t, "norm_A": a_t, "norm_B": b_t}


@single_threaded
def run(out_dir=None, ratios: tuple[float, ...] = (1.0, 16.0), lr: float = 1e-3, steps: int = 300, rank: int = 4,
        seed: int = 0) -> ExperimentResult:
    """Train the LoRA once per LoRA+ ratio; record loss and factor norms.

    Returns:
        metrics: ``final_loss`` and ``final_norm_A`` / ``final_norm_B`` per ratio (keys are the ratios
        as strings), ``initial_loss``.
    """
    x, _, _, _ = digits(seed=seed)
    runs = {str(r): _train(r, lr, steps, rank, seed, x) for r in ratios}
    metrics = {"final_loss": {k: v["loss"][-1] for k, v in runs.items()},
               "final_norm_A": {k: v["norm_A"][-1] for k, v in runs.items()},
               "final_norm_B": {k: v["norm_B"][-1] for k, v in runs.items()},
               "initial_loss": next(iter(runs.values()))["loss"][0], "steps": steps, "lr": lr}
    result = ExperimentResult("lora_asymmetry", metrics, runs)
    path = out_path(out_dir, "lora_asymmetry.png")
    if path is not None:
        result.figure = _figure(result, path)
    return result


def _figure(result: ExperimentResult, path):
    from ..analysis.plot import new_figure, save

    fig, ax = new_figure(2)
    for k, v in result.series.items():
        steps = range(1, len(v["loss"]) + 1)
        ax[0, 0].semilogy(steps, v["loss"], label=f"lr(B)/lr(A) = {float(k):g}")
        line = ax[0, 1].plot(steps, v["norm_B"], label=f"‖B‖, ratio {float(k):g}")[0]
        ax[0, 1].plot(steps, v["norm_A"], ls="--", color=line.get_color(), label=f"‖A‖, ratio {float(k):g}")
    ax[0, 0].set(xlabel="Adam step", ylabel="training loss", title="LoRA vs LoRA+")
    ax[0, 0].legend()
    ax[0, 1].set(xlabel="Adam step", ylabel="Frobenius norm", title="factor norms (B starts at 0)")
    ax[0, 1].legend(fontsize=7)
    return save(fig, path)
