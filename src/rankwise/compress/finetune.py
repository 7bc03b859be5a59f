"""Fine-tuning what is left after compression.

Two recipes:

* ``"lrc"`` — WeLore's low-rank-component fine-tuning ("From GaLore to WeLore", arXiv 2407.11239):
  only the factors of the compressed layers (LowRankLinear ``down``/``up``) train; every dense weight
  is frozen.
* ``"lora"`` — LoRA on top through :func:`rankwise.adapt` (any LoRA-family config); the compressed
  model stays frozen.

Either way the result is a plain model: LRC changes the factors in place, LoRA merges with
:func:`rankwise.merge_and_unload`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .apply import compressed_layers
from .calibration import default_loss


def lowrank_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The factor weights (and biases) of every LowRankLinear."""
    return [p for layer in compressed_layers(model).values() for p in layer.parameters()]


def freeze_except_lowrank(model: nn.Module) -> list[nn.Parameter]:
    """Freeze everything but the low-rank components (WeLore LRC); returns the trainable parameters."""
    params = lowrank_parameters(model)
    if not params:
        raise ConfigError(f"{type(model).__name__} has no compressed layer to fine-tune; apply a plan first")
    keep = {id(p) for p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    return params


def add_lora(model: nn.Module, config: Any = None) -> list[nn.Parameter]:
    """Put a LoRA-family adapter on the compressed model (default rank 8, α 16, all Linear layers including
    the factors) and return the trainable adapter parameters."""
    from .. import LoRAConfig, adapt, trainable_parameters

    adapt(model, config or LoRAConfig(rank=8, alpha=16, targets="all-linear"))
    return trainable_parameters(model)


def finetune(model: nn.Module, batches: Iterable, *, mode: str = "lrc", lr: float = 1e-4,
             loss_fn: Callable[[nn.Module, Any], torch.Tensor] | None = None, lora_config: Any = None,
             weight_decay: float = 0.0) -> list[float]:
    """A plain AdamW loop over ``batches`` training only what ``mode`` allows; returns the per-step losses.

    Args:
        model: a compressed model (after :func:`rankwise.compress.apply`).
        batches: training batches (tensors of ids, dicts of kwargs, tuples).
        mode: ``"lrc"`` (factors only) or ``"lora"`` (a LoRA adapter on top; merge it afterwards).
        lr: AdamW learning rate.
        loss_fn: ``(model, batch) -> scalar``; default the model's loss with labels = input ids.
        lora_config: the adapter config for ``mode="lora"``.
        weight_decay: AdamW weight decay.
    """
    if mode == "lrc":
        params = freeze_except_lowrank(model)
    elif mode == "lora":
        params = add_lora(model, lora_config)
    else:
        raise ConfigError(f"mode must be 'lrc' or 'lora', got {mode!r}")
    loss_fn = loss_fn or default_loss
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    model.train()
    losses = []
    for batch in batches:
        loss = loss_fn(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss))
    model.eval()
    return losses
