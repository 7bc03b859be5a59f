"""SVFT: a sparse trainable matrix between W0's singular vectors.

"SVFT: Parameter-Efficient Fine-Tuning with Singular Vectors", Lingam et al., arXiv 2405.19597;
reference code github.com/VijayLingam95/SVFT (``svft/svft_layers.py``), followed where it and the
paper differ.

    W0 = U·diag(S)·Vᵀ (thin SVD, k = min(m, n)),   W = U·(diag(S) + M_eff)·Vᵀ   ⇒   ΔW = U·M_eff·Vᵀ
    M_eff = σ(g)·M          (``svft_gate=True``, the reference)   or   M_eff = M   (``svft_gate=False``)

with M (k, k) sparse on a fixed pattern, only its nnz non-zeros trained, and g one learnable scalar
per layer (the reference's ``gate``): trainable numbers per layer nnz(M) + 1 (nnz(M) without the gate).

Patterns (``svft_pattern``; ``svft_d`` = d):

* ``"plain"``: the diagonal (SVFT^P, k entries);
* ``"banded"``: |i − j| ≤ d (SVFT^B_d, nnz = k(2d+1) − d(d+1));
* ``"random"``: the diagonal plus d·k seeded random distinct off-diagonal entries (SVFT^R). The reference
  instead draws k(2d+1) − d(d+1) (row, column) pairs uniformly *with* replacement, unseeded;
* ``"top_k"``: the nnz = k(2d+1) − d(d+1) entries (as many as banded) with the largest *signed* value of
  an "alignment" matrix A (k, k), chosen once from W0's SVD. As in the reference code: A = U·V
  (entry (i, j) = Σₗ U[i, l]·V[l, j]) when W0 is square, A = U when m < n, A = Vᵀ when m > n. The paper
  describes A[i, j] = uᵢᵀvⱼ (= UᵀV for square W0); the reference's matrix is what the published results
  used, so it is the one implemented. The choice depends on the SVD's sign convention, so the indices
  are saved with the adapter (for the other patterns they are regenerated from the options).

Gate (``svft_gate``, default True as in the reference, which always gates): g is initialised to 0
(σ(g) = ½) and multiplies *every* trainable entry of M, diagonal included (not only the off-diagonal
ones); the frozen singular values diag(S) are not gated.

Init (``svft_init_zero``): the reference draws M's entries Kaiming-normal with fan-in nnz, i.e.
N(0, 2/nnz) (its ``kaiming_normal_`` on a (1, nnz) tensor), so the adapted model does *not* start exactly
at the base model (ΔW₀ = ½·U·M₀·Vᵀ, small). That is the default here; ``svft_init_zero=True`` starts at
M = 0 (then g gets no gradient until M has moved).

Forward without any (m, n) or (k, k) matrix: h = Vᵀ·x (T, k), h' = M_eff·h as a sparse CSR product on the
fixed pattern (σ(g) folded into the nnz values; ``core.sparse_matmul``, which keeps only h for backward,
where a gather/scatter over the nnz entries, the plain path :meth:`SVFT.apply_core` ``reference=True``,
keeps a (T, nnz) temporary), out + U·h'. U and V (the full singular bases, as large as W0)
are persistent buffers and saved. No α/r scale.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..core.context import BuildContext
from ..core.contract import Parameterisation
from ..core.geometry import LayerGeometry
from ..core.sparse_matmul import CSRLayout, SparseMatmul
from ..errors import ConfigError

OPTIONS = {"svft_pattern": "banded", "svft_d": 2, "svft_seed": 0, "svft_gate": True, "svft_init_zero": False}
PATTERNS = ("plain", "banded", "random", "top_k")


def banded_count(k: int, d: int) -> int:
    """nnz of the band |i − j| ≤ d of a (k, k) matrix: k(2d+1) − d(d+1) while d < k (the reference's count)."""
    d = min(d, k - 1)
    return k * (2 * d + 1) - d * (d + 1)


def svft_pattern(k: int, pattern: str, d: int, seed: int) -> torch.Tensor:
    """(2, nnz) row/column indices of M's trainable entries for the W0-independent patterns."""
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


def alignment(u: torch.Tensor, vh: torch.Tensor) -> torch.Tensor:
    """The (k, k) matrix whose largest entries the top-k pattern keeps, as the reference code forms it.

    ``u`` is U (m, k), ``vh`` is Vᵀ (k, n). Square W0: U·V; m < n: U (square); m > n: Vᵀ (square).
    """
    if u.shape == vh.shape:
        return u @ vh.t()
    return u if u.shape[0] == u.shape[1] else vh


def top_k_pattern(u: torch.Tensor, vh: torch.Tensor, count: int) -> torch.Tensor:
    """(2, count) row/column indices of the ``count`` largest entries of :func:`alignment`, largest first."""
    a = alignment(u, vh)
    flat = torch.topk(a.reshape(-1), count).indices
    return torch.stack([flat // a.shape[1], flat % a.shape[1]])


class SVFT(Parameterisation):
    """ΔW = U·(σ(g)·M)·Vᵀ with M sparse; trainable ``svft_values`` (nnz,) and, gated, ``svft_gate`` (1,)."""

    supported_inits = ("default",)

    def __init__(self, geometry: LayerGeometry, rank: int, scale: float, dtype: torch.dtype, device=None, *,
                 ctx: BuildContext):
        super().__init__(geometry, rank, 1.0)
        if geometry.kind not in ("linear", "conv1d"):
            raise ConfigError(f"SVFT adapts Linear/Conv1D layers; {ctx.layer!r} is a {geometry.kind} layer")
        pattern = ctx.option("svft_pattern")
        if pattern not in PATTERNS:
            raise ConfigError(f"svft_pattern must be one of {PATTERNS}, got {pattern!r}")
        d = ctx.option("svft_d")
        if isinstance(d, bool) or not isinstance(d, int) or d < 0:
            raise ConfigError(f"svft_d must be an integer ≥ 0 (off-diagonals each side / per row), got {d!r}")
        for key in ("svft_gate", "svft_init_zero"):
            if not isinstance(ctx.option(key), bool):
                raise ConfigError(f"{key} must be True or False, got {ctx.option(key)!r}")
        m, n = geometry.out_features, geometry.in_features
        k = min(m, n)
        self.pattern = pattern
        self.init_zero = ctx.option("svft_init_zero")
        if pattern == "top_k":
            # chosen from W0's SVD in default_init, and saved: the SVD's signs decide which entries win
            idx = torch.zeros(2, banded_count(k, d), dtype=torch.long)
            self.register_buffer("svft_index", idx.to(device))
        else:
            idx = svft_pattern(k, pattern, d, ctx.option("svft_seed"))
            self.register_buffer("svft_index", idx.to(device), persistent=False)
        self.register_buffer("svft_U", torch.zeros(m, k, dtype=dtype, device=device))
        self.register_buffer("svft_Vh", torch.zeros(k, n, dtype=dtype, device=device))
        self.svft_values = nn.Parameter(torch.zeros(idx.shape[1], dtype=dtype, device=device))
        # one scalar per layer, 0 ⇒ σ = ½ (the reference's gate)
        self.svft_gate = nn.Parameter(torch.zeros(1, dtype=dtype, device=device)) if ctx.option("svft_gate") else None

    def default_init(self, w0: torch.Tensor) -> bool:
        u, _, vh = torch.linalg.svd(w0.float(), full_matrices=False)
        with torch.no_grad():
            self.svft_U.copy_(u.to(self.svft_U.dtype))
            self.svft_Vh.copy_(vh.to(self.svft_Vh.dtype))
            if self.pattern == "top_k":  # from the stored bases, so the file's U, V reproduce it
                self.svft_index.copy_(top_k_pattern(self.svft_U, self.svft_Vh, self.svft_index.shape[1]))
            if self.init_zero:
                self.svft_values.zero_()
            else:  # the reference's kaiming_normal_ on a (1, nnz) tensor: fan-in nnz, gain √2
                self.svft_values.normal_(0.0, math.sqrt(2.0 / self.svft_values.numel()))
            if self.svft_gate is not None:
                self.svft_gate.zero_()
        return False

    def effective_values(self) -> torch.Tensor:
        """The nnz entries of M_eff: σ(g)·M's values when gated, else M's."""
        if self.svft_gate is None:
            return self.svft_values
        return self.svft_values * torch.sigmoid(self.svft_gate)

    def core(self) -> torch.Tensor:
        """M_eff as a dense (k, k) matrix, for merging and analysis."""
        k = self.svft_U.shape[1]
        vals = self.effective_values()
        m = torch.zeros(k, k, dtype=vals.dtype, device=vals.device)
        return m.index_put((self.svft_index[0], self.svft_index[1]), vals, accumulate=True)

    def _csr(self) -> tuple[torch.Tensor, CSRLayout]:
        """(order putting the pattern row-major, its CSR layout), rebuilt when ``svft_index`` changes (init, load)."""
        idx = self.svft_index
        key = (idx.data_ptr(), idx._version, idx.device)
        cached = self.__dict__.get("_csr_cache")
        if cached is None or cached[0] != key:
            k = self.svft_U.shape[1]
            order = torch.argsort(idx[0] * k + idx[1])
            cached = (key, order, CSRLayout(idx[0][order], idx[1][order], (k, k)))
            self.__dict__["_csr_cache"] = cached
        return cached[1], cached[2]

    def apply_core(self, h: torch.Tensor, reference: bool = False) -> torch.Tensor:
        """M_eff·h for h (..., k): a sparse CSR product (fp32/fp64), or the plain gather/scatter path.

        The gather path keeps an (..., nnz) temporary for backward (nnz ≈ (2d+1)·k: several times h);
        the CSR product keeps only h (``core.sparse_matmul``). Other dtypes use the gather path.
        """
        vals = self.effective_values()
        if reference or h.dtype not in (torch.float32, torch.float64):
            rows, cols = self.svft_index
            return torch.zeros_like(h).index_add_(-1, rows, h[..., cols] * vals)
        order, layout = self._csr()
        k = h.shape[-1]
        return SparseMatmul.apply(h.reshape(-1, k), vals[order], layout).reshape(h.shape)

    def add_delta(self, base: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if x.dtype != self.svft_values.dtype:
            x = x.to(self.svft_values.dtype)
        h = x @ self.svft_Vh.t()                                        # (..., k)
        return out + (self.apply_core(h) @ self.svft_U.t()).to(out.dtype)

    def delta_matrix(self) -> torch.Tensor:
        return self.svft_U @ self.core() @ self.svft_Vh

    def extra_repr(self) -> str:
        return (f"in={self.geometry.in_features}, out={self.geometry.out_features}, pattern={self.pattern}, "
                f"nnz={self.svft_values.numel()}, gate={self.svft_gate is not None}")
