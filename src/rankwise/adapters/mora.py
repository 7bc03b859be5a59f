"""MoRA: a square trainable matrix between non-parametric compress and decompress operators.

"MoRA: High-Rank Updating for Parameter-Efficient Fine-Tuning", Jiang et al., arXiv 2405.12130;
reference code github.com/kongds/MoRA (``peft-mora``, ``LoraLayer._apply_mora`` / ``get_delta_weight``).

    ΔW·x = f_decomp(M·f_comp(x)),   M (r̂, r̂) trainable,   r̂ = round(√((m + n)·r))

so that r̂² ≈ r·(m + n), LoRA's parameter count at rank r, but ΔW can reach rank r̂ or more. r̂ is capped
at min(m, n). M starts at 0. No α/r scale. Both operator pairs are linear, so ΔW exists as an (m, n) matrix
for merging; the forward uses pad/reshape/sum/repeat and elementwise rotations, never an m×n matrix.
``mora_type`` picks the operators, numbered as in the reference:

* ``1`` — sharing (the paper's Eq. 6; the reference's default): f_comp sums the input in groups of r̂
  consecutive features, f_decomp repeats the r̂ outputs ⌈m/r̂⌉ times and truncates to m.
  ΔW = D·M·C with C (r̂, n), D (m, r̂) 0/1 matrices; rank(ΔW) ≤ r̂.
* ``6`` — decoupling with RoPE rotation (the paper's Eq. 9). r̂ is rounded down to an even number. The
  input is cut into b = ⌈n/r̂⌉ chunks xᵢ of r̂ features, each chunk is rotated by the rotary matrix of
  position i, each rotated chunk goes through M *separately* (no sum), and the b outputs are concatenated:

      ΔW·x = f_decomp([M·R₀·x₀; M·R₁·x₁; …; M·R_{b−1}·x_{b−1}])   ⇒   ΔW = D·(I_b ⊗ M)·R·P

  Rᵢ rotates feature pairs (j, j + r̂/2), j < r̂/2, by the angle i·θⱼ, θⱼ = 10000^(−2j/r̂) (the
  "rotate half" RoPE layout); angles are computed in fp32 as the reference does. f_decomp truncates the
  b·r̂ outputs to m, or tiles them to length m when b·r̂ < m. ΔW is block-diagonal (blocks M·Rᵢ), so its
  rank can reach min(m, n).

In both types the input is padded to a multiple of r̂ by repeating its *first* features (wrap-around), as
the reference does. The reference's README recommends type 1 for large LoRA ranks and type 6 for small
ones (its fine-tuning examples use type 6 at r = 8); the default here is the reference config's default, 1.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..core.context import BuildContext
from ..core.contract import Parameterisation
from ..core.geometry import LayerGeometry
from ..errors import ConfigError

OPTIONS = {"mora_type": 1}
TYPES = (1, 6)


def mora_rank(m: int, n: int, r: int, mora_type: int = 1) -> int:
    """r̂ = round(√((m+n)·r)), at most min(m, n); for type 6 rounded down to even (RoPE rotates pairs)."""
    rh = min(int(math.sqrt((m + n) * r) + 0.5), m, n)
    return rh // 2 * 2 if mora_type == 6 else rh


def pad(x: torch.Tensor, rh: int) -> torch.Tensor:
    """(..., n) -> (..., ⌈n/r̂⌉·r̂): append the first features until the length is a multiple of r̂."""
    n = x.shape[-1]
    if n % rh:
        x = torch.cat([x, x[..., : rh - n % rh]], dim=-1)
    return x


def compress(x: torch.Tensor, rh: int) -> torch.Tensor:
    """Type 1: (..., n) -> (..., r̂): sum of consecutive groups of r̂ features, wrap-around padded."""
    x = pad(x, rh)
    return x.view(*x.shape[:-1], -1, rh).sum(-2)


def decompress(h: torch.Tensor, m: int) -> torch.Tensor:
    """(..., L) -> (..., m): h repeated ⌈m/L⌉ times, truncated (type 1: L = r̂; type 6: L = b·r̂)."""
    reps = -(-m // h.shape[-1])
    return h.repeat(*([1] * (h.dim() - 1)), reps)[..., :m]


def rope_tables(chunks: int, rh: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each (chunks, r̂) fp32: angle i·θ_(j mod r̂/2) for chunk i, feature j (the reference's tables)."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, rh, 2).float() / rh))
    angles = torch.outer(torch.arange(chunks).float(), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(−x[r̂/2:], x[:r̂/2]) along the last axis: with cos/sin tables, x·cos + rotate_half(x)·sin = R·x."""
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def compress_rope(x: torch.Tensor, rh: int, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Type 6: (..., n) -> (..., b, r̂): the padded input cut into b chunks, chunk i rotated by Rᵢ."""
    x = pad(x, rh)
    x = x.view(*x.shape[:-1], -1, rh)
    return x * cos + rotate_half(x) * sin


class MoRA(Parameterisation):
    """ΔW = D·(I_b ⊗ M)·C (b = 1 for type 1); trainable ``mora_M`` (r̂, r̂)."""

    supported_inits = ("default",)

    def __init__(self, geometry: LayerGeometry, rank: int, scale: float, dtype: torch.dtype, device=None, *,
                 ctx: BuildContext):
        super().__init__(geometry, rank, 1.0)
        if geometry.kind not in ("linear", "conv1d"):
            raise ConfigError(f"MoRA adapts Linear/Conv1D layers; {ctx.layer!r} is a {geometry.kind} layer")
        mora_type = ctx.option("mora_type")
        if isinstance(mora_type, bool) or mora_type not in TYPES:
            raise ConfigError(f"mora_type must be 1 (sharing) or 6 (RoPE rotation), got {mora_type!r}")
        m, n = geometry.out_features, geometry.in_features
        self.mora_type = int(mora_type)
        self.rhat = mora_rank(m, n, rank, self.mora_type)
        if self.rhat < 2 and self.mora_type == 6:
            raise ConfigError(f"mora_type=6 needs an even r̂ ≥ 2, but layer {ctx.layer!r} ({m}×{n}) allows only "
                              f"r̂ = {min(m, n)}; use mora_type=1 or exclude the layer from targets")
        self.mora_M = nn.Parameter(torch.zeros(self.rhat, self.rhat, dtype=dtype, device=device))
        if self.mora_type == 6:
            cos, sin = rope_tables(-(-n // self.rhat), self.rhat)
            self.register_buffer("mora_cos", cos.to(device=device, dtype=dtype), persistent=False)  # (b, r̂)
            self.register_buffer("mora_sin", sin.to(device=device, dtype=dtype), persistent=False)

    def default_init(self, w0: torch.Tensor) -> bool:
        with torch.no_grad():
            self.mora_M.zero_()
        return False

    def add_delta(self, base: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if x.dtype != self.mora_M.dtype:
            x = x.to(self.mora_M.dtype)
        if self.mora_type == 1:
            h = compress(x, self.rhat) @ self.mora_M.t()                            # (..., r̂)
        else:
            h = compress_rope(x, self.rhat, self.mora_cos, self.mora_sin) @ self.mora_M.t()  # (..., b, r̂)
            h = h.flatten(-2)                                                        # (..., b·r̂)
        return out + decompress(h, self.geometry.out_features).to(out.dtype)

    def operators(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(D, C) as matrices with ΔW = D·(I_b ⊗ M)·C: the plain reference of the compress/decompress functions.

        Type 1: D (m, r̂), C (r̂, n), b = 1. Type 6: D (m, b·r̂), C = R·P (b·r̂, n), b = ⌈n/r̂⌉.
        """
        eye = torch.eye(self.geometry.in_features, dtype=self.mora_M.dtype, device=self.mora_M.device)
        if self.mora_type == 1:
            c = compress(eye, self.rhat).t()                                         # column j = C·e_j
        else:
            c = compress_rope(eye, self.rhat, self.mora_cos, self.mora_sin).flatten(-2).t()
        d = decompress(torch.eye(c.shape[0], dtype=eye.dtype, device=eye.device), self.geometry.out_features).t()
        return d, c

    def blocks(self) -> torch.Tensor:
        """Type 6: the b diagonal blocks M·Rᵢ (b, r̂, r̂), elementwise: (M·Rᵢ)[p, j] = M[p, j]·cos + M'[p, j]·sin.

        M' = (M[:, r̂/2:], −M[:, :r̂/2]) is M times the rotate-half map's transpose.
        """
        mm, h = self.mora_M, self.rhat // 2
        swapped = torch.cat([mm[:, h:], -mm[:, :h]], dim=-1)
        return mm * self.mora_cos[:, None, :] + swapped * self.mora_sin[:, None, :]

    def delta_matrix(self) -> torch.Tensor:
        if self.mora_type == 1:
            d, c = self.operators()
            return d @ self.mora_M @ c
        # type 6 without the (b·r̂)² block-diagonal matrix: scatter each block's columns to the input features
        # they read (padded position p reads feature p mod n), then tile/truncate the rows like f_decomp
        m, n, rh = self.geometry.out_features, self.geometry.in_features, self.rhat
        blocks = self.blocks()
        nb = blocks.shape[0]
        rows = torch.arange(nb * rh, device=blocks.device).view(nb, rh, 1).expand(nb, rh, rh)
        cols = (torch.arange(nb * rh, device=blocks.device) % n).view(nb, 1, rh).expand(nb, rh, rh)
        w = torch.zeros(nb * rh, n, dtype=blocks.dtype, device=blocks.device)
        w = w.index_put((rows.reshape(-1), cols.reshape(-1)), blocks.reshape(-1), accumulate=True)
        return w[torch.arange(m, device=w.device) % (nb * rh)]

    def extra_repr(self) -> str:
        return (f"in={self.geometry.in_features}, out={self.geometry.out_features}, rhat={self.rhat}, "
                f"type={self.mora_type}")
