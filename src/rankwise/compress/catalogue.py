"""Catalogue entries of the compression family (``rankwise.methods("compress")``)."""

from __future__ import annotations

from functools import partial
from typing import Any

from ..methods import register_method
from .config import CompressConfig


def _preset(axes: dict[str, Any], **overrides: Any) -> CompressConfig:
    return CompressConfig(**{**axes, **overrides})


def _register(name: str, paper: str, axes: dict[str, Any], formula: str, calibrated: bool) -> None:
    register_method(name, "compress", paper, partial(_preset, axes), formula=formula, trainable="k·(m+n)",
                    mergeable=True, needs_calibration=calibrated)


_register("svd", "Eckart–Young truncated SVD (Eckart & Young 1936; e.g. Denton et al., arXiv 1404.0736)",
          {"method": "svd"}, "W ≈ U_k S_k V_kᵀ", False)
_register("fwsvd", "Language Model Compression with Weighted Low-Rank Factorization (arXiv 2207.00112)",
          {"method": "fwsvd"}, "W ≈ D⁻¹·trunc_k(D·W), D = diag(√Σ(∂L/∂W_i·)²)", True)
_register("asvd", "ASVD: Activation-aware Singular Value Decomposition for Compressing LLMs (arXiv 2312.05821)",
          {"method": "asvd"}, "W ≈ trunc_k(W·S)·S⁻¹, S = diag(mean|x|^α)", True)
_register("svd-llm", "SVD-LLM: Truncation-aware Singular Value Decomposition for LLM Compression (arXiv 2403.07378)",
          {"method": "svd-llm"}, "W ≈ trunc_k(W·L)·L⁻¹, L·Lᵀ = X·Xᵀ", True)
_register("welore", "From GaLore to WeLore: How Low-Rank Weights Non-uniformly Emerge from Low-Rank Gradients "
          "(arXiv 2407.11239)", {"method": "svd", "allocation": "welore"},
          "keep σ with (σ−σ_min)/(σ_max−σ_min) ≥ τ per matrix", False)
