"""Dropout makes the learned map low-rank: effective rank of the last layer's activations over epochs.

The survey (arXiv 2503.19859, §5, implicit regularisation at convergence) recalls that dropout
on the hidden units feeding a linear layer is, in expectation, the explicit penalty
(p / (1 − p)) · Σᵢ ‖wᵢ‖² · E[hᵢ²] (wᵢ the i-th column of the last layer, hᵢ the i-th hidden
unit), which is bounded below by (p / (1 − p)) / width · ‖W·Hᵀ‖_*²: a squared nuclear norm of the
last layer's output ("Dropout as a Low-Rank Regularizer for Matrix Factorization", Cavazza et al.,
arXiv 1710.05092; "On the Implicit Bias of Dropout", Mianjy, Arora, Vidal, arXiv 1806.09777). Weak
directions are shrunk to zero, so the output is low-rank.

Setting: an MLP 64 → h → h → 64 (ReLU) reconstructs scikit-learn's 8×8 digits (a high-rank target:
the data's principal components decay slowly), SGD with momentum, with dropout p = 0.6 on the last
hidden layer vs without. Measured every epoch on held-out digits: the Roy–Vetterli effective rank of
the last layer's activations (the network outputs, centred). Without dropout the network keeps
fitting weaker directions and the rank grows; with dropout it stays lower.

Also recorded: the effective rank of the last *hidden* layer. On this task dropout does *not* lower it
(ReLU features that the last layer does not use are not penalised), which the figure shows too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..analysis.measures import effective_rank
from .common import ExperimentResult, digits, out_path, single_threaded


def _train(p: float, hidden: int, epochs: int, lr: float, batch: int, seed: int, data) -> dict:
    x_tr, _, x_te, _ = data
    torch.manual_seed(seed)
    body = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
    drop = nn.Dropout(p)
    head = nn.Linear(hidden, 64)
    params = list(body.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    out_rank, hid_rank, test_loss = [], [], []
    for _ in range(epochs):
        drop.train()
        perm = torch.randperm(len(x_tr), generator=g)
        for i in range(0, len(x_tr), batch):
            xb = x_tr[perm[i:i + batch]]
            loss = F.mse_loss(head(drop(body(xb))), xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        drop.eval()
        with torch.no_grad():
            h = body(x_te)   # (N, hidden)
            y = head(h)      # (N, 64): the last layer's activations
            out_rank.append(effective_rank(y - y.mean(0)))
            hid_rank.append(effective_rank(h - h.mean(0)))
            test_loss.append(float(F.mse_loss(y, x_te)))
    return {"output_rank": out_rank, "hidden_rank": hid_rank, "test_loss": test_loss}


@single_threaded
def run(out_dir=None, dropout: float = 0.6, hidden: int = 128, epochs: int = 30, lr: float = 0.1, batch: int = 32,
        seed: int = 0) -> ExperimentResult:
    """Train the MLP with and without dropout; track effective ranks per epoch.

    Returns:
        metrics: ``rank_dropout`` / ``rank_plain`` (final effective rank of the outputs),
        ``hidden_rank_dropout`` / ``hidden_rank_plain``, ``test_loss_dropout`` / ``test_loss_plain``.
    """
    data = digits(seed=seed)
    plain = _train(0.0, hidden, epochs, lr, batch, seed, data)
    dropped = _train(dropout, hidden, epochs, lr, batch, seed, data)
    metrics = {"rank_dropout": dropped["output_rank"][-1], "rank_plain": plain["output_rank"][-1],
               "hidden_rank_dropout": dropped["hidden_rank"][-1], "hidden_rank_plain": plain["hidden_rank"][-1],
               "test_loss_dropout": dropped["test_loss"][-1], "test_loss_plain": plain["test_loss"][-1],
               "dropout": dropout, "epochs": epochs}
    series = {"plain": plain, "dropout": dropped}
    result = ExperimentResult("dropout_lowrank", metrics, series)
    path = out_path(out_dir, "dropout_lowrank.png")
    if path is not None:
        result.figure = _figure(result, path)
    return result


def _figure(result: ExperimentResult, path):
    from ..analysis.plot import new_figure, save

    s, p = result.series, result.metrics["dropout"]
    fig, ax = new_figure(2)
    epochs = list(range(1, len(s["plain"]["output_rank"]) + 1))
    ax[0, 0].plot(epochs, s["plain"]["output_rank"], label="no dropout")
    ax[0, 0].plot(epochs, s["dropout"]["output_rank"], label=f"dropout {p}")
    ax[0, 0].set(xlabel="epoch", ylabel="effective rank", title="last layer's activations (outputs)")
    ax[0, 0].legend()
    ax[0, 1].plot(epochs, s["plain"]["hidden_rank"], label="no dropout")
    ax[0, 1].plot(epochs, s["dropout"]["hidden_rank"], label=f"dropout {p}")
    ax[0, 1].set(xlabel="epoch", ylabel="effective rank", title="last hidden layer (for comparison)")
    ax[0, 1].legend()
    return save(fig, path)
