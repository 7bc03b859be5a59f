"""Catalogue entries for the LoRA family built on ``LoRAConfig``."""

from __future__ import annotations

from functools import partial
from typing import Any

from ..config import LoRAConfig
from ..methods import register_method


def _preset(axes: dict[str, Any], **overrides: Any) -> LoRAConfig:
    return LoRAConfig(**{**axes, **overrides})


def _register(name: str, paper: str, axes: dict[str, Any], formula: str, trainable: str, **kw: Any) -> None:
    register_method(name, "adapter", paper, partial(_preset, axes), formula=formula, trainable=trainable, **kw)


_LORA = "W = W0 + (α/r)·B·A"
_register("lora", "LoRA: Low-Rank Adaptation of Large Language Models (arXiv 2106.09685)", {},
          _LORA, "r·(m+n)", mergeable=True, peft=True)
_register("rslora", "A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA (arXiv 2312.03732)",
          {"rslora": True}, "W = W0 + (α/√r)·B·A", "r·(m+n)", mergeable=True, peft=True)
_register("dora", "DoRA: Weight-Decomposed Low-Rank Adaptation (arXiv 2402.09353)", {"dora": True},
          "W = m ⊙ (W0 + s·B·A) / ‖W0 + s·B·A‖_row", "r·(m+n) + m", mergeable=True, peft=True)
_register("pissa", "PiSSA: Principal Singular Values and Singular Vectors Adaptation (arXiv 2404.02948)",
          {"init": "pissa"}, "B·A = top-r SVD of W0, W0 ← W0 − B·A", "r·(m+n)", mergeable=True, peft=True)
_register("milora", "MiLoRA: Harnessing Minor Singular Components (arXiv 2406.09044)", {"init": "milora"},
          "B·A = bottom-r SVD of W0, W0 ← W0 − B·A", "r·(m+n)", mergeable=True, peft=False)
_register("olora", "OLoRA: Orthonormal Low-Rank Adaptation (arXiv 2406.01775)", {"init": "olora"},
          "B, A from QR of W0, W0 ← W0 − s·B·A", "r·(m+n)", mergeable=True, peft=True)
_register("lora-plus", "LoRA+: Efficient Low Rank Adaptation of Large Models (arXiv 2402.12354)",
          {"loraplus_ratio": 16.0}, "W = W0 + s·B·A, lr(B) = λ·lr(A)", "r·(m+n)", mergeable=True, peft=True)
