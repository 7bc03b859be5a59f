"""SVFT: a sparse trainable matrix between W0's singular vectors.

"SVFT: Parameter-Efficient Fine-Tuning with Singular Vectors", Lingam et al., arXiv 2405.19597.

    W0 = U·diag(S)·Vᵀ (thin SVD, k = min(m, n)),   W = U·(diag(S) + M)·Vᵀ   ⇒   ΔW = U·M·Vᵀ

with M (k, k) sparse on a fixed pattern and only its non-zeros trained (nnz(M) numbers):

* ``"plain"``: the diagonal (SVFT^P, k numbers);
* ``"banded"``: |i − j| ≤ ``svft_d`` (SVFT^B_d);
* ``"random"``: the diagonal plus ``svft_d``·k seeded random off-diagonal entries (SVFT^R).

M starts at 0. Forward without any (m, n) or (k, k) matrix: h = Vᵀ·x (T, k), h' = M·h by a
gather/scatter over the nnz entries, out + U·h'. U and V (the full singular bases, as large as W0)
are persistent buffers and saved; the pattern is regenerated from the options. No α/r scale.
The paper's learnable gating of off-diagonal entries is not implemented.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.context import BuildContext
from ..core.contract import Parameterisation
from ..core.geometry import LayerGeometry
from ..errors import ConfigError

OPTIONS = {"svft_pattern": "banded", "svft_d": 2, "svft_seed": 0}
PATTERNS = ("plain", "banded", "random")


def svft_pattern(k: int, pattern: str, d: int, seed: int) -> torch.Tensor:
    """(2, nnz) row/column indices of M's trainable entries."""
    idx = torch.arange(k)
    if pattern == "plain":
        return torch.stack([idx, idx])
    if pattern == "banded":
        rows, cols = [], []
        for off in range(-d, d + 1):
            i = idx[max(0, -off): k - max(0, off)]
            rows.append(i)
            cols.append(i + off)
        return torch.stack([torch.cat(rows), torch.cat(cols)])
    g = torch.Generator().manual_seed(int(seed))
    off = torch.randperm(k * k, generator=g)
    off = off[off // k != off % k][: d * k]  # off-diagonal picks
    return torch.stack([torch.cat([idx, off // k]), torch.cat([idx, off % k])])


class SVFT(Parameterisation):
    """ΔW = U·M·Vᵀ with M sparse; trainable ``svft_values`` (nnz,)."""

    supported_inits = ("default",)

    def __init__(self, geometry: LayerGeometry, rank: int, scale: float, dtype: torch.dtype, device=None, *,
                 ctx: BuildContext):
        super().__init__(geometry, rank, 1.0)
        if geometry.kind not in ("linear", "conv1d"):
            raise ConfigError(f"SVFT adapts Linear/Conv1D layers; {ctx.layer!r} is a {geometry.kind} layer")
        pattern = ctx.option("svft_pattern")
        if pattern not in PATTERNS:
            raise ConfigError(f"svft_pattern must be one of {PATTERNS}, got {pattern!r}")
        m, n = geometry.out_features, geometry.in_features
        k = min(m, n)
        idx = svft_pattern(k, pattern, int(ctx.option("svft_d")), ctx.option("svft_seed"))
        self.register_buffer("svft_index", idx.to(device), persistent=False)
        self.register_buffer("svft_U", torch.zeros(m, k, dtype=dtype, device=device))
        self.register_buffer("svft_Vh", torch.zeros(k, n, dtype=dtype, device=device))
        self.svft_values = nn.Parameter(torch.zeros(idx.shape[1], dtype=dtype, device=device))

    def default_init(self, w0: torch.Tensor) -> bool:
        u, _, vh = torch.linalg.svd(w0.float(), full_matrices=False)
        with torch.no_grad():
            self.svft_U.copy_(u.to(self.svft_U.dtype))
            self.svft_Vh.copy_(vh.to(self.svft_Vh.dtype))
            self.svft_values.zero_()
        return False

    def core(self) -> torch.Tensor:
        """M as a dense (k, k) matrix, for merging and analysis."""
        k = self.svft_U.shape[1]
        m = torch.zeros(k, k, dtype=self.svft_values.dtype, device=self.svft_values.device)
        return m.index_put((self.svft_index[0], self.svft_index[1]), self.svft_values, accumulate=True)

    def add_delta(self, base: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if x.dtype != self.svft_values.dtype:
            x = x.to(self.svft_values.dtype)
        h = x @ self.svft_Vh.t()                                        # (..., k)
        rows, cols = self.svft_index
        h2 = torch.zeros_like(h).index_add_(-1, rows, h[..., cols] * self.svft_values)  # M·h
        return out + (h2 @ self.svft_U.t()).to(out.dtype)

    def delta_matrix(self) -> torch.Tensor:
        return self.svft_U @ self.core() @ self.svft_Vh

    def extra_repr(self) -> str:
        return f"in={self.geometry.in_features}, out={self.geometry.out_features}, nnz={self.svft_values.numel()}"
