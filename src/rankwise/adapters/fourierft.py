"""FourierFT: a sparse trainable spectrum, mapped to ΔW by an inverse 2-D DFT.

"Parameter-Efficient Fine-Tuning with Discrete Fourier Transform", Gao et al.,
arXiv 2405.03003.

    ΔW = s_f · Re(IDFT2(S)),   S (m, n) zero except S[eₖ] = cₖ at n_f fixed random entries eₖ

trainable are the n_f spectral coefficients c (``fourierft_n_frequency``, independent of the rank);
s_f = ``fourierft_scaling`` (150 in the paper for LLMs). The entry locations are a seeded random
permutation of the m·n positions (``fourierft_seed``), drawn exactly as Hugging Face PEFT does, and
are regenerated on load rather than saved. As in PEFT (``init_weights=False``, the default) c
starts ~ N(0, 1), so the adapted model does not start exactly at the base model;
``fourierft_init_zero=True`` starts at c = 0.

Forward: ΔW is formed by ``torch.fft.ifft2`` (O(m·n·log(m·n)), a weight-sized temporary, no (T, ·)
temporaries) and applied as a matmul. The alternative factored form Re(F_m* diag·F_n*) costs
T·n_f·(m+n) multiply-adds, more than the dense matmul whenever n_f > m·n/(m+n), i.e. at every
setting the paper uses, so the dense ΔW is the efficient path here.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.context import BuildContext
from ..core.contract import Parameterisation
from ..core.geometry import LayerGeometry
from ..errors import ConfigError

OPTIONS = {"fourierft_n_frequency": 1000, "fourierft_scaling": 150.0, "fourierft_seed": 777,
           "fourierft_init_zero": False}


def spectrum_indices(m: int, n: int, n_frequency: int, seed: int) -> torch.Tensor:
    """(2, n_f) row/column indices: the first n_f of a seeded permutation of the m·n entries (PEFT's draw)."""
    flat = torch.randperm(m * n, generator=torch.Generator().manual_seed(int(seed)))[:n_frequency]
    return torch.stack([flat // n, flat % n], dim=0)


class FourierFT(Parameterisation):
    """ΔW = s_f·Re(ifft2(S)); trainable ``fourierft_spectrum`` (n_f,)."""

    supported_inits = ("default",)

    def __init__(self, geometry: LayerGeometry, rank: int, scale: float, dtype: torch.dtype, device=None, *,
                 ctx: BuildContext):
        m, n = geometry.out_features, geometry.in_features
        super().__init__(geometry, rank, float(ctx.option("fourierft_scaling")))
        if geometry.kind not in ("linear", "conv1d"):
            raise ConfigError(f"FourierFT adapts Linear/Conv1D layers; {ctx.layer!r} is a {geometry.kind} layer "
                              "(exclude it from targets)")
        nf = int(ctx.option("fourierft_n_frequency"))
        if not 0 < nf <= m * n:
            raise ConfigError(f"fourierft_n_frequency must be in [1, m·n = {m * n}] for layer {ctx.layer!r}, got {nf}")
        self.register_buffer("fourierft_indices", spectrum_indices(m, n, nf, ctx.option("fourierft_seed")).to(device),
                             persistent=False)
        self.fourierft_spectrum = nn.Parameter(torch.empty(nf, dtype=dtype, device=device))
        self.init_zero = bool(ctx.option("fourierft_init_zero"))

    def default_init(self, w0: torch.Tensor) -> bool:
        with torch.no_grad():
            if self.init_zero:
                self.fourierft_spectrum.zero_()
            else:
                self.fourierft_spectrum.normal_()
        return False

    def delta_matrix(self) -> torch.Tensor:
        c = self.fourierft_spectrum
        dense = torch.zeros(self.geometry.out_features, self.geometry.in_features, device=c.device,
                            dtype=torch.promote_types(c.dtype, torch.float32))  # ifft2 has no half-precision path
        dense[self.fourierft_indices[0], self.fourierft_indices[1]] = c.to(dense.dtype)
        return (torch.fft.ifft2(dense).real * self.scale).to(c.dtype)

    def add_delta(self, base: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        dw = self.delta_matrix()  # (m, n), see the module docstring for why not factored
        y = x.to(dw.dtype) @ dw.t()
        return out + y.to(out.dtype)

    def extra_repr(self) -> str:
        g = self.geometry
        return f"in={g.in_features}, out={g.out_features}, n_frequency={self.fourierft_spectrum.numel()}"
