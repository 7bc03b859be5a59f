"""``build_optimizer`` (config → optimizer) and ``state_bytes`` (memory of an optimizer's state).

    cfg = rankwise.method_config("fira", rank=64)
    opt = rankwise.optim.build_optimizer(model, cfg, lr=1e-2, weight_decay=0.0)
    ...
    rankwise.optim.state_bytes(opt)     # after at least one step
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .apollo import APOLLO, APOLLOMini
from .config import LowRankConfig
from .fira import Fira
from .galore import GaLoreAdamW
from .groups import low_rank_groups
from .lowrank import LowRankAdam

CLASSES = {"galore": GaLoreAdamW, "fira": Fira, "apollo": APOLLO, "apollo-mini": APOLLOMini}


def build_optimizer(model: nn.Module, config: LowRankConfig | str, lr: float,
                    weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The optimizer ``config`` describes, over the trainable parameters of ``model``.

    Args:
        model: the model (its ``requires_grad`` parameters are optimised).
        config: a :class:`LowRankConfig` (``rankwise.method_config("galore", ...)``) or a method name.
        lr: learning rate (every group).
        weight_decay: decoupled weight decay (every group).
    """
    if isinstance(config, str):
        from ..methods import method_config

        config = method_config(config)
    if not isinstance(config, LowRankConfig):
        raise ConfigError(f"build_optimizer needs an optimizer-family config (rankwise.method_config('galore', ...)), "
                          f"got {type(config).__name__}")
    config.validate()
    if config.optimizer == "adamw":
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=lr, betas=tuple(config.betas), weight_decay=weight_decay,
                                 eps=1e-8 if config.eps is None else config.eps)
    options = dict(niter=config.niter, random_dist=config.random_dist, lazy_refresh=config.lazy_refresh,
                   lazy_threshold=config.lazy_threshold, lazy_window=config.lazy_window, moments=config.moments,
                   seed=config.seed)
    groups = low_rank_groups(model, rank=config.rank, update_gap=config.update_gap, scale=config.scale,
                             projector=config.projector, targets=config.targets, exclude=config.exclude, **options)
    kwargs = dict(lr=lr, betas=tuple(config.betas), eps=1e-6 if config.eps is None else config.eps,
                  weight_decay=weight_decay, layerwise=config.layerwise)
    cls = CLASSES[config.optimizer]
    if cls in (Fira, APOLLO, APOLLOMini):
        kwargs["limiter"] = config.limiter
    if config.scale_type is not None:
        kwargs["scale_type"] = config.scale_type
    return cls(groups, **kwargs)


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the optimizer's state tensors (moments, bases, step tensors), plus cached projector bases.

    Counts every tensor in ``optimizer.state`` once (shared storage is not double counted). For rankwise's
    low-rank optimizers it adds the bases rebuilt from seeds/indices (DCT, random), which live outside the
    state dict but in memory. Call it after at least one step (state is created lazily).
    """
    seen: set[int] = set()
    total = 0

    def add(t: torch.Tensor) -> None:
        nonlocal total
        key = t.untyped_storage().data_ptr() if t.numel() else id(t)
        if key in seen:
            return
        seen.add(key)
        total += t.numel() * t.element_size()

    for st in optimizer.state.values():
        for v in st.values():
            if isinstance(v, torch.Tensor):
                add(v)
    if isinstance(optimizer, LowRankAdam):
        for t in optimizer._bases.values():
            add(t)
    return total
