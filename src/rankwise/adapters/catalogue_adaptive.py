"""Catalogue entries for gradient rules (LoRA-Pro, AltLoRA, ALLoRA) and rank-adaptive adapters
(AdaLoRA, SoRA, DyLoRA). Each names a ``LoRAConfig`` preset and the ``TrainingSchedule`` that acts
during training; LoRA-Pro and AltLoRA also name the optimizer that runs their algorithm (selected by
``options={"lorapro_optimizer": ...}`` / ``{"altlora_optimizer": ...}``). Schedules and optimizers are
imported when first built (the optim package imports the core).
LIFT (sparse training of W's principal entries) is listed here too, with its own apply, save and load hooks."""

from __future__ import annotations

from functools import partial
from typing import Any

from ..config import LoRAConfig
from ..methods import register_method


def _preset(axes: dict[str, Any], **overrides: Any) -> LoRAConfig:
    if "options" in overrides and "options" in axes:
        overrides["options"] = {**axes["options"], **overrides["options"]}
    return LoRAConfig(**{**axes, **overrides})


def _allora_config(**overrides: Any) -> LoRAConfig:
    """ALLoRA has no scale and no dropout: α = r (s = 1) unless the user sets α."""
    cfg = LoRAConfig(**{"dropout": 0.0, **overrides})
    if "alpha" not in overrides:
        cfg.alpha = float(cfg.rank)
    return cfg


def _adalora(model, config, total_steps):
    from .adalora_schedule import AdaLoRASchedule

    return AdaLoRASchedule(model, config, total_steps)


def _sora(model, config, total_steps):
    from .sora import SoRASchedule

    return SoRASchedule(model, config, total_steps)


def _dylora(model, config, total_steps):
    from .dylora import DyLoRASchedule

    return DyLoRASchedule(model, config, total_steps)


def _lora_pro_config(**overrides: Any) -> LoRAConfig:
    from ..optim.lora_pro import lora_pro_optimizer

    cfg = _preset({}, **overrides)
    lora_pro_optimizer(cfg)  # an unknown lorapro_optimizer fails here, before the model is touched
    return cfg


def _lora_pro(model, config, total_steps):
    from ..optim.factored import OptimizerOwnedRule
    from ..optim.lora_pro import LoRAProRule, lora_pro_optimizer
    from ..optim.lora_pro_adamw import LoRAProAdamW

    mode = lora_pro_optimizer(config)
    if mode == "rule":
        return LoRAProRule(model, config, total_steps)
    return OptimizerOwnedRule(model, LoRAProAdamW, "LoRA-Pro", "lorapro_optimizer", mode, "lora-pro")


def _lora_pro_optimizer(model, config, schedule, lr, weight_decay=0.0):
    """LoRA-Pro's AdamW on the equivalent gradient (default), or AdamW after the gradient rule ("rule")."""
    import torch

    from ..optim.lora_pro import lora_pro_optimizer
    from ..optim.lora_pro_adamw import LoRAProAdamW
    from ..optim.param_groups import param_groups

    groups = param_groups(model, lr=lr, weight_decay=weight_decay)
    if lora_pro_optimizer(config) == "rule":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    return LoRAProAdamW(model, groups, lr=lr, weight_decay=weight_decay, ridge=float(config.option("lorapro_ridge")))


def _altlora_config(**overrides: Any) -> LoRAConfig:
    from ..optim.altlora import altlora_optimizer

    cfg = _preset({}, **overrides)
    altlora_optimizer(cfg)
    return cfg


def _altlora(model, config, total_steps):
    from ..optim.altlora import AltLoRARule, altlora_optimizer
    from ..optim.altlora_optimizer import AltLoRAOptimizer
    from ..optim.factored import OptimizerOwnedRule

    mode = altlora_optimizer(config)
    if mode == "rule":
        return AltLoRARule(model, config, total_steps)
    return OptimizerOwnedRule(model, AltLoRAOptimizer, "AltLoRA", "altlora_optimizer", mode, "altlora")


def _altlora_optimizer(model, config, schedule, lr, weight_decay=0.0):
    """AltLoRA's momentum optimizer (default; "adam": AltLoRA+), or AdamW after the gradient rule ("rule")."""
    import torch

    from ..optim.altlora import altlora_optimizer
    from ..optim.altlora_optimizer import AltLoRAOptimizer
    from ..optim.param_groups import param_groups

    mode = altlora_optimizer(config)
    groups = param_groups(model, lr=lr, weight_decay=weight_decay)
    if mode == "rule":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    return AltLoRAOptimizer(model, groups, lr=lr, weight_decay=weight_decay,
                            ridge=float(config.option("altlora_ridge")), adaptive=mode == "adam")


def _allora(model, config, total_steps):
    from ..optim.allora import ALLoRARule

    return ALLoRARule(model, config, total_steps)


register_method(
    "adalora", "adapter", "AdaLoRA: Adaptive Budget Allocation for Parameter-Efficient Fine-Tuning (arXiv 2303.10512)",
    partial(_preset, {"parameterisation": "adalora", "rank": 12}),
    formula="ΔW = α/(r+1e-5)·P·diag(λ)·Q; triplets pruned by EMA importance on a cubic budget; ‖PᵀP−I‖+‖QQᵀ−I‖",
    trainable="r·(m+n) + r (r = init_r; pruned triplets stay allocated)", mergeable=True, peft=True,
    schedule=_adalora)
register_method(
    "sora", "adapter", "Sparse Low-rank Adaptation of Pre-trained Language Models (arXiv 2311.11696)",
    partial(_preset, {"parameterisation": "sora"}),
    formula="ΔW = s·B·diag(g)·A; g ← sign(g)·max(|g| − η·λ, 0) after each step; zero gates pruned",
    trainable="r·(m+n) + r", mergeable=True, peft=False, schedule=_sora)
register_method(
    "dylora", "adapter", "DyLoRA: Parameter-Efficient Tuning of Pre-trained Models using Dynamic Search-Free "
    "Low-Rank Adaptation (arXiv 2210.07558)", partial(_preset, {"parameterisation": "dylora"}),
    formula="ΔW_b = (α/b)·B[:, :b]·A[:b], b ~ U{1..r} per step; any b ≤ r after training (rankwise.set_rank)",
    trainable="r·(m+n)", mergeable=True, peft=False, schedule=_dylora)
register_method(
    "lora-pro", "adapter", "LoRA-Pro: Are Low-Rank Adapters Properly Optimized? (arXiv 2407.18242)",
    _lora_pro_config,
    formula="gA′ = (BᵀB)⁻¹gA/s² + XA, gB′ = (I−B(BᵀB)⁻¹Bᵀ)gB(AAᵀ)⁻¹/s² − BX, X from a Sylvester equation; "
    "default AdamW on g̃ = s(B·gA′ + gB′·A) (m×n moments), its step mapped back by the same closed form",
    trainable="r·(m+n) (AdamW state: 2·m·n)", mergeable=True, peft=True, schedule=_lora_pro,
    optimizer=_lora_pro_optimizer)
register_method(
    "altlora", "adapter", "AltLoRA: Towards Better Gradient Approximation in Low-Rank Adaptation with Alternating "
    "Projections (arXiv 2505.12455)", _altlora_config,
    formula="A then B each step: gA′ = (BᵀB)⁻¹gA/s², gB′ = gB(AAᵀ)⁻¹/s², heavy-ball momentum transported "
    "across bases, M_A ← β1(BᵀB)⁻¹BᵀB′M_A + (1−β1)gA′",
    trainable="r·(m+n)", mergeable=True, peft=True, schedule=_altlora, optimizer=_altlora_optimizer)
register_method(
    "allora", "adapter", "ALLoRA: Adaptive Learning Rate Mitigates LoRA Fatal Flaws (arXiv 2410.09692)",
    _allora_config, formula="ΔW = B·A (no α, no dropout); ∇θ_i ← ∇θ_i / √(‖θ_i‖² + 1/η²) per row",
    trainable="r·(m+n)", mergeable=True, peft=True, schedule=_allora)


def _lift_config(**overrides: Any):
    from ..sparse.lift import LIFTConfig

    return LIFTConfig(**overrides)


def _lift(model, config, total_steps):
    from ..sparse.lift import lift

    return lift(model, config)  # applying LIFT *is* building its schedule: it adds the sparse deltas on W's entries


def _lift_apply(model, config, calibration=None) -> None:
    """Nothing up front: the schedule picks the principal entries and adds their sparse deltas."""


def _lift_save(model, schedule, folder) -> None:
    from ..sparse.lift import save_lift

    save_lift(schedule, folder)


def _lift_load(model, folder):
    from ..sparse.lift import load_lift

    return load_lift(model, folder)


register_method(
    "lift", "adapter", "LIFT the Veil for the Truth: Principal Weights Emerge after Rank Reduction for "
    "Reasoning-Focused Supervised Fine-Tuning (arXiv 2506.00772)", _lift_config,
    formula="W + S, S sparse on the r·(m+n) largest entries of |W_k| (rank-k SVD of W); S folded into W and "
    "the mask refreshed every K steps",
    trainable="r·(m+n) entries of W", mergeable=None, peft=False, schedule=_lift, apply=_lift_apply,
    save=_lift_save, load=_lift_load)
