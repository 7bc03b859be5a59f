"""HRA: a multiplicative update by a chain of Householder reflections.

"Bridging The Gap between Low-rank and Orthogonal Adaptation via Householder Reflection
Adaptation", Yuan et al., arXiv 2405.17484.

    W = W0·H,   H = H₁·H₂ ⋯ H_r,   Hᵢ = I − 2·ûᵢ·ûᵢᵀ,   ûᵢ = uᵢ/‖uᵢ‖

with trainable U = [u₁ … u_r] (n, r): r·n numbers per layer. H is orthogonal, so the update keeps
W0's singular values and the merge is exactly invertible (W0 = W·Hᵀ). Init (the paper's and
Hugging Face PEFT's): u₂ᵢ₋₁ = u₂ᵢ, so each pair of reflections cancels and H = I. With
``hra_apply_gs=True`` the columns are first orthonormalised by Gram-Schmidt (Q) and H = I − 2·Q·Qᵀ.
The paper's orthogonality regulariser λ·‖ÛᵀÛ − I‖²_F (used without Gram-Schmidt) is
:func:`orthogonality_penalty`; add it to the loss.

Forward, without the (n, n) matrix H, through the compact WY form of the product of reflections
(Schreiber & Van Loan, "A storage-efficient WY representation for products of Householder
transformations", 1989):

    H = I − Û·T·Ûᵀ,   T (r, r) upper triangular,   T⁻¹ = ½·I + striu(ÛᵀÛ)

so H·x = x − Û·(T·(Ûᵀ·x)): two thin (T, n)×(n, r) products and an r×r solve per step instead of r
sequential reflections, each of which autograd would keep a (T, n) activation for (the reference
path :meth:`HRA.rotate_reference`, kept for the test that they agree). With one adapter on the
layer and no dropout the layer runs as y = W0·(H·x) + b (``fused_forward``, one weight matmul);
otherwise as an additive term, out + W0·(H·x − x). ``Multiplicative`` is the wrapper that combines
this form with W0: merge W ← W0·H, unmerge W0 ← W·Hᵀ.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..core.context import BuildContext
from ..core.contract import Parameterisation, Wrapper
from ..core.geometry import LayerGeometry
from ..errors import ConfigError

OPTIONS = {"hra_apply_gs": False}


class HRA(Parameterisation):
    """Householder chain H = Π(I − 2ûᵢûᵢᵀ); trainable ``hra_u`` (n, r). Combined with W0 by ``Multiplicative``."""

    supported_inits = ("default",)
    supports_dora = False

    def __init__(self, geometry: LayerGeometry, rank: int, scale: float, dtype: torch.dtype, device=None, *,
                 ctx: BuildContext):
        super().__init__(geometry, rank, 1.0)  # no α: H is orthogonal
        if geometry.kind not in ("linear", "conv1d"):
            raise ConfigError(f"HRA adapts Linear/Conv1D layers; {ctx.layer!r} is a {geometry.kind} layer "
                              "(exclude it from targets)")
        self.apply_gs = bool(ctx.option("hra_apply_gs"))
        self.hra_u = nn.Parameter(torch.empty(geometry.in_features, rank, dtype=dtype, device=device))

    def make_wrapper(self) -> Wrapper:
        return Multiplicative()

    def default_init(self, w0: torch.Tensor) -> bool:
        n, r = self.hra_u.shape
        with torch.no_grad():
            if r % 2:
                warnings.warn("HRA's symmetric init (H = I) needs an even rank; odd rank: H starts random",
                              stacklevel=2)
                nn.init.kaiming_uniform_(self.hra_u, a=math.sqrt(5))
            else:
                half = torch.empty(n, r // 2, dtype=self.hra_u.dtype, device=self.hra_u.device)
                nn.init.kaiming_uniform_(half, a=math.sqrt(5))
                self.hra_u.copy_(torch.repeat_interleave(half, 2, dim=1))
        return False

    def _units(self) -> torch.Tensor:
        """Ĥ's directions (n, r): unit columns, or Gram-Schmidt-orthonormal columns."""
        u = self.hra_u
        if not self.apply_gs:
            return u / u.norm(dim=0)
        q = []
        for i in range(u.shape[1]):
            v = u[:, i]
            for w in q:
                v = v - (w @ v) * w
            q.append(v / v.norm())
        return torch.stack(q, dim=1)

    def wy_factor(self, u: torch.Tensor) -> torch.Tensor:
        """T (r, r) of H = I − Û·T·Ûᵀ for unit columns Û: T⁻¹ = ½·I + striu(ÛᵀÛ) (upper triangular)."""
        r = u.shape[1]
        t_inv = torch.triu(u.t() @ u, diagonal=1) + 0.5 * torch.eye(r, dtype=u.dtype, device=u.device)
        eye = torch.eye(r, dtype=u.dtype, device=u.device)
        return torch.linalg.solve_triangular(t_inv, eye, upper=True)

    def rotate(self, x: torch.Tensor) -> torch.Tensor:
        """x ↦ H·x for x (..., n), as rows of x times Hᵀ = I − Û·Tᵀ·Ûᵀ (compact WY form)."""
        u = self._units().to(x.dtype)
        if self.apply_gs:
            return x - 2 * (x @ u) @ u.t()
        return x - ((x @ u) @ self.wy_factor(u).t()) @ u.t()            # (..., r) → (..., n)

    def rotate_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The plain path of :meth:`rotate`: rows of x times Hᵀ = H_r ⋯ H₁, one reflection at a time."""
        u = self._units().to(x.dtype)
        if self.apply_gs:
            return x - 2 * (x @ u) @ u.t()
        for i in reversed(range(u.shape[1])):
            ui = u[:, i]
            x = x - 2 * (x @ ui)[..., None] * ui
        return x

    def rotation(self) -> torch.Tensor:
        """H (n, n), for merging and analysis only."""
        u = self._units()
        eye = torch.eye(u.shape[0], dtype=u.dtype, device=u.device)
        if self.apply_gs:
            return eye - 2 * u @ u.t()
        h = eye
        for i in range(u.shape[1]):
            ui = u[:, i : i + 1]
            h = h - 2 * (h @ ui) @ ui.t()
        return h

    def add_delta(self, base: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """out + W0·(H·x − x): the multiplicative update written as an additive term."""
        if x.dtype != self.hra_u.dtype:
            x = x.to(self.hra_u.dtype)
        w0 = self.geometry.matrix(base.weight)
        return out + ((self.rotate(x) - x).to(w0.dtype) @ w0.t()).to(out.dtype)

    def fused_forward(self, base: nn.Module, x: torch.Tensor, magnitude: torch.Tensor | None = None
                      ) -> torch.Tensor | None:
        """The whole layer, W0·(H·x) + b: one weight matmul instead of the additive form's two."""
        if magnitude is not None:
            return None
        w0 = self.geometry.matrix(base.weight)
        if x.dtype != self.hra_u.dtype:
            x = x.to(self.hra_u.dtype)
        bias = getattr(base, "bias", None)
        return F.linear(self.rotate(x).to(w0.dtype), w0, bias)

    def orthogonality_penalty(self) -> torch.Tensor:
        """‖ÛᵀÛ − I‖²_F: HRA's regulariser towards orthogonal reflection directions."""
        u = self._units()
        eye = torch.eye(u.shape[1], dtype=u.dtype, device=u.device)
        return (u.t() @ u - eye).square().sum()

    def extra_repr(self) -> str:
        return f"in={self.geometry.in_features}, rank={self.rank}, gram_schmidt={self.apply_gs}"


class Multiplicative(Wrapper):
    """W = W0·H for a parameterisation with ``rotate``/``rotation`` (H orthogonal): merge and exact unmerge."""

    def forward(self, delta, base, x, x_drop, out, base_out):
        return delta.add_delta(base, x_drop, out)

    def merged_matrix(self, delta, w0, remember=False):
        return w0 @ delta.rotation().to(w0.dtype)

    def unmerged_matrix(self, delta, w):
        return w @ delta.rotation().to(w.dtype).t()


def orthogonality_penalty(model: nn.Module, name: str | None = None) -> torch.Tensor:
    """Σ over the model's HRA adapters (all, or adapter ``name``) of ‖ÛᵀÛ − I‖²_F; multiply by λ, add to the loss."""
    terms = [a.delta.orthogonality_penalty() for mod in model.modules()
             for n, a in getattr(mod, "rankwise", {}).items() if isinstance(a.delta, HRA) and name in (None, n)]
    if not terms:
        raise ConfigError("the model has no HRA adapters")
    return torch.stack(terms).sum()
