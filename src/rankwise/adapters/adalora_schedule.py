"""AdaLoRA's rank schedule: importance scores, a cubic budget, an orthogonality penalty, rank masking.

"AdaLoRA: Adaptive Budget Allocation for Parameter-Efficient Fine-Tuning", Zhang et al.,
arXiv 2303.10512. Follows PEFT 0.21's ``RankAllocator`` / ``AdaLoraModel.update_and_allocate``
step for step, so the same run in both libraries prunes the same triplets:

* importance of every entry θ of P, λ, Q: I = |θ·∇θ|, smoothed Ī ← β₁Ī + (1−β₁)I (sensitivity) and
  Ū ← β₂Ū + (1−β₂)|I − Ī| (uncertainty); score s(θ) = Ī·Ū;
* triplet i of a layer scores S_i = s(λ_i) + mean_j s(Q_ij) + mean_k s(P_ki);
* budget b(t) (total kept triplets over all layers): b₀ = Σ r for t ≤ tinit, then
  b(t) = ⌊(b₀ − b_T)·(1 − (t − tinit)/(T − tfinal − tinit))³ + b_T⌋, with b_T = target_r · #layers,
  reallocated every ``deltaT`` steps: the b₀ − b(t) lowest-scoring triplets get λ_i = 0;
* at t = T − tfinal the final allocation (budget b_T) is fixed and re-applied after every later step;
* penalty added to the loss: w · mean over factors of ‖PᵀP − I‖_F and ‖QQᵀ − I‖_F.

Differences from PEFT, noted for users: when the budget equals the current total (PEFT's
``kthvalue`` would fail with k = 0) nothing is masked.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..schedule import TrainingSchedule
from .adalora import AdaLoRA


def adalora_layers(model: nn.Module, name: str = "default") -> list[tuple[str, AdaLoRA]]:
    """(layer name, AdaLoRA parameterisation) of adapter ``name``, in model order."""
    from ..core.api import hosts

    return [(layer, h[name].delta) for layer, _, h in hosts(model)
            if name in h and isinstance(h[name].delta, AdaLoRA)]


class AdaLoRASchedule(TrainingSchedule):
    """The per-step AdaLoRA rank allocator for adapter ``name``.

    Args:
        model: a model adapted with ``parameterisation="adalora"``.
        config: its ``LoRAConfig`` (options ``target_r``, ``tinit``, ``tfinal``, ``deltaT``, ``beta1``,
            ``beta2``, ``orth_reg_weight``).
        total_steps: T, the number of optimizer steps of the run.

    Call order (the loop's): ``loss + loss_term()``, backward, ``optimizer.step()``,
    ``after_step(step)`` with the gradients still present (PEFT's ``update_and_allocate``).
    """

    def __init__(self, model: nn.Module, config: Any, total_steps: int, name: str = "default"):
        self.layers = adalora_layers(model, name)
        if not self.layers:
            raise ConfigError(f"adapter {name!r} has no AdaLoRA layers; adapt with rankwise.method_config('adalora')")
        opt = config.option
        self.target_r, self.tinit, self.tfinal = int(opt("target_r")), int(opt("tinit")), int(opt("tfinal"))
        self.delta_t, self.beta1, self.beta2 = int(opt("deltaT")), float(opt("beta1")), float(opt("beta2"))
        self.orth_weight = float(opt("orth_reg_weight"))
        self.total = int(total_steps)
        if self.total <= 0:
            raise ConfigError(f"AdaLoRA needs total_steps > 0, got {total_steps!r}")
        if self.tinit >= self.total - self.tfinal:
            raise ConfigError(f"AdaLoRA: tinit={self.tinit} leaves no budgeting phase before T - tfinal = "
                              f"{self.total - self.tfinal}; decrease tinit/tfinal or train longer")
        if not (0 < self.beta1 < 1 and 0 < self.beta2 < 1) or self.delta_t < 1 or self.orth_weight < 0:
            raise ConfigError("AdaLoRA options need 0 < beta1, beta2 < 1, deltaT ≥ 1 and orth_reg_weight ≥ 0")
        self.init_budget = sum(d.rank for _, d in self.layers)
        self.target_budget = self.target_r * len(self.layers)
        self.exp_avg_ipt: dict[str, torch.Tensor] = {}
        self.exp_avg_unc: dict[str, torch.Tensor] = {}

    # ---- the four points -----------------------------------------------------------------------
    def loss_term(self) -> torch.Tensor | float:
        if self.orth_weight == 0:
            return 0.0
        reg = sum(d.orthogonality() for _, d in self.layers)
        return self.orth_weight * reg / (2 * len(self.layers))  # mean over the P and Q tensors, as PEFT

    def after_step(self, step: int, optimizer: torch.optim.Optimizer | None = None) -> None:
        final = self.total - self.tfinal
        if step < final:
            self._update_importance()
            budget, mask_now = self.budget(step)
            if mask_now:
                self._mask_to_budget(budget)
        elif step == final:
            self._mask_to_budget(self.target_budget)
            self.exp_avg_ipt.clear()
            self.exp_avg_unc.clear()
        else:
            self._apply_masks()

    # ---- budget --------------------------------------------------------------------------------
    def budget(self, step: int) -> tuple[int, bool]:
        """(total kept triplets at ``step``, whether to reallocate now): the cubic schedule."""
        if step <= self.tinit:
            return self.init_budget, False
        if step > self.total - self.tfinal:
            return self.target_budget, True
        frac = 1 - (step - self.tinit) / (self.total - self.tfinal - self.tinit)
        budget = int((self.init_budget - self.target_budget) * frac ** 3 + self.target_budget)
        return budget, step % self.delta_t == 0

    # ---- importance ----------------------------------------------------------------------------
    def _params(self):
        for layer, d in self.layers:
            for pname in ("lora_A", "lora_E", "lora_B"):
                yield f"{layer}.{pname}", getattr(d, pname)

    @torch.no_grad()
    def _update_importance(self) -> None:
        for key, p in self._params():
            if p.grad is None:
                continue
            ipt = (p * p.grad).abs()
            avg = self.exp_avg_ipt.get(key)
            if avg is None:
                avg = self.exp_avg_ipt[key] = torch.zeros_like(p)
                self.exp_avg_unc[key] = torch.zeros_like(p)
            avg.mul_(self.beta1).add_(ipt, alpha=1 - self.beta1)
            unc = self.exp_avg_unc[key]
            unc.mul_(self.beta2).add_((ipt - avg).abs(), alpha=1 - self.beta2)

    def _score(self, key: str) -> torch.Tensor:
        return self.exp_avg_ipt[key] * self.exp_avg_unc[key]

    def triplet_scores(self) -> dict[str, torch.Tensor]:
        """S_i per layer (r,): s(λ_i) + mean_j s(Q_ij) + mean_k s(P_ki)."""
        out = {}
        for layer, d in self.layers:
            k = f"{layer}.lora_"
            if k + "E" not in self.exp_avg_ipt:
                out[layer] = torch.zeros(d.rank, dtype=d.lora_E.dtype, device=d.lora_E.device)
                continue
            out[layer] = (self._score(k + "E").view(-1) + self._score(k + "A").mean(1)
                          + self._score(k + "B").mean(0))
        return out

    @torch.no_grad()
    def _mask_to_budget(self, budget: int) -> None:
        k = self.init_budget - budget
        if k <= 0:
            return
        scores = self.triplet_scores()
        threshold = torch.kthvalue(torch.cat([s.view(-1) for s in scores.values()]), k)[0].item()
        for layer, d in self.layers:
            d.rank_mask.copy_(~(scores[layer] <= threshold))
        self._apply_masks()

    @torch.no_grad()
    def _apply_masks(self) -> None:
        for _, d in self.layers:
            d.lora_E.masked_fill_(~d.rank_mask.view(-1, 1), 0.0)

    # ---- resume --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {f"ipt.{k}": v.clone() for k, v in self.exp_avg_ipt.items()}
        state.update({f"unc.{k}": v.clone() for k, v in self.exp_avg_unc.items()})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.exp_avg_ipt = {k[4:]: v.clone() for k, v in state.items() if k.startswith("ipt.")}
        self.exp_avg_unc = {k[4:]: v.clone() for k, v in state.items() if k.startswith("unc.")}
