"""SLTrain: W = s·B·A + S, a low-rank part plus a sparse part on a fixed random support.

"SLTrain: a sparse plus low-rank approach for parameter and memory efficient pretraining"
(Han et al., arXiv 2406.02214). The support Ω of S (|Ω| = δ·m·n entries, uniform at random, fixed for
the whole run) is drawn once; only S's values on Ω are trained.

Forward y = s·B·(A·x) + S·x + b, where S·x is computed from the values and their (row, col) indices
by gather / index-add (:class:`SparseMatmul`), so no dense m×n W exists in forward or backward.
The dense path (``reference=True``: y = (s·B·A + scatter(S))·x + b) serves as the reference.

Memory per m×n layer: r·(m+n) + δ·m·n trainable values (+ 2·δ·m·n int32 indices, not trained);
Adam state 2·(r·(m+n) + δ·m·n). Init: balanced truncated SVD of the dense init for B·A, and S equal to
the SVD residual on Ω, so W matches the dense init on the support.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ReparamConfig
from .layers import balanced_factors, layer_generator, layer_rank, replace_linears
from .low_rank import LowRankLinear

_CHUNK = 1 << 22  # elements of the (nnz_chunk, T) temporaries


def _chunks(nnz: int, tokens: int):
    step = max(1, _CHUNK // max(tokens, 1))
    return range(0, nnz, step), step


class SparseMatmul(torch.autograd.Function):
    """y = S·x for S given by ``values`` at (``rows``, ``cols``); x (T, n) -> y (T, m).

    Works on transposed activations so every gather / scatter moves contiguous rows, in chunks of
    nonzeros so temporaries stay ≤ 4M elements. Backward: ∂x = Sᵀ·∂y, ∂values_k = ⟨∂y[:, row_k], x[:, col_k]⟩.
    """

    @staticmethod
    def forward(ctx, x, values, rows, cols, out_features):
        xt = x.t().contiguous()                                       # (n, T)
        yt = xt.new_zeros(out_features, xt.shape[1])                  # (m, T)
        starts, step = _chunks(values.numel(), xt.shape[1])
        for s in starts:
            sl = slice(s, s + step)
            yt.index_add_(0, rows[sl], xt.index_select(0, cols[sl]) * values[sl, None])
        ctx.save_for_backward(xt, values, rows, cols)
        return yt.t()

    @staticmethod
    def backward(ctx, grad_out):
        xt, values, rows, cols = ctx.saved_tensors
        gt = grad_out.t().contiguous()                                # (m, T)
        grad_x = grad_values = None
        if ctx.needs_input_grad[0]:
            grad_xt = xt.new_zeros(xt.shape)                          # (n, T)
        if ctx.needs_input_grad[1]:
            grad_values = torch.empty_like(values)
        starts, step = _chunks(values.numel(), xt.shape[1])
        for s in starts:
            sl = slice(s, s + step)
            g_rows = gt.index_select(0, rows[sl])                     # (chunk, T)
            if ctx.needs_input_grad[1]:
                grad_values[sl] = (g_rows * xt.index_select(0, cols[sl])).sum(1)
            if ctx.needs_input_grad[0]:
                grad_xt.index_add_(0, cols[sl], g_rows * values[sl, None])
        if ctx.needs_input_grad[0]:
            grad_x = grad_xt.t()
        return grad_x, grad_values, None, None, None


class SparseLowRankLinear(LowRankLinear):
    """y = s·B·(A·x) + S·x + b; ``values`` (nnz,) trained on the fixed support (``rows``, ``cols``).

    Attributes:
        reference: use the plain dense path (forms W each call; for tests and checks only).
    """

    def __init__(self, in_features: int, out_features: int, rank: int, nnz: int, scale: float = 1.0,
                 bias: torch.Tensor | None = None, dtype: torch.dtype | None = None, device=None):
        super().__init__(in_features, out_features, rank, scale, bias, dtype, device)
        self.values = nn.Parameter(torch.zeros(nnz, dtype=dtype, device=device))
        self.register_buffer("rows", torch.zeros(nnz, dtype=torch.int32, device=device))
        self.register_buffer("cols", torch.zeros(nnz, dtype=torch.int32, device=device))
        self.reference = False

    @classmethod
    def from_linear(cls, layer: nn.Linear, rank: int, density: float, scale: float = 1.0,
                    generator: torch.Generator | None = None) -> SparseLowRankLinear:
        """Draw the support (row-major order), factor the dense init, put the residual on the support."""
        m, n = layer.out_features, layer.in_features
        nnz = max(1, round(density * m * n))
        w = layer.weight
        new = cls(n, m, rank, nnz, scale, layer.bias, w.dtype, w.device)
        flat = torch.randperm(m * n, generator=generator)[:nnz].sort().values
        b, a = balanced_factors(w, rank, scale)
        with torch.no_grad():
            new.rows.copy_(flat // n)
            new.cols.copy_(flat % n)
            new.A.copy_(a)
            new.B.copy_(b)
            resid = w.detach() - scale * (b @ a)
            new.values.copy_(resid[new.rows.long(), new.cols.long()])
        return new

    def sparse_dense(self) -> torch.Tensor:
        """S as a dense (m, n) matrix (differentiable in ``values``); reference path only."""
        s = self.values.new_zeros(self.out_features, self.in_features)
        return s.index_put((self.rows.long(), self.cols.long()), self.values)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reference:
            return nn.functional.linear(x, self.dense_weight(), self.bias)
        lead = x.shape[:-1]
        sparse = SparseMatmul.apply(x.reshape(-1, self.in_features), self.values, self.rows, self.cols,
                                    self.out_features).reshape(*lead, self.out_features)
        out = self.low_rank(x) + sparse
        return out if self.bias is None else out + self.bias

    def dense_weight(self) -> torch.Tensor:
        return self.scale * (self.B @ self.A) + self.sparse_dense()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, nnz={self.values.numel()}"


def apply_sltrain(model: nn.Module, config: ReparamConfig) -> list[str]:
    """Replace the selected linears by :class:`SparseLowRankLinear` (support seeded by config.seed, layer index)."""
    def build(i, name, layer):
        r = layer_rank(config, layer)
        return SparseLowRankLinear.from_linear(layer, r, config.density, config.scale(r),
                                               layer_generator(config.seed, i))

    return replace_linears(model, config, build)
