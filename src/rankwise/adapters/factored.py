"""A base for parameterisations whose ΔW is a product of two (formed-per-step) factors.

Many reduced-parameter methods train a few numbers that scale or combine frozen tensors, yet
their update is still ``ΔW = s·B_eff·A_eff`` with a small inner dimension k:

* VeRA:     B_eff = diag(b)·B,             A_eff = diag(d)·A            (k = r)
* NOLA:     B_eff = Σ βⱼ·Bⱼ,               A_eff = Σ αᵢ·Aᵢ              (k = r)
* RandLoRA: B_eff = [B₁ … B_N],            A_eff = [diag(λₖ)·Aₖ·diag(γₖ)]ₖ (k = r·N)
* SVFit / LoLDU / QR-LoRA: a frozen left factor times a trainable diagonal times a frozen right one
* ABBA:     the row-wise Khatri-Rao products of two LoRA pairs          (k = r₁·r₂)

A subclass only says how to form the two factors (:meth:`factors`, O(k·(m+n)) work); this class
supplies the efficient forward ``out + s·B_eff·(A_eff·x)`` (never the m × n product, and any layer
kind the geometry supports), ``delta_matrix`` for merging, and DoRA's row norms in factored form,
so the DoRA wrapper works on every one of them.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.contract import Parameterisation
from ..core.geometry import acc_dtype


class FactoredDelta(Parameterisation):
    """ΔW = s·B_eff·A_eff with B_eff (m, k) and A_eff (k, n) formed by :meth:`factors`."""

    supported_inits = ("default",)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(B_eff (m, k), A_eff (k, n)), differentiable in the trainable tensors, scale not included."""
        raise NotImplementedError

    def add_delta(self, base: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        b, a = self.factors()
        if x.is_floating_point() and x.dtype != a.dtype:
            x = x.to(a.dtype)
        h = self.geometry.first(base, x, a)  # (..., k)
        return self.geometry.second_add(out, h, b, self.scale)

    def delta_matrix(self) -> torch.Tensor:
        b, a = self.factors()
        return self.scale * (b @ a)  # (m, n)

    def row_norms_with(self, w0: torch.Tensor) -> torch.Tensor:
        """‖W0 + s·B·A‖ per row without the (m, n) product (as ``LoRA.row_norms_with``)."""
        with torch.no_grad():
            w0 = w0.to(acc_dtype(w0.dtype))
            b, a = (t.to(w0.dtype) for t in self.factors())
            s = self.scale
            sq = torch.linalg.vector_norm(w0, dim=1).square()
            sq = sq + 2 * s * (b * (w0 @ a.t())).sum(1)
            sq = sq + s * s * ((b @ (a @ a.t())) * b).sum(1)
            return sq.clamp_min(0).sqrt()

    def extra_repr(self) -> str:
        g = self.geometry
        return f"{g.kind}, in={g.in_features}, out={g.out_features}, rank={self.rank}, scale={self.scale:g}"
