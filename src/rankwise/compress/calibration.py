"""One calibration pass for compression: input covariances, activation scales, per-row Fisher.

Forward pre-hooks on the chosen layers accumulate, per layer with n inputs and m outputs:

* ``cov``   — Σ_t x_t x_tᵀ over every calibration token (n × n, float64): SVD-LLM's whitening;
* ``abs_sum`` — Σ_t |x_t| per input channel (n): ASVD's activation scale;
* ``fisher`` — Σ_batches Σ_j (∂L/∂W_ij)² per output row i (m): FWSVD's row importance
  (only with ``need_fisher=True``; one backward per batch, gradients of the chosen weights only).

Memory is bounded by Σ n² + n + m per layer, independent of how much calibration data passes
through. Padding is excluded when a batch is a dict with an ``attention_mask`` whose shape matches the
layer input's leading dimensions.

This module is self-contained (compression only); adapter initialisers that need calibration data
have their own mechanism in ``rankwise.calibration``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ConfigError, RankwiseError


class CalibrationError(RankwiseError, ValueError):
    """Calibration data is missing, too small, or gives a covariance that cannot be whitened."""


@dataclass
class LayerStats:
    """Statistics of one layer's inputs (and, optionally, its weight gradients).

    Attributes:
        cov: Σ x xᵀ over calibration tokens, (n, n) float64 (an unnormalised second moment).
        abs_sum: Σ |x| per input channel, (n,) float64.
        tokens: number of tokens seen.
        fisher: Σ over batches of the squared weight gradient summed over each output row, (m,)
            float64, or None when not collected.
        batches: number of batches that contributed to ``fisher``.
    """

    cov: torch.Tensor
    abs_sum: torch.Tensor
    tokens: int = 0
    fisher: torch.Tensor | None = None
    batches: int = 0

    @property
    def abs_mean(self) -> torch.Tensor:
        """Mean |x| per input channel (ASVD's scale before the exponent α)."""
        return self.abs_sum / max(self.tokens, 1)


@dataclass
class Calibration:
    """Per-layer statistics keyed by module name."""

    layers: dict[str, LayerStats] = field(default_factory=dict)

    def __getitem__(self, name: str) -> LayerStats:
        if name not in self.layers:
            raise CalibrationError(f"no calibration statistics for layer {name!r}; the calibration pass never "
                                   f"ran it (known: {sorted(self.layers)[:5]}...)")
        return self.layers[name]


def forward_batch(model: nn.Module, batch, labels: bool = False):
    """Run ``model`` on one calibration batch: a tensor of input ids, a dict of kwargs, or a tuple of args."""
    if isinstance(batch, dict):
        kw = dict(batch)
        if labels and "labels" not in kw and "input_ids" in kw:
            kw["labels"] = kw["input_ids"]
        return model(**kw)
    if isinstance(batch, torch.Tensor):
        if _is_hf(model):
            return model(input_ids=batch, labels=batch) if labels else model(input_ids=batch)
        return model(batch)
    if isinstance(batch, tuple | list):
        return model(*batch)
    raise ConfigError(f"calibration batches must be tensors, dicts or tuples, got {type(batch).__name__}")


def default_loss(model: nn.Module, batch) -> torch.Tensor:
    """The model's own loss on ``batch`` (labels = input ids for causal LMs); ConfigError when it has none."""
    out = forward_batch(model, batch, labels=True)
    loss = getattr(out, "loss", None)
    if loss is None:
        raise ConfigError(f"{type(model).__name__} returns no loss for calibration batches; pass loss_fn=(model, "
                          "batch) -> scalar to use gradient-based statistics (FWSVD, sensitivity allocation)")
    return loss


def _is_hf(model: nn.Module) -> bool:
    return hasattr(model, "config") and hasattr(model, "get_input_embeddings")


def _mask_of(batch) -> torch.Tensor | None:
    if isinstance(batch, dict) and isinstance(batch.get("attention_mask"), torch.Tensor):
        return batch["attention_mask"].bool()
    return None


def collect(model: nn.Module, layers: dict[str, nn.Module], batches: Iterable, *, need_fisher: bool = False,
            loss_fn: Callable[[nn.Module, object], torch.Tensor] | None = None,
            transposed: frozenset[str] = frozenset()) -> Calibration:
    """Run the calibration batches once and return per-layer input statistics.

    Args:
        model: the model to run (put in eval mode for the pass, restored after).
        layers: name → module of the layers to observe (Linear or HF Conv1D).
        batches: an iterable of calibration batches (see :func:`forward_batch`).
        need_fisher: also collect FWSVD's per-row squared gradients (one backward per batch).
        loss_fn: ``(model, batch) -> scalar`` for the Fisher pass; default :func:`default_loss`.
        transposed: names of layers whose stored weight is (in, out) (HF Conv1D).

    Raises:
        CalibrationError: no batch was given, or a layer saw no token.
    """
    stats: dict[str, LayerStats] = {}
    state = {"mask": None}

    def make_hook(name: str):
        def hook(module, args):
            x = args[0].detach()
            mask = state["mask"]
            if mask is not None and tuple(x.shape[:-1]) == tuple(mask.shape):
                x = x[mask]
            x = x.reshape(-1, x.shape[-1]).to(torch.float64)  # (tokens, n)
            s = stats.get(name)
            if s is None:
                n = x.shape[-1]
                s = stats[name] = LayerStats(torch.zeros(n, n, dtype=torch.float64),
                                             torch.zeros(n, dtype=torch.float64))
            s.cov.addmm_(x.T, x)
            s.abs_sum.add_(x.abs().sum(0))
            s.tokens += x.shape[0]
        return hook

    was_training = model.training
    model.eval()
    handles = [m.register_forward_pre_hook(make_hook(n)) for n, m in layers.items()]
    seen = 0
    grads_req = {}
    try:
        if need_fisher:
            grads_req = {p: p.requires_grad for p in model.parameters()}
            for p in model.parameters():
                p.requires_grad_(False)
            for m in layers.values():
                m.weight.requires_grad_(True)
                m.weight.grad = None
        loss_fn = loss_fn or default_loss
        for batch in batches:
            seen += 1
            state["mask"] = _mask_of(batch)
            if not need_fisher:
                with torch.no_grad():
                    forward_batch(model, batch)
                continue
            loss = loss_fn(model, batch)
            loss.backward()
            for name, m in layers.items():
                g = m.weight.grad  # (m, n), or (n, m) for Conv1D
                if g is None:
                    continue
                g = g.to(torch.float64)
                rows = (g * g).sum(0 if name in transposed else 1)  # (m,)
                s = stats[name]
                s.fisher = rows if s.fisher is None else s.fisher + rows
                s.batches += 1
                m.weight.grad = None
    finally:
        for h in handles:
            h.remove()
        for p, r in grads_req.items():
            p.requires_grad_(r)
        model.train(was_training)
    if seen == 0:
        raise CalibrationError("the calibration data is empty: pass at least one batch")
    missing = [n for n in layers if n not in stats or stats[n].tokens == 0]
    if missing:
        raise CalibrationError(f"layers {missing[:5]} saw no calibration token (are they used in the forward pass?); "
                               "exclude them or use calibration data that reaches them")
    return Calibration(stats)
