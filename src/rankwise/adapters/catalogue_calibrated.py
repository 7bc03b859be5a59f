"""Catalogue entries for the data-driven initialisations and the r×r-core (BCA / LoRA-XS) shape.

``peft=True`` marks methods PEFT implements (LoRA-GA, EVA, CorDA inits). Every entry here still
saves in PEFT's format as a plain LoRA (the r×r core folded into B, base-moving inits as rank 2r).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ..config import LoRAConfig
from ..methods import register_method


def _preset(axes: dict[str, Any], **overrides: Any) -> LoRAConfig:
    options = {**axes.get("options", {}), **overrides.pop("options", {})}  # user options extend the preset's
    return LoRAConfig(**{**axes, **overrides, "options": options})


def _register(name: str, paper: str, axes: dict[str, Any], formula: str, trainable: str, **kw: Any) -> None:
    register_method(name, "adapter", paper, partial(_preset, axes), formula=formula, trainable=trainable, **kw)


_register("lora-ga", "LoRA-GA: Low-Rank Adaptation with Gradient Approximation (arXiv 2407.05000)",
          {"init": "lora-ga"}, "A = c·V[:, :r]ᵀ, B = c·U[:, r:2r] of SVD(mean ∂L/∂W0), c = m^¼/√γ; W0 ← W0 − s·B·A",
          "r·(m+n)", mergeable=True, peft=True, needs_calibration=True)
_register("lora-one", "One-Step Full Gradient Suffices for Low-Rank Fine-Tuning, Provably and Efficiently "
          "(arXiv 2502.01235)", {"init": "lora-one"},
          "B = U_r√S_r/√(S₀γ), A = √S_r·V_rᵀ/√(S₀γ) of SVD(−∂L/∂W0); W0 untouched", "r·(m+n)",
          mergeable=True, peft=False, needs_calibration=True)
_register("lora-sb", "Initialization Using Update Approximation is a Silver Bullet for Extremely Efficient "
          "Low-Rank Fine-Tuning (arXiv 2411.19557)", {"parameterisation": "lora-xs", "init": "lora-sb"},
          "ΔW = s·B·R·A, B·(sR)·A = top-r SVD of −η·sign(∂L/∂W0); only R trained", "r²",
          mergeable=True, peft=False, needs_calibration=True)
_register("eva", "One Initialization to Rule them All: Fine-tuning via Explained Variance Adaptation "
          "(arXiv 2410.07170)", {"init": "eva"},
          "A = top-k_ℓ PCA components of layer inputs, B = 0; k_ℓ by explained variance (Σk_ℓ = Σr, k_ℓ ≤ ρr)",
          "k_ℓ·(m+n) (Σ over layers = LoRA's)", mergeable=True, peft=True, needs_calibration=True)
_CORDA = ("CorDA: Context-Oriented Decomposition Adaptation of Large Language Models for Task-Aware "
          "Parameter-Efficient Fine-tuning (arXiv 2406.05223)")
_register("corda-ipm", _CORDA, {"init": "corda", "options": {"corda_mode": "ipm"}},
          "SVD(W0·C)=U·S·V̂ᵀ, V=(V̂ᵀC⁻¹)ᵀ; B·A = top-r triplets; W0 ← W0 − s·B·A", "r·(m+n)",
          mergeable=True, peft=True, needs_calibration=True)
_register("corda-kpm", _CORDA, {"init": "corda", "options": {"corda_mode": "kpm"}},
          "SVD(W0·C)=U·S·V̂ᵀ, V=(V̂ᵀC⁻¹)ᵀ; B·A = smallest-r triplets; W0 ← W0 − s·B·A", "r·(m+n)",
          mergeable=True, peft=True, needs_calibration=True)
_register("lora-xs", "LoRA-XS: Low-Rank Adaptation with Extremely Small Number of Parameters (arXiv 2405.17604)",
          {"parameterisation": "lora-xs", "init": "lora-xs"},
          "ΔW = s·B·R·A, B = U_r·S_r, A = V_rᵀ frozen (SVD of W0), R ~ N(0, σ²) trained", "r²",
          mergeable=True, peft=False)
_register("nlora", "NLoRA: Nyström-Initiated Low-Rank Adaptation for Large Language Models (arXiv 2502.14482)",
          {"parameterisation": "bca", "init": "nlora"},
          "ΔW = s·B·R·A, B = W0[:, :r], R = W0[:r, :r], A = W0[:r, :] (official code), all trainable",
          "r·(m+n) + r²", mergeable=True, peft=False)
_register("bca", "NLoRA: Nyström-Initiated Low-Rank Adaptation for Large Language Models (arXiv 2502.14482), "
          "SLoRA shape", {"parameterisation": "bca"}, "ΔW = s·B·R·A, R = I at init, all trainable",
          "r·(m+n) + r²", mergeable=True, peft=False)
