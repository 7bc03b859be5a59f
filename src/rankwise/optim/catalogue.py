"""Catalogue entries of the optimizer family (``rankwise.methods("optimizer")``)."""

from __future__ import annotations

from functools import partial
from typing import Any

from ..methods import register_method
from .config import LowRankConfig


def _preset(axes: dict[str, Any], **overrides: Any) -> LowRankConfig:
    return LowRankConfig(**{**axes, **overrides})


def _register(name: str, paper: str, axes: dict[str, Any], formula: str, state: str) -> None:
    register_method(name, "optimizer", paper, partial(_preset, {"optimizer": name, **axes}), formula=formula,
                    trainable=state)


_register("adamw", "Decoupled Weight Decay Regularization (arXiv 1711.05101)", {},
          "W ← W − lr·(m̂/(√v̂+ε) + λ·W)", "state 2·m·n")
_register("galore", "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection (arXiv 2403.03507)",
          {}, "R = P·G, W ← W − lr·α·Pᵀ·Adam(R)", "state 2·r·max(m,n) + r·min(m,n)")
_register("fira", "Fira: Can We Achieve Full-rank Training of LLMs Under Low-rank Constraint? (arXiv 2410.01623)",
          {}, "W ← W − lr·(α·Pᵀ·Adam(R) + φ⊙(G − α·Pᵀ·R)), norm-growth limited",
          "state 2·r·max(m,n) + r·min(m,n)")
_register("apollo", "APOLLO: SGD-like Memory, AdamW-level Performance (arXiv 2412.05270)", {},
          "W ← W − lr·√α·limit(φ_channel ⊙ G), φ from Adam on a random projection",
          "state 2·r·max(m,n) + seed (basis r·min(m,n) cached)")
_register("apollo-mini", "APOLLO: SGD-like Memory, AdamW-level Performance (arXiv 2412.05270)", {"rank": 1},
          "W ← W − lr·√128·limit(φ_tensor·G), rank-1 random projection", "state 2·max(m,n) + seed")
