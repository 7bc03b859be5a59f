"""Catalogue entries for the reduced-parameter, random-basis, structured and multiplicative adapters.

Each method is a preset of the ``parameterisation`` axis (see ``core.registry``); method-specific
settings are ``LoRAConfig.options`` declared by that parameterisation.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ..config import LoRAConfig
from ..methods import register_method


def _preset(axes: dict[str, Any], **overrides: Any) -> LoRAConfig:
    options = {**axes.get("options", {}), **overrides.pop("options", {})}
    return LoRAConfig(**{**axes, **overrides, "options": options})


def _register(name: str, paper: str, formula: str, trainable: str, *, mergeable: bool = True, peft: bool = False,
              **axes: Any) -> None:
    axes = {"parameterisation": name, **axes}
    register_method(name, "adapter", paper, partial(_preset, axes), formula=formula, trainable=trainable,
                    mergeable=mergeable, peft=peft)


_register("vera", "VeRA: Vector-based Random Matrix Adaptation (arXiv 2310.11454)",
          "ΔW = diag(b)·B·diag(d)·A, A, B frozen random, shared across layers", "r + m", peft=True)
_register("nola", "NOLA: Compressing LoRA using Linear Combination of Random Basis (arXiv 2310.02556)",
          "ΔW = s·(Σ βⱼBⱼ)(Σ αᵢAᵢ), Aᵢ, Bⱼ frozen seeded random", "k + l")
_register("randlora", "RandLoRA: Full-rank parameter-efficient fine-tuning of large models (arXiv 2502.00987)",
          "ΔW = s·Σₖ Bₖ·diag(λₖ)·A·diag(γₖ), N = ⌈min(m,n)/r⌉ frozen random bases", "r·N + N·min(m,n)",
          peft=True)
_register("svfit", "SVFit: Parameter-Efficient Fine-Tuning of Large Pre-Trained Models Using Singular Values "
          "(arXiv 2409.05926)", "ΔW = U_r·diag(σ − σ₀)·V_rᵀ, top-r SVD of W0", "r")
_register("svft", "SVFT: Parameter-Efficient Fine-Tuning with Singular Vectors (arXiv 2405.19597)",
          "ΔW = U·(σ(g)·M)·Vᵀ, M sparse (plain / banded / random / top-k), g a per-layer gate, full SVD of W0",
          "nnz(M) + 1 (gate)")
_register("loldu", "LoLDU: Low-Rank Adaptation via Lower-Diag-Upper Decomposition (arXiv 2410.13618)",
          "ΔW = P·L_r·(σ·diag(z) − diag(z₀))·U_r from W0 = P·L·D·U", "r + 1")
_register("qr-lora", "QR-LoRA: QR-Based Low-Rank Adaptation for Efficient Fine-Tuning of LLMs (arXiv 2508.21810)",
          "ΔW = s·Q_r·diag(λ)·R_r from W0·Π = Q·R", "r")
_register("mora", "MoRA: High-Rank Updating for Parameter-Efficient Fine-Tuning (arXiv 2405.12130)",
          "ΔW = D·M·C (mora_type 1: sum/repeat) or D·blockdiag(M·Rᵢ)·P (mora_type 6: RoPE-rotated input "
          "chunks), M r̂×r̂, r̂ = round(√((m+n)·r))", "r̂² ≈ r·(m+n)")
_register("hra", "Bridging The Gap between Low-rank and Orthogonal Adaptation via Householder Reflection "
          "Adaptation (arXiv 2405.17484)", "W = W0·Π(I − 2ûᵢûᵢᵀ)", "r·n", peft=True)
_register("fourierft", "Parameter-Efficient Fine-Tuning with Discrete Fourier Transform (arXiv 2405.03003)",
          "ΔW = s_f·Re(IDFT2(S)), S sparse at n_f seeded random entries", "n_f", peft=True)
_register("abba", "ABBA: Highly Expressive Hadamard Product Adaptation for Large Language Models (arXiv 2505.14238)",
          "ΔW = s·(B₁A₁) ⊙ (B₂A₂), applied via Khatri-Rao factors", "(r₁+r₂)·(m+n)")
_register("deep-lora", "Compressible Dynamics in Deep Overparameterized Low-Rank Learning & Adaptation "
          "(arXiv 2406.04112)", "ΔW = W₃·W₂·W₁, ε-scaled orthogonal init", "r·(m+n) + r²")
_register("dense-lora", "DenseLoRA: Dense Low-Rank Adaptation of Large Language Models (arXiv 2505.23808)",
          "ΔW·x = s·GELU(D·M·GELU(E·x)), E, D shared per projection type", "r² per layer + r·(m+n) per group",
          mergeable=False)
