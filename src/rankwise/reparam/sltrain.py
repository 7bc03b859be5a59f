"""SLTrain: W = s·B·A + S, a low-rank part plus a sparse part on a fixed random support.

"SLTrain: a sparse plus low-rank approach for parameter and memory efficient pretraining"
(Han et al., arXiv 2406.02214). The support Ω of S (|Ω| = δ·m·n entries, uniform at random, fixed for
the whole run) is drawn once; only S's values on Ω are trained.

Forward y = s·B·(A·x) + S·x + b, where S·x is computed from the values and their (row, col) indices
with sparse CSR products (:class:`SparseMatmul`: S·xᵀ, Sᵀ·gᵀ and a sampled dense product for the values
gradient), so no dense m×n W exists in forward or backward.
The dense path (``reference=True``: y = (s·B·A + scatter(S))·x + b) serves as the reference.

Memory per m×n layer: r·(m+n) + δ·m·n trainable values (+ 2·δ·m·n int32 indices in the state dict and a
CSR index cache of 3 int64 per nonzero built on first use; none trained);
Adam state 2·(r·(m+n) + δ·m·n). Init: balanced truncated SVD of the dense init for B·A, and S equal to
the SVD residual on Ω, so W matches the dense init on the support.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.sparse_matmul import CSRLayout, SparseMatmul
from .config import ReparamConfig
from .layers import balanced_factors, layer_generator, layer_rank, replace_linears
from .low_rank import LowRankLinear


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
        self._layout: tuple[tuple, CSRLayout] | None = None

    def layout(self) -> CSRLayout:
        """The CSR index arrays of the support, rebuilt only when ``rows``/``cols`` change (load, device move)."""
        key = (self.rows.device, self.rows.data_ptr(), self.rows._version, self.cols.data_ptr(), self.cols._version)
        if self._layout is None or self._layout[0] != key:
            self._layout = (key, CSRLayout(self.rows, self.cols, (self.out_features, self.in_features)))
        return self._layout[1]

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
        x2d = x.reshape(-1, self.in_features)
        sparse = SparseMatmul.apply(x2d, self.values, self.layout()).reshape(*lead, self.out_features)
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
