"""Turn a method name from the catalogue into what the loop trains with: an optimizer and a schedule.

    prepared = prepare_method(model, "dora", {"rank": 16}, lr=1e-3, total_steps=500)

dispatches on the method's family (``rankwise.get_method(name).family``):

* ``"adamw"`` / ``"full"``: full fine-tuning with ``torch.optim.AdamW`` over every parameter;
* ``"adapter"``: ``rankwise.adapt`` (with calibration batches if the method reads them), AdamW over
  ``rankwise.param_groups`` (LoRA+ ratios included), and the method's schedule if it has one; a
  method's own ``apply`` / ``optimizer`` hooks (``rankwise.methods.Method``) replace adapt / AdamW
  (LIFT: not ``adapt``, its schedule adds trainable sparse deltas on W's principal entries, trained by the
  plain AdamW; LoRA-Pro's AdamW and AltLoRA: the method's update rule is its optimizer);
* ``"optimizer"``: ``rankwise.optim.build_optimizer`` over the full model (GaLore, Fira, APOLLO, …);
* ``"reparam"``: ``rankwise.reparameterize`` (the model changes in place), AdamW over what it leaves
  trainable, and the schedule it returns (restarts, merges).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..methods import get_method, method_config
from ..schedule import TrainingSchedule

FULL = ("adamw", "full")


@dataclass
class Prepared:
    """A model made ready for training by a method."""

    name: str
    family: str
    config: Any
    optimizer: torch.optim.Optimizer
    schedule: TrainingSchedule

    def trainable(self, model: nn.Module) -> int:
        """Number of trainable parameters (the schedule's ``trainable_count()`` where it defines one)."""
        count = getattr(self.schedule, "trainable_count", None)
        if count is not None:
            return int(count())
        return sum(p.numel() for p in model.parameters() if p.requires_grad)


def family_of(name: str) -> str:
    """``"adamw"`` for plain full training, else the catalogue family of ``name``."""
    return "adamw" if name in FULL and not _catalogued_optimizer(name) else get_method(name).family


def _catalogued_optimizer(name: str) -> bool:
    from ..methods import METHODS

    return name in METHODS and METHODS[name].family == "optimizer" and _optim_api() is not None


def _optim_api():
    from .. import optim

    return optim if hasattr(optim, "build_optimizer") else None


def method_kwargs(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``settings`` that the config of method ``name`` has fields for (None values dropped).

    The CLI's shared fields (rank, alpha, targets, …) apply to each method that knows them, so one
    command line drives adapters, optimizers and reparameterisations alike. A preset whose rank is
    fixed at 1 (APOLLO-Mini) keeps it.
    """
    if name in FULL:  # plain full-rank AdamW: the shared low-rank settings do not apply
        return {}
    default = method_config(name)
    known = {f.name for f in dataclasses.fields(default)} if dataclasses.is_dataclass(default) else set()
    out = {k: v for k, v in settings.items() if k in known and v is not None}
    if getattr(default, "rank", None) == 1:
        out.pop("rank", None)
    return out


def prepare_method(model: nn.Module, name: str, kwargs: dict[str, Any], lr: float, total_steps: int,
                   weight_decay: float = 0.0, calibration: Callable[[], list] | None = None) -> Prepared:
    """Apply method ``name`` (with config overrides ``kwargs``) to ``model`` in place; build its optimizer.

    Args:
        calibration: called (only for methods that need it) to get calibration batches, dicts of
            model inputs with labels.
    """
    family = family_of(name)
    schedule: TrainingSchedule | None = None
    config: Any = None
    if family == "adamw":
        if kwargs:
            raise ConfigError(f"method {name!r} (full AdamW) takes no method settings, got {sorted(kwargs)}")
        for p in model.parameters():
            p.requires_grad_(True)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    elif family == "adapter":
        import rankwise

        method = get_method(name)
        config = method_config(name, **kwargs)
        batches = None
        if method.needs_calibration:
            if calibration is None:
                raise ConfigError(f"method {name!r} needs calibration batches, and none were given")
            batches = calibration()
        if method.apply is not None:  # not applied by adapt (LIFT: its schedule adds the deltas)
            method.apply(model, config, batches)
        elif batches is not None:
            rankwise.adapt(model, config, calibration=batches)
        else:
            rankwise.adapt(model, config)
        if method.schedule is not None:
            schedule = method.schedule(model, config, total_steps)
        if method.optimizer is not None:  # the method's own optimizer (LoRA-Pro's AdamW, AltLoRA)
            opt = method.optimizer(model, config, schedule, lr=lr, weight_decay=weight_decay)
        else:
            opt = torch.optim.AdamW(rankwise.param_groups(model, lr=lr, weight_decay=weight_decay), lr=lr,
                                    weight_decay=weight_decay)
    elif family == "optimizer":
        optim = _optim_api()
        if optim is None:
            raise ConfigError(f"method {name!r} is a low-rank optimizer, but rankwise.optim.build_optimizer is not "
                              "available in this install")
        config = method_config(name, **kwargs)
        for p in model.parameters():
            p.requires_grad_(True)
        opt = optim.build_optimizer(model, config, lr, weight_decay=weight_decay)
    elif family == "reparam":
        import rankwise

        if not hasattr(rankwise, "reparameterize"):
            raise ConfigError(f"method {name!r} reparameterises the model, but rankwise.reparameterize is not "
                              "available in this install")
        config = method_config(name, **kwargs)
        schedule = rankwise.reparameterize(model, config)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    else:
        raise ConfigError(f"method {name!r} is a {family!r} method, which does not train; choose an adapter, "
                          "optimizer or reparam method, or 'adamw'")
    for group in opt.param_groups:
        group.setdefault("base_lr", group["lr"])  # the loop sets lr = base_lr · factor(step)
    return Prepared(name, family, config, opt, schedule or TrainingSchedule())


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held in optimizer state tensors (``rankwise.optim.state_bytes`` when available)."""
    optim = _optim_api()
    if optim is not None and hasattr(optim, "state_bytes"):
        return int(optim.state_bytes(optimizer))
    total = 0
    for state in optimizer.state.values():
        for v in state.values():
            if torch.is_tensor(v):
                total += v.numel() * v.element_size()
    return total
