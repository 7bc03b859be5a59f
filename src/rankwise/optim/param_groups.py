"""Parameter groups for adapter training, including LoRA+ learning-rate ratios.

LoRA+ ("LoRA+: Efficient Low Rank Adaptation of Large Models", Hayou, Ghosh & Yu,
arXiv 2402.12354): train B with a learning rate λ times A's (λ ≈ 16), which the paper shows
is needed for efficient feature learning when the width is large.
"""

from __future__ import annotations

from torch import nn

from ..core.api import hosts


def param_groups(model: nn.Module, lr: float, weight_decay: float = 0.0,
                 loraplus_ratio: float | None = None) -> list[dict]:
    """Optimizer param groups over the trainable parameters of ``model``.

    Each adapter's "fast" tensors (LoRA's B) get ``lr · ratio``, where ratio is ``loraplus_ratio``
    if given, else the adapter config's ``loraplus_ratio`` (1 when unset). Other trainable
    parameters (A, DoRA magnitudes, anything the user unfroze) get ``lr``. Empty groups are dropped.

    Returns:
        A list of dicts for any ``torch.optim.Optimizer``: ``[{"params": [...], "lr": ...,
        "weight_decay": ...}, ...]``.
    """
    fast_by_ratio: dict[float, list[nn.Parameter]] = {}
    fast_ids: set[int] = set()
    for _, _, host in hosts(model):
        for name, adapter in host.items():
            ratio = loraplus_ratio if loraplus_ratio is not None else (host.config[name].loraplus_ratio or 1.0)
            if ratio == 1.0:
                continue
            for pname in adapter.delta.fast_params:
                p = getattr(adapter.delta, pname)
                if p.requires_grad:
                    fast_by_ratio.setdefault(float(ratio), []).append(p)
                    fast_ids.add(id(p))
    slow = [p for p in model.parameters() if p.requires_grad and id(p) not in fast_ids]
    groups = [{"params": slow, "lr": lr, "weight_decay": weight_decay}] if slow else []
    for ratio, ps in fast_by_ratio.items():
        groups.append({"params": ps, "lr": lr * ratio, "weight_decay": weight_decay})
    return groups
