"""The contract every adapter meets.

An adapter on one layer is two orthogonal choices (see ARCHITECTURE.md):

* a **parameterisation** — what form ΔW takes (LoRA's s·B·A; later VeRA, MoRA, HRA, …). It owns
  the trainable tensors, computes ``ΔW·x`` factored, and can form the (m × n) ``delta_matrix()``
  for merging and analysis (never in the training hot path);
* a **wrapper** — how ΔW is combined with W0: additive (W0 + ΔW) or DoRA's magnitude/direction
  split, which works on top of *any* parameterisation.

Initialisations (``rankwise.init``) and gradient rules (``rankwise.optim``) act on these objects
from outside, so a new method is a new parameterisation, wrapper, initialiser or rule, and every
combination of them works.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .geometry import LayerGeometry, acc_dtype


class Parameterisation(nn.Module):
    """What form ΔW (already scaled) takes. Subclasses hold the trainable tensors.

    Subclasses implement :meth:`add_delta` (the efficient forward) and :meth:`delta_matrix`.

    Attributes:
        geometry: the wrapped layer's shapes and conventions.
        rank: the adapter's rank r.
        scale: the multiplier s applied to the raw factor product (α/r, α/√r, …).
        fast_params: names of tensors that LoRA+ gives the larger learning rate.
    """

    fast_params: ClassVar[tuple[str, ...]] = ()
    # initialisers this form accepts (None: every LoRA-shaped init); forms with their own init say ("default",)
    supported_inits: ClassVar[tuple[str, ...] | None] = None
    supports_dora: ClassVar[bool] = True   # False for forms that are not additive (HRA)
    mergeable: ClassVar[bool] = True       # False when ΔW·x is not linear in x (merge raises)

    def __init__(self, geometry: LayerGeometry, rank: int, scale: float):
        super().__init__()
        self.geometry = geometry
        self.rank = rank
        self.scale = scale

    def add_delta(self, base: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Return ``out + ΔW·x`` computed without forming ΔW. ``x`` is the (dropped-out) input."""
        raise NotImplementedError

    def delta_matrix(self) -> torch.Tensor:
        """ΔW in the (m, n) matrix view, scale included. For merge and analysis only."""
        raise NotImplementedError

    def fused_forward(self, base: nn.Module, x: torch.Tensor, magnitude: torch.Tensor | None = None
                      ) -> torch.Tensor | None:
        """Optional fast path: base(x) + ΔW·x as one op, or None (the default) to use the plain path.

        With ``magnitude`` (from DoRA) the op must return m ⊙ (W0 + ΔW)·x / ‖W0 + ΔW‖_row + b.
        """
        return None

    def row_norms_with(self, w0: torch.Tensor) -> torch.Tensor:
        """‖W0 + ΔW‖ per row (length m), fp32 (fp64 for fp64), no grad. Subclasses override with a factored form."""
        with torch.no_grad():
            w0 = w0.to(acc_dtype(w0.dtype))
            return torch.linalg.vector_norm(w0 + self.delta_matrix().to(w0.dtype), dim=1)

    def default_init(self, w0: torch.Tensor) -> bool | None:
        """The form's own starting point, run by ``init="default"``; None (LoRA) uses the initialiser's rule.

        Forms whose paper fixes the init (VeRA's d = 0.1, b = 0; SVFit's σ = top singular values, …)
        override this and return whether ΔW₀ must be subtracted from W0 (always False here: they
        start at ΔW = 0 by construction).
        """
        return None

    def make_wrapper(self) -> Wrapper | None:
        """A wrapper this form requires (HRA's multiplicative one), or None for the config's choice."""
        return None

    # -- snapshot of the initial tensors, for inits that move W0 (PiSSA, OLoRA, MiLoRA, …) --
    def remember_initial(self) -> None:
        """Keep a frozen copy of every parameter as buffer ``<name>_init``.

        An init that subtracts its starting ΔW₀ from W0 needs ΔW₀ later: to restore W0 on unload, and
        to save the adapter relative to the *public* base weights (ΔW_saved = ΔW − ΔW₀).
        """
        for name, p in self.named_parameters(recurse=False):
            self.register_buffer(f"{name}_init", p.detach().clone())

    @property
    def moves_base(self) -> bool:
        """True when the init subtracted ΔW₀ from the base weight (see :meth:`remember_initial`)."""
        return any(n.endswith("_init") for n, _ in self.named_buffers(recurse=False))

    def initial_delta_matrix(self) -> torch.Tensor:
        """ΔW₀ of the snapshot, (m, n); requires :meth:`remember_initial` to have run."""
        raise NotImplementedError

    def add_initial_delta(self, base: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out + ΔW₀·x``, factored: how ``disabled()`` recovers the base model without touching W0."""
        raise NotImplementedError


class Wrapper(nn.Module):
    """How ΔW is combined with W0. The default is additive: W = W0 + ΔW."""

    def forward(self, delta: Parameterisation, base: nn.Module, x: torch.Tensor, x_drop: torch.Tensor,
                out: torch.Tensor, base_out: torch.Tensor) -> torch.Tensor:
        """Return the layer output with this adapter applied.

        Args:
            delta: the parameterisation.
            base: the wrapped layer (frozen).
            x: the layer input; x_drop: the same after the adapter's dropout.
            out: output so far (base plus earlier adapters); base_out: the base layer's own output.
        """
        return delta.add_delta(base, x_drop, out)

    def fused_forward(self, delta: Parameterisation, base: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
        """The whole layer output in one fused op if the parameterisation offers one, else None."""
        return delta.fused_forward(base, x)

    def merged_matrix(self, delta: Parameterisation, w0: torch.Tensor, remember: bool = False) -> torch.Tensor:
        """The merged (m, n) weight, computed in w0's dtype (fp32 or fp64, see ``acc_dtype``).

        ``remember=True`` (a real merge) lets a wrapper keep what :meth:`unmerged_matrix` needs.
        """
        return w0 + delta.delta_matrix().to(w0.dtype)

    def unmerged_matrix(self, delta: Parameterisation, w: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`merged_matrix`."""
        return w - delta.delta_matrix().to(w.dtype)


class Adapter(nn.Module):
    """One named adapter on one layer: a parameterisation, a wrapper, and input dropout.

    ``forward`` is the efficient path used in training; ``delta_weight`` forms the stored-layout
    ΔW, for merging and analysis only.
    """

    def __init__(self, delta: Parameterisation, wrapper: Wrapper, dropout: float = 0.0):
        super().__init__()
        self.delta = delta
        self.wrapper = wrapper
        self.dropout = dropout  # p, applied functionally (no module per layer)

    @property
    def geometry(self) -> LayerGeometry:
        return self.delta.geometry

    def extra_repr(self) -> str:
        return f"dropout={self.dropout}" if self.dropout else ""

    def forward(self, base: nn.Module, x: torch.Tensor, out: torch.Tensor, base_out: torch.Tensor) -> torch.Tensor:
        x_drop = F.dropout(x, self.dropout, self.training) if self.dropout > 0 and self.training else x
        return self.wrapper(self.delta, base, x, x_drop, out, base_out)

    def fused_forward(self, base: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
        """The full layer output via the parameterisation's fused path, when nothing else is in the way."""
        if self.training and self.dropout > 0:
            return None
        return self.wrapper.fused_forward(self.delta, base, x)

    def merged_weight(self, weight: torch.Tensor, remember: bool = False) -> torch.Tensor:
        """The base weight with this adapter folded in: fp32 (fp64 for fp64) arithmetic, stored layout."""
        g = self.geometry
        w0 = g.matrix(weight.to(acc_dtype(weight.dtype)))
        return g.to_weight(self.wrapper.merged_matrix(self.delta, w0, remember))

    def unmerged_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`merged_weight`: the base weight with this adapter taken out."""
        g = self.geometry
        return g.to_weight(self.wrapper.unmerged_matrix(self.delta, g.matrix(weight.to(acc_dtype(weight.dtype)))))

    def regenerated_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{state key: shape}`` of the tensors rebuilt from a seed instead of saved (non-persistent buffers)."""
        out = {}
        for prefix, module in self.named_modules():
            for b in module._non_persistent_buffers_set:
                t = module._buffers.get(b)
                if t is not None:
                    out[f"{prefix}.{b}" if prefix else b] = tuple(t.shape)
        return out

    def delta_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """ΔW in the stored layout (W_merged − W0), fp32 or fp64; for merge and analysis, not training."""
        return self.merged_weight(weight) - weight.to(acc_dtype(weight.dtype))
