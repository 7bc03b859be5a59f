"""LoRA-based reparameterisations (ReLoRA, SwitchLoRA): W = W0 + s·B·A via ``rankwise.adapt``.

The selected linears keep their frozen weight W0 and get a LoRA adapter (Kaiming A, zero B); every
parameter outside the adapted layers (embeddings, norms, output head) stays trainable, as in the
papers' pretraining setups. ``densify`` is ``rankwise.merge_and_unload``.
"""

from __future__ import annotations

from torch import nn

from ..config import LoRAConfig
from ..core.api import adapt, hosts
from ..core.contract import Adapter
from .config import ReparamConfig
from .layers import select_linears


def attach_lora(model: nn.Module, config: ReparamConfig, name: str) -> list[tuple[nn.Module, Adapter]]:
    """Add LoRA adapter ``name`` (rank ``config.rank``, s = config.scale) to the selected linears.

    Returns (layer, adapter) pairs in model order.
    """
    layers = select_linears(model, config)
    rank_pattern = {n: min(config.rank, m.in_features, m.out_features) for n, m in layers}
    alpha = float(config.rank) if config.alpha is None else float(config.alpha)
    # α per layer keeps s = α/r_layer equal to config.scale(r_layer)
    alpha_pattern = {n: (float(r) if config.alpha is None else config.alpha) for n, r in rank_pattern.items()}
    lora = LoRAConfig(rank=config.rank, alpha=alpha, targets=[n for n, _ in layers], rank_pattern=rank_pattern,
                      alpha_pattern=alpha_pattern)
    owned = {id(q) for _, m in layers for q in m.parameters(recurse=False)}
    before = [(p, p.requires_grad) for p in model.parameters()]
    adapt(model, lora, name)
    for p, trainable in before:                        # adapt froze everything: unfreeze the non-adapted part
        if id(p) not in owned:
            p.requires_grad_(trainable)
    return [(m, h[name]) for _, m, h in hosts(model) if name in h]

