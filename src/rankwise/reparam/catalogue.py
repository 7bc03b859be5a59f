"""Catalogue entries (family "reparam") for the reparameterised-pretraining methods."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..methods import register_method
from .config import ReparamConfig


def _preset(name: str):
    def make(**overrides: Any) -> ReparamConfig:
        if "method" in overrides and overrides["method"] != name:
            raise ConfigError(f"method_config({name!r}) cannot set method={overrides['method']!r}")
        return ReparamConfig(**{**overrides, "method": name})

    return make


_ENTRIES = [
    ("low-rank", "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection (arXiv 2403.03507), "
     "'Low-Rank' baseline", "W = s·B·A", "r·(m+n)", True),
    ("relora", "ReLoRA: High-Rank Training Through Low-Rank Updates (arXiv 2307.05695)",
     "W = W0 + s·B·A; every K steps W0 += s·B·A, A ~ Kaiming, B = 0, prune state", "r·(m+n)", True),
    ("switchlora", "SwitchLoRA: Switched Low-Rank Adaptation Can Learn Full-Rank Information (arXiv 2406.06564)",
     "W = W0 + s·B·A; vectors of B, A swapped with candidates, W0 absorbs the change", "r·(m+n)", True),
    ("sltrain", "SLTrain: a sparse plus low-rank approach for parameter and memory efficient pretraining "
     "(arXiv 2406.02214)", "W = s·B·A + S, S on a fixed random support of density δ", "r·(m+n) + δ·m·n", True),
    ("lost", "LOST: Low-rank and Sparse Pre-training for Large Language Models (arXiv 2508.02668)",
     "W = γ·s·B·A + (1−γ)·S on k channels chosen from the SVD residual", "r·(m+n) + k·m", True),
    ("cola", "CoLA: Compute-Efficient Pre-Training of LLMs via Low-Rank Activation (arXiv 2502.10940)",
     "y = s·B·σ(A·x)", "r·(m+n)", False),
    ("sst", "Sparse Spectral Training and Inference on Euclidean and Hyperbolic Neural Networks (arXiv 2405.15481)",
     "W = U·diag(Σ)·Vᵀ; Σ and r sampled (u, v) pairs trained; periodic re-SVD", "min(m,n)·(m+n+1)", True),
]

for _name, _paper, _formula, _trainable, _mergeable in _ENTRIES:
    register_method(_name, "reparam", _paper, _preset(_name), formula=_formula, trainable=_trainable,
                    mergeable=_mergeable)
