"""Products with a sparse matrix on a fixed support, trained through its values: y = S·x.

S (m, n) holds ``values`` at (row, col) pairs that never change during training (SLTrain's random
support, SVFT's pattern inside W0's singular bases). Forward and backward run as sparse CSR × dense
products, and the values' gradient as the sampled dense product on the support
(``torch.sparse.sampled_addmm``), so neither a dense (m, n) S nor an (nnz, T) gather temporary exists.
The plain path it must agree with is the dense ``scatter(values) @ x`` (tests check both).
"""

from __future__ import annotations

import warnings

import torch


class CSRLayout:
    """The fixed support as CSR index arrays for S (m, n) and for Sᵀ (n, m), built once per support/device.

    ``perm`` reorders the row-major values into Sᵀ's row-major (column-major of S) order.
    """

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, shape: tuple[int, int]):
        m, n = shape
        rows, cols = rows.long(), cols.long()
        self.shape = shape
        self.crow = torch.zeros(m + 1, dtype=torch.long, device=rows.device)
        self.crow[1:] = torch.bincount(rows, minlength=m).cumsum(0)
        self.col = cols
        self.perm = torch.argsort(cols * m + rows)
        self.crow_t = torch.zeros(n + 1, dtype=torch.long, device=rows.device)
        self.crow_t[1:] = torch.bincount(cols, minlength=n).cumsum(0)
        self.col_t = rows[self.perm]

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        """S as a sparse CSR tensor (m, n) holding ``values`` (row-major order)."""
        with warnings.catch_warnings():  # torch marks sparse CSR as beta
            warnings.simplefilter("ignore")
            return torch.sparse_csr_tensor(self.crow, self.col, values, self.shape, check_invariants=False)

    def transposed(self, values: torch.Tensor) -> torch.Tensor:
        """Sᵀ as a sparse CSR tensor (n, m)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.sparse_csr_tensor(self.crow_t, self.col_t, values[self.perm], self.shape[::-1],
                                           check_invariants=False)


class SparseMatmul(torch.autograd.Function):
    """y = S·x for S given by ``values`` on a fixed CSR support; x (T, n) -> y (T, m).

    Forward Sᵀ-free: yᵀ = S·xᵀ (sparse × dense). Backward: ∂x = (Sᵀ·∂yᵀ)ᵀ and
    ∂values_k = ⟨∂y[:, row_k], x[:, col_k]⟩, the sampled product (∂yᵀ·x) on the support
    (``torch.sparse.sampled_addmm``). No dense m×n matrix and no (nnz, T) temporary.
    """

    @staticmethod
    def forward(ctx, x, values, layout: CSRLayout):
        ctx.save_for_backward(x, values)
        ctx.layout = layout
        return (layout.matrix(values) @ x.t().contiguous()).t()     # (m, T) -> (T, m)

    @staticmethod
    def backward(ctx, grad_out):
        x, values = ctx.saved_tensors
        layout = ctx.layout
        gt = grad_out.t().contiguous()                                # (m, T)
        grad_x = grad_values = None
        if ctx.needs_input_grad[0]:
            grad_x = (layout.transposed(values) @ gt).t()             # (n, T) -> (T, n)
        if ctx.needs_input_grad[1]:
            sampled = torch.sparse.sampled_addmm(layout.matrix(values.detach()), gt, x, beta=0.0)
            grad_values = sampled.values()
        return grad_x, grad_values, None
