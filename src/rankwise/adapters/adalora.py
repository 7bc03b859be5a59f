"""AdaLoRA's parameterisation: ΔW in SVD form, P·Λ·Q, whose triplets a rank schedule prunes.

"AdaLoRA: Adaptive Budget Allocation for Parameter-Efficient Fine-Tuning", Zhang et al.,
arXiv 2303.10512 (ICLR 2023). Reference code: huggingface/peft ``tuners/adalora`` (the behaviour
users expect; rankwise follows it).

    ΔW = s · P · diag(λ) · Q,      s = α / (r + 1e-5)

P = ``lora_B`` (m, r) left "singular vectors", λ = ``lora_E`` (r, 1) singular values, Q = ``lora_A``
(r, n) right "singular vectors". PEFT's scale is α/(r + 1e-5) (``ranknum + 1e-5``), kept here so
that logits agree with PEFT's; r is the *initial* rank and the scale does not change when triplets
are pruned. Init (PEFT): λ = 0, P, Q ~ N(0, 0.02²), so ΔW₀ = 0 but every factor gets gradients.

P and Q are kept near-orthogonal by the penalty ‖PᵀP − I‖_F + ‖QQᵀ − I‖_F, and pruning a triplet
only zeroes its λᵢ (``rank_mask`` records which survive); both live in
:class:`rankwise.adapters.adalora_schedule.AdaLoRASchedule`. ΔW stays an ordinary matrix, so it merges.

Trainable parameters per m×n layer: r·(m + n) + r.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.contract import Parameterisation
from ..core.geometry import LayerGeometry

# LoRAConfig.options read by AdaLoRA (PEFT's AdaLoraConfig fields and defaults; init_r = LoRAConfig.rank)
ADALORA_OPTIONS: dict[str, object] = {
    "target_r": 8, "tinit": 0, "tfinal": 0, "deltaT": 1, "beta1": 0.85, "beta2": 0.85, "orth_reg_weight": 0.5,
    "total_step": None,  # PEFT's field; the schedule's total_steps argument is what rankwise uses
}
PEFT_EPS = 1e-5  # PEFT divides by ranknum + 1e-5


class AdaLoRA(Parameterisation):
    """ΔW = s·P·diag(λ)·Q with trainable ``lora_A`` = Q (r, n), ``lora_E`` = λ (r, 1), ``lora_B`` = P (m, r).

    ``rank_mask`` (bool, r) marks the triplets still in the budget; pruned ones have λᵢ = 0.
    """

    fast_params = ("lora_B",)

    def __init__(self, geometry: LayerGeometry, rank: int, scale: float, dtype: torch.dtype,
                 device: torch.device | str | None = None):
        # the config's scale is α/r; PEFT's is α/(r + 1e-5)
        super().__init__(geometry, rank, scale * rank / (rank + PEFT_EPS))
        self.lora_A = nn.Parameter(torch.empty(rank, geometry.in_features, dtype=dtype, device=device))
        self.lora_E = nn.Parameter(torch.empty(rank, 1, dtype=dtype, device=device))
        self.lora_B = nn.Parameter(torch.empty(geometry.out_features, rank, dtype=dtype, device=device))
        self.register_buffer("rank_mask", torch.ones(rank, dtype=torch.bool, device=device))
        self.reset_default()

    def reset_default(self) -> None:
        """PEFT's init: λ = 0, P, Q ~ N(0, 0.02²); every triplet in the budget."""
        with torch.no_grad():
            self.lora_E.zero_()
            nn.init.normal_(self.lora_A, mean=0.0, std=0.02)
            nn.init.normal_(self.lora_B, mean=0.0, std=0.02)
            self.rank_mask.fill_(True)

    @property
    def kept_rank(self) -> int:
        """Number of triplets still in the budget."""
        return int(self.rank_mask.sum())

    def add_delta(self, base: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        qe = self.lora_A * self.lora_E  # (r, n): Λ·Q, O(r·n) — never the (m, n) product
        if x.is_floating_point() and x.dtype != qe.dtype:
            x = x.to(qe.dtype)
        h = self.geometry.first(base, x, qe)  # (..., r)
        return self.geometry.second_add(out, h, self.lora_B, self.scale)

    def delta_matrix(self) -> torch.Tensor:
        return self.scale * (self.lora_B @ (self.lora_A * self.lora_E))  # (m, n)

    def initial_delta_matrix(self) -> torch.Tensor:
        return self.scale * (self.lora_B_init @ (self.lora_A_init * self.lora_E_init))

    def add_initial_delta(self, base: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        h = self.geometry.first(base, x.to(self.lora_A_init.dtype), self.lora_A_init * self.lora_E_init)
        return self.geometry.second_add(out, h, self.lora_B_init, self.scale)

    def orthogonality(self) -> torch.Tensor:
        """‖QQᵀ − I‖_F + ‖PᵀP − I‖_F (r × r Gram matrices)."""
        eye = torch.eye(self.rank, dtype=self.lora_A.dtype, device=self.lora_A.device)
        a, b = self.lora_A, self.lora_B
        return torch.linalg.matrix_norm(a @ a.t() - eye) + torch.linalg.matrix_norm(b.t() @ b - eye)

    def extra_repr(self) -> str:
        g = self.geometry
        return (f"{g.kind}, in={g.in_features}, out={g.out_features}, rank={self.rank} "
                f"(kept {self.kept_rank}), scale={self.scale:g}")
