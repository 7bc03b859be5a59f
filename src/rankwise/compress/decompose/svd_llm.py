"""SVD-LLM: truncation-aware data whitening.

"SVD-LLM: Truncation-aware Singular Value Decomposition for Large Language Model Compression"
(Wang et al., arXiv 2403.07378). With X the (n × tokens) calibration inputs and C = X Xᵀ = L Lᵀ
(Cholesky), decompose W L = U S Vᵀ and keep W_k = U_k S_k V_kᵀ L⁻¹. Because L⁻¹X has orthonormal
rows, the activation error is exactly the dropped singular values:

    ‖(W − W_k) X‖_F = ‖σ_{k+1:}(W L)‖₂.

Damping: C + λI with λ = damping · mean(diag C) (ridge: the identity then holds for
‖(W − W_k)X‖² + λ‖W − W_k‖²). When the Cholesky factorisation fails (a singular covariance: fewer
calibration tokens than inputs, dead channels), λ is raised tenfold up to ``max_damping`` with a
warning that names the layer; with ``damping=0`` a failure raises :class:`CalibrationError` instead.
"""

from __future__ import annotations

import warnings

import torch

from ..calibration import CalibrationError
from .base import Spectrum, transformed_svd


def whitening(cov: torch.Tensor, damping: float = 1e-4, max_damping: float = 1.0, name: str = "layer",
              tokens: int | None = None) -> torch.Tensor:
    """Lower-triangular L with L Lᵀ = C + λI (float64).

    Raises:
        CalibrationError: C is empty or not finite, or Cholesky fails with ``damping=0`` or at ``max_damping``.
    """
    c = cov.to(torch.float64)
    n = c.shape[0]
    if not torch.isfinite(c).all():
        raise CalibrationError(f"the input covariance of {name!r} is not finite (inf/NaN activations)")
    scale = float(c.diagonal().mean())
    if scale <= 0:
        raise CalibrationError(f"the inputs of {name!r} were all zero on the calibration data; cannot whiten")
    if tokens is not None and tokens < n:
        warnings.warn(f"{name}: {tokens} calibration tokens for {n} inputs, so the covariance is singular; "
                      f"whitening relies on damping={damping} — use at least {n} tokens", stacklevel=3)
    lam = damping
    while True:
        eye = torch.eye(n, dtype=c.dtype)
        l_factor, info = torch.linalg.cholesky_ex(c + lam * scale * eye)
        if int(info) == 0:
            return l_factor
        if damping == 0:
            raise CalibrationError(f"Cholesky of the input covariance of {name!r} failed (it is singular: "
                                   f"{tokens} tokens, {n} inputs); pass damping > 0 (e.g. 1e-4) or more data")
        if lam >= max_damping:
            raise CalibrationError(f"Cholesky of the input covariance of {name!r} failed even with damping "
                                   f"{lam:g}; the calibration statistics are degenerate")
        new = min(lam * 10, max_damping)
        warnings.warn(f"{name}: Cholesky of the input covariance failed with damping {lam:g}; falling back to "
                      f"damping {new:g} (the whitening becomes a ridge-regularised one)", stacklevel=3)
        lam = new


def svd_llm(weight: torch.Tensor, cov: torch.Tensor, damping: float = 1e-4, name: str = "layer",
            tokens: int | None = None) -> Spectrum:
    """SVD of W·L with L the Cholesky factor of the (damped) input covariance."""
    return transformed_svd(weight, "svd-llm", col_factor=whitening(cov, damping, name=name, tokens=tokens))
