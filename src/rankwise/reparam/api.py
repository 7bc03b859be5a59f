"""``reparameterize`` and ``densify``: the entry points of reparameterised pretraining.

    schedule = rankwise.reparameterize(model, rankwise.method_config("sltrain", rank=32, density=0.03))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for step, x in enumerate(batches):
        loss = model(input_ids=x, labels=x).loss + schedule.loss_term()
        loss.backward()
        schedule.before_step(step)
        for g in opt.param_groups: g["lr"] = lr_at(step) * schedule.lr_factor(step)
        opt.step(); schedule.after_step(step, opt); opt.zero_grad()
    rankwise.reparam.densify(model)        # plain nn.Linear layers again (save_pretrained, generate, …)

To resume exactly, rebuild the model, call ``reparameterize`` with the same config, then load the model,
optimizer and ``schedule.state_dict()`` saved at the stop (all plain tensors: ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

from torch import nn

from ..core.api import hosts, merge_and_unload
from ..errors import ConfigError
from ..schedule import ComposedSchedule, TrainingSchedule
from .cola import apply_cola
from .config import ReparamConfig
from .layers import factored_layers, set_submodule
from .lost import apply_lost
from .low_rank import apply_low_rank
from .refactor import RefactorSchedule
from .relora import apply_relora
from .sltrain import apply_sltrain
from .sst import apply_sst
from .switchlora import apply_switchlora


def _static(apply):
    def run(model, config):
        apply(model, config)
        return TrainingSchedule()

    return run


_APPLY = {
    "low-rank": _static(apply_low_rank),
    "sltrain": _static(apply_sltrain),
    "lost": _static(apply_lost),
    "cola": _static(apply_cola),
    "sst": apply_sst,
    "relora": apply_relora,
    "switchlora": apply_switchlora,
}


def reparameterize(model: nn.Module, config: ReparamConfig) -> TrainingSchedule:
    """Reparameterise ``model``'s selected linear layers in place; return the per-step schedule.

    Args:
        model: any ``nn.Module`` (e.g. a transformers causal LM freshly initialised for pretraining).
        config: a :class:`ReparamConfig` (``rankwise.method_config("<method>", ...)``).

    Returns:
        The method's :class:`rankwise.TrainingSchedule` (a no-op one for methods without per-step
        behaviour), composed with :class:`RefactorSchedule` when ``config.refactor_every`` is set.

    Raises:
        ConfigError, TargetError: before the model is modified.
    """
    if not isinstance(config, ReparamConfig):
        raise ConfigError(f"config must be a rankwise.reparam.ReparamConfig (rankwise.method_config('<method>')), "
                          f"got {type(config).__name__}")
    config.validate()
    if next(factored_layers(model), None) is not None or next(hosts(model), None) is not None:
        raise ConfigError("the model is already reparameterised or adapted; call densify (or unload) first")
    schedule = _APPLY[config.method](model, config)
    if config.refactor_every is not None:
        schedule = ComposedSchedule([schedule, RefactorSchedule(model, config.refactor_every,
                                                                config.refactor_warmup)])
    return schedule


def densify(model: nn.Module) -> nn.Module:
    """Turn a reparameterised model back into a plain dense one (same object, same function).

    Factored layers become ``nn.Linear`` with W formed once; ReLoRA / SwitchLoRA adapters are merged
    and removed. CoLA layers (y = B·σ(A·x)) have no dense form: ConfigError, before any change.
    """
    layers = list(factored_layers(model))
    bad = [n for n, m in layers if not m.mergeable]
    if bad:
        raise ConfigError(f"layers {bad[:3]} ({type(dict(layers)[bad[0]]).__name__}) are not linear in their input "
                          "and have no dense form; keep the model factored (save it with its state_dict)")
    for name, layer in layers:
        set_submodule(model, name, layer.to_linear())
    if next(hosts(model), None) is not None:
        merge_and_unload(model)
    for p in model.parameters():
        p.requires_grad_(True)
    return model
