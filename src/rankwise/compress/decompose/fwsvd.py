"""FWSVD: Fisher-weighted SVD.

"Language Model Compression with Weighted Low-Rank Factorization" (Hsu et al., arXiv 2207.00112).
Each output row i of W gets the importance I_i = Σ_j Σ_batches (∂L/∂W_ij)², an estimate of the
Fisher information of that row; FWSVD minimises ‖diag(√I)(W − W_k)‖_F, i.e. the SVD of diag(√I)·W,
truncated, then unscaled: W_k = diag(√I)⁻¹ U_k S_k V_kᵀ. As the paper says, this does not lower the
plain reconstruction error; it moves the error onto rows the task loss is insensitive to.
"""

from __future__ import annotations

import torch

from ..calibration import CalibrationError
from .base import Spectrum, transformed_svd


def fwsvd(weight: torch.Tensor, fisher: torch.Tensor | None, name: str = "layer") -> Spectrum:
    """SVD of diag(√I)·W; rows with zero Fisher get a floor of 1e-6 · mean(I) so D stays invertible.

    Raises:
        CalibrationError: no Fisher statistics (the calibration pass ran without gradients) or all zero.
    """
    if fisher is None:
        raise CalibrationError(f"FWSVD needs per-row gradient statistics for {name!r}; calibrate with "
                               "need_fisher=True (rankwise.compress.plan does this for method='fwsvd')")
    f = fisher.to(torch.float64)
    if not torch.isfinite(f).all() or f.max() <= 0:
        raise CalibrationError(f"the Fisher statistics of {name!r} are zero or not finite; the loss does not "
                               "depend on this layer for the calibration data (check the loss_fn)")
    f = f.clamp_min(1e-6 * f.mean())
    return transformed_svd(weight, "fwsvd", row_scale=f.sqrt())
