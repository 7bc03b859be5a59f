"""Plain truncated SVD: W ≈ (U_k √S_k)(√S_k V_kᵀ), optimal in ‖W − W_k‖_F (Eckart–Young)."""

from __future__ import annotations

import torch

from .base import Spectrum, transformed_svd


def svd(weight: torch.Tensor) -> Spectrum:
    """The SVD of W itself; the predicted error is the weight error ‖W − W_k‖_F."""
    return transformed_svd(weight, "svd")
