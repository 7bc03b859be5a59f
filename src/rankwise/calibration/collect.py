"""Hooks that read a model over a few calibration batches, in bounded memory, and leave it as it was.

Two collectors, shared by every data-driven initialiser:

* :func:`collect_gradients` — the mean full-weight gradient ∂L/∂W0 of each targeted layer over the
  batches (LoRA-GA, LoRA-One, LoRA-SB). Only the targeted weights require grad during the pass, so
  no other weight gradient is ever allocated; memory is one (m, n) buffer per targeted layer.
* :func:`collect_inputs` — streaming statistics of each targeted layer's *input*: Σxxᵀ, Σx and
  token/sample counts (EVA's PCA, CorDA's covariance). Memory is one (n, n) matrix per distinct
  layer input, independent of how many batches are read; layers fed the very same tensor
  (q/k/v projections, gate/up projections) share one accumulator.

Both run the model in eval mode (no dropout: the statistics are deterministic), and restore every
module's training flag, every parameter's ``requires_grad`` and every existing ``.grad`` afterwards,
even when a batch fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from ..core.geometry import LayerGeometry
from ..errors import ConfigError
from .batches import LossFn, batch_loss, call_model, iter_batches, token_mask


@contextlib.contextmanager
def preserved(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode; on exit restore modes, ``requires_grad`` flags and ``.grad`` tensors."""
    modes = [(m, m.training) for m in model.modules()]
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    try:
        model.eval()
        yield
    finally:
        for m, t in modes:
            m.training = t
        for p, f, g in zip(params, flags, grads, strict=True):
            p.requires_grad_(f)
            p.grad = g


def collect_gradients(model: nn.Module, layers: dict[str, tuple[nn.Module, LayerGeometry]], calibration: Iterable,
                      loss_fn: LossFn | None = None, limit: int | None = None) -> dict[str, torch.Tensor]:
    """Mean gradient of the loss w.r.t. each layer's weight, in the (m, n) matrix view, fp32 (fp64 stays fp64).

    G = (1/N)·Σ_batches ∂L_b/∂W0. A layer that the loss does not reach gets G = 0.
    """
    with preserved(model):
        for p in model.parameters():
            p.requires_grad_(False)
            p.grad = None
        for module, _ in layers.values():
            module.weight.requires_grad_(True)
        count = 0
        for i, batch in iter_batches(calibration, limit):
            with torch.enable_grad():
                loss = batch_loss(call_model(model, batch, i), batch, i, loss_fn)
                loss.backward()
            count += 1
        out = {}
        for name, (module, geo) in layers.items():
            w = module.weight
            acc = torch.promote_types(w.dtype, torch.float32)
            g = w.grad if w.grad is not None else torch.zeros_like(w)
            out[name] = geo.matrix(g.detach()).to(acc) / count
    return out


class InputStats:
    """Streaming statistics of a layer's inputs x (rows of length n), fp32 (fp64 for fp64 inputs).

    Attributes:
        xtx: Σ xᵀx over tokens (n, n) — with ``normalise``, each sample is first divided by its
            max value, as CorDA's reference code and PEFT do.
        xsum: Σ x over tokens (n,).
        tokens: number of rows seen; samples: number of sequences seen.
    """

    def __init__(self, n: int, normalise: bool = False):
        self.n, self.normalise = n, normalise
        self.xtx: torch.Tensor | None = None
        self.xsum: torch.Tensor | None = None
        self.tokens = 0
        self.samples = 0

    def update(self, x: torch.Tensor, mask: torch.Tensor | None) -> None:
        """Add one layer input x of shape (..., T, n) or (T, n); ``mask`` (..., T) selects the tokens that count."""
        acc = torch.promote_types(x.dtype, torch.float32)
        x = x.detach().to(acc)
        seqs = x.reshape(-1, *x.shape[-2:]) if x.dim() > 2 else x.reshape(1, -1, self.n)  # (S, T, n)
        if mask is not None and tuple(mask.shape) == tuple(x.shape[:-1]):
            m = mask.reshape(seqs.shape[:2]).to(x.device)
        else:
            m = None
        if self.xtx is None:
            self.xtx = torch.zeros(self.n, self.n, dtype=acc, device=x.device)
            self.xsum = torch.zeros(self.n, dtype=acc, device=x.device)
        if self.normalise:  # per sample, like CorDA's code: x / |max(x)|
            for s in range(seqs.shape[0]):
                xs = seqs[s] if m is None else seqs[s][m[s]]
                if xs.shape[0] == 0:
                    continue
                xs = xs / xs.max().abs()
                self.xtx.addmm_(xs.t(), xs)
                self.xsum.add_(xs.sum(0))
                self.tokens += xs.shape[0]
                self.samples += 1
            return
        rows = seqs.reshape(-1, self.n) if m is None else seqs[m]
        self.xtx.addmm_(rows.t(), rows)
        self.xsum.add_(rows.sum(0))
        self.tokens += rows.shape[0]
        self.samples += seqs.shape[0]

    def covariance(self, centred: bool = True) -> torch.Tensor:
        """Centred sample covariance (n, n) over tokens; ``centred=False``: Σxxᵀ / samples (CorDA's C)."""
        if not centred:
            return self.xtx / max(self.samples, 1)
        mean = self.xsum / self.tokens
        return (self.xtx - self.tokens * torch.outer(mean, mean)) / max(self.tokens - 1, 1)


class _InputHook:
    """Forward hook feeding a layer's input into its :class:`InputStats`.

    Layers called with the very same tensor object as the previous hooked call (q/k/v, gate/up) share
    the previous layer's statistics: the sharing is decided on the first batch and checked after.
    """

    def __init__(self, registry: _Hooks, name: str, n: int, normalise: bool):
        self.registry, self.name, self.n, self.normalise = registry, name, n, normalise

    def __call__(self, module, args, output):
        reg = self.registry
        x = args[0] if args else None
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.shape[-1] != self.n:
            raise ConfigError(f"layer {self.name!r} received an input of type {type(x).__name__} "
                              f"{tuple(getattr(x, 'shape', ()))}; activation-based inits read floating-point "
                              f"inputs with {self.n} features")
        last = reg.last
        same = last is not None and x is last[0] and x._version == last[1]
        if self.name not in reg.owner:  # first time: join the previous layer's statistics if fed the same tensor
            reg.owner[self.name] = reg.owner[last[2]] if same else self.name
            if not same:
                reg.stats[self.name] = InputStats(self.n, self.normalise)
        owner = reg.owner[self.name]
        if owner != self.name:
            if not same or reg.owner[last[2]] != owner:
                raise RuntimeError(f"layer {self.name!r} shared its input with {owner!r} on the first calibration "
                                   "batch but not on a later one; pass batches of one structure")
        else:
            reg.stats[owner].update(x, reg.mask)
        reg.last = (x, x._version, self.name)


class _Hooks:
    def __init__(self):
        self.stats: dict[str, InputStats] = {}
        self.owner: dict[str, str] = {}
        self.mask: torch.Tensor | None = None
        self.last: tuple[torch.Tensor, int, str] | None = None


def collect_inputs(model: nn.Module, layers: dict[str, tuple[nn.Module, LayerGeometry]], calibration: Iterable,
                   normalise: bool = False, limit: int | None = None) -> dict[str, InputStats]:
    """:class:`InputStats` of each layer's input over the calibration batches (forward passes only, no grad).

    Layers fed the same tensor map to the same ``InputStats`` object. Dict batches with an
    ``attention_mask`` (and ``labels``, where −100 marks ignored tokens) count only the unmasked tokens.
    """
    reg = _Hooks()
    handles = []
    try:
        with preserved(model), torch.no_grad():
            for name, (module, geo) in layers.items():
                handles.append(module.register_forward_hook(_InputHook(reg, name, geo.in_features, normalise)))
            for i, batch in iter_batches(calibration, limit):
                reg.mask, reg.last = token_mask(batch), None
                call_model(model, batch, i)
            reg.last = reg.mask = None
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in layers if n not in reg.owner]
    if missing:
        raise ConfigError(f"layers {missing} were never called on the calibration batches; exclude them from "
                          "targets or pass batches that reach them")
    return {n: reg.stats[reg.owner[n]] for n in layers}
