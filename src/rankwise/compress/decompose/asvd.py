"""ASVD: activation-aware SVD.

"ASVD: Activation-aware Singular Value Decomposition for Compressing Large Language Models"
(Yuan et al., arXiv 2312.05821). Input channels are scaled by S_jj = (mean_t |x_tj|)^α (α = 0.5 in
the paper) before the SVD, so directions that meet large activations are kept:
W ≈ (U_k S_k V_kᵀ) S⁻¹ with U S Vᵀ = SVD(W S).
"""

from __future__ import annotations

import torch

from ..calibration import CalibrationError
from .base import Spectrum, transformed_svd


def asvd(weight: torch.Tensor, abs_mean: torch.Tensor, alpha: float = 0.5, name: str = "layer") -> Spectrum:
    """SVD of W·diag(abs_mean^α); channels never active get a floor of 1e-6 · max so S stays invertible.

    Raises:
        CalibrationError: every input channel of the layer was zero on the calibration data.
    """
    a = abs_mean.to(torch.float64)
    if not torch.isfinite(a).all() or a.max() <= 0:
        raise CalibrationError(f"the inputs of {name!r} were all zero (or not finite) on the calibration data; "
                               "ASVD cannot scale them")
    scale = a.clamp_min(1e-6 * a.max()).pow(alpha)
    return transformed_svd(weight, "asvd", col_scale=scale)
