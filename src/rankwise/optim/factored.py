"""Finding the B·A factor pairs that adapter gradient rules (LoRA-Pro, AltLoRA, ALLoRA) act on, and the
pieces shared by the optimizers that update such pairs as a whole (LoRA-Pro's AdamW, AltLoRA's momentum)."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..core.contract import Wrapper
from ..errors import ConfigError
from ..schedule import TrainingSchedule

# parameterisations whose ΔW is exactly s·B·A with B = lora_B (m, r), A = lora_A (r, n); others may add theirs
BA_SHAPED: set[type] = set()


@dataclass
class FactorPair:
    """One adapted layer's factors: ΔW = s·B·A, A (r, n), B (m, r)."""

    layer: str
    a: nn.Parameter
    b: nn.Parameter
    scale: float


def factor_pairs(model: nn.Module, rule: str) -> list[FactorPair]:
    """Every active, trainable adapter with ΔW = s·B·A under the additive wrapper.

    Raises:
        ConfigError: when there is none (the rule would silently do nothing).
    """
    from ..adapters.lora import LoRA
    from ..core.api import hosts

    shaped = BA_SHAPED | {LoRA}
    pairs = []
    for layer, _, host in hosts(model):
        for n in host.active:
            adapter = host[n]
            d = adapter.delta
            if type(d) in shaped and type(adapter.wrapper) is Wrapper and d.lora_A.requires_grad:
                pairs.append(FactorPair(layer, d.lora_A, d.lora_B, d.scale))
    if not pairs:
        raise ConfigError(f"{rule} needs active LoRA adapters with ΔW = s·B·A (parameterisation 'lora', no DoRA); "
                          "the model has none")
    return pairs


def ridge_eye(k: int, ridge: float, like: torch.Tensor) -> torch.Tensor:
    return ridge * torch.eye(k, dtype=like.dtype, device=like.device)


# every live pair optimizer (LoRAProAdamW, AltLoRAOptimizer): OptimizerOwnedRule looks its factors up here
_PAIR_OPTIMIZERS: weakref.WeakSet = weakref.WeakSet()


def optimizer_pairs(optimizer: torch.optim.Optimizer, model: nn.Module, rule: str) -> list[FactorPair]:
    """The factor pairs of ``model`` that ``optimizer``'s param groups hold, both factors of each; registers it.

    Raises:
        ConfigError: a pair has only one factor in the optimizer, or no pair is in it, before any state exists.
    """
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    pairs = []
    for f in factor_pairs(model, rule):
        has_a, has_b = id(f.a) in held, id(f.b) in held
        if has_a != has_b:
            raise ConfigError(f"{rule}: layer {f.layer!r} has only its {'A' if has_a else 'B'} factor in the "
                              "optimizer's params; pass both lora_A and lora_B (or neither)")
        if has_a:
            pairs.append(f)
    if not pairs:
        raise ConfigError(f"{rule}: none of the model's LoRA factors are in the given params; leave params=None to "
                          "train every trainable parameter of the model")
    _PAIR_OPTIMIZERS.add(optimizer)
    return pairs


class PairedOptimizer(torch.optim.Optimizer):
    """Base of the optimizers that update a model's B·A factor pairs together (LoRA-Pro's AdamW, AltLoRA).

    Checks the shared hyperparameters, takes every trainable parameter of ``model`` when ``params`` is
    None, and finds the pairs the param groups hold (``pairs``; ``factor_ids`` for the rest: parameters
    outside any pair, which the subclasses step with AdamW's update).
    """

    def __init__(self, model: nn.Module, params: Any, defaults: dict[str, Any], rule: str):
        bad = [k for k in ("lr", "eps", "weight_decay", "ridge") if defaults[k] < 0]
        if bad or not all(0.0 <= b < 1.0 for b in defaults["betas"]):
            shown = ", ".join(f"{k}={defaults[k]}" for k in ("lr", "betas", "eps", "weight_decay", "ridge"))
            raise ValueError(f"{type(self).__name__}: need lr, eps, weight_decay, ridge ≥ 0 and betas in [0, 1); "
                             f"got {shown}")
        if params is None:
            params = [p for p in model.parameters() if p.requires_grad]
        super().__init__(params, {**defaults, "betas": tuple(defaults["betas"])})
        self.pairs = optimizer_pairs(self, model, rule)
        self.factor_ids = {id(p) for f in self.pairs for p in (f.a, f.b)}

    def group_of(self) -> dict[int, dict]:
        """{id(parameter): its param group}."""
        return {id(p): g for g in self.param_groups for p in g["params"]}


class OptimizerOwnedRule(TrainingSchedule):
    """The schedule of a method whose whole update lives in its optimizer (LoRA-Pro's AdamW, AltLoRA's momentum).

    It has nothing to do per step, but refuses to let a plain optimizer silently train the factors as
    ordinary LoRA: ``before_step`` raises unless every pair is held by a live optimizer of class ``owner``
    (built by the method's ``optimizer`` hook or directly). Checked before any parameter moves.
    """

    def __init__(self, model: nn.Module, owner: type, rule: str, option: str, value: str, method: str):
        self.pairs = factor_pairs(model, rule)
        self.owner, self.rule, self.option, self.value, self.method = owner, rule, option, value, method

    def before_step(self, step: int) -> None:
        held = {id(p) for opt in list(_PAIR_OPTIMIZERS) if isinstance(opt, self.owner)
                for g in opt.param_groups for p in g["params"]}
        missing = [f.layer for f in self.pairs if id(f.a) not in held]
        if missing:
            raise ConfigError(
                f"{self.rule} with options {{{self.option!r}: {self.value!r}}} runs inside its optimizer, but layer(s) "
                f"{missing[:3]} are not trained by a {self.owner.__name__}: build the optimizer with "
                f"rankwise.get_method({self.method!r}).optimizer(model, config, schedule, lr=...) or "
                f"rankwise.optim.{self.owner.__name__}(model, lr=...), or set options={{{self.option!r}: 'rule'}} "
                "to adjust the gradients for any optimizer")
