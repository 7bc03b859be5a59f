"""LoRA: ΔW = s·B·A.

"LoRA: Low-Rank Adaptation of Large Language Models", Hu et al., arXiv 2106.09685.
rsLoRA ("A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA", Kalajdzievski,
arXiv 2312.03732) only changes the scale s from α/r to α/√r, which the config computes.

Shapes, in the layer's matrix view (see ``core.geometry``): W0 (m, n), B = ``lora_B`` (m, r),
A = ``lora_A`` (r, n). The forward computes out + s·B·(A·x): O(T·r·(m+n)) work for T tokens,
never the (m, n) product.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.contract import Parameterisation
from ..core.geometry import LayerGeometry, acc_dtype, is_hf_conv1d
from .fused_lora import FusedDoRALinear, FusedLoRALinear


class LoRA(Parameterisation):
    """ΔW = s·B·A with trainable ``lora_A`` (r, n) and ``lora_B`` (m, r).

    The factors are allocated uninitialised: an initialiser from ``rankwise.init`` (or a loaded
    file) sets every value before the adapter is attached.
    """

    fast_params = ("lora_B",)  # LoRA+ ("LoRA+: Efficient Low Rank Adaptation", arXiv 2402.12354)

    def __init__(self, geometry: LayerGeometry, rank: int, scale: float, dtype: torch.dtype,
                 device: torch.device | str | None = None):
        super().__init__(geometry, rank, scale)
        self.lora_A = nn.Parameter(torch.empty(rank, geometry.in_features, dtype=dtype, device=device))
        self.lora_B = nn.Parameter(torch.empty(geometry.out_features, rank, dtype=dtype, device=device))

    def add_delta(self, base: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return self._add(base, x, out, self.lora_A, self.lora_B)

    def add_initial_delta(self, base: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return self._add(base, x, out, self.lora_A_init, self.lora_B_init)

    def _add(self, base, x, out, lora_a, lora_b):
        if x.is_floating_point() and x.dtype != lora_a.dtype:
            x = x.to(lora_a.dtype)
        h = self.geometry.first(base, x, lora_a)  # (..., r)
        return self.geometry.second_add(out, h, lora_b, self.scale)

    def fused_forward(self, base: nn.Module, x: torch.Tensor, magnitude: torch.Tensor | None = None
                      ) -> torch.Tensor | None:
        """One fused op for a frozen, plain ``nn.Linear`` / ``Conv1D`` whose dtype matches (see fused_lora.py).

        With ``magnitude`` (DoRA's wrapper passes it) the output is m ⊙ (W0 + ΔW)·x / ‖W0 + ΔW‖ + b.
        Returns None when the layer does not qualify, and the plain path runs.
        """
        w = base.weight
        kind = self.geometry.kind
        if kind == "linear":
            if type(base).forward is not nn.Linear.forward:  # subclasses (quantized, …) keep their own forward
                return None
            w_t = w.t()
        elif kind == "conv1d" and is_hf_conv1d(base) and type(base).__module__.startswith("transformers."):
            w_t = w  # Conv1D stores W0ᵀ (n, m)
        else:
            return None
        bias = base.bias
        if w.requires_grad or (bias is not None and bias.requires_grad) or not (
                x.dtype == w.dtype == self.lora_A.dtype):
            return None
        if magnitude is None:
            return FusedLoRALinear.apply(x, w_t, bias, self.lora_A, self.lora_B, self.scale)
        norms = self.row_norms_with(w_t.t()).to(magnitude.dtype)
        return FusedDoRALinear.apply(x, w_t, bias, self.lora_A, self.lora_B, magnitude, norms, self.scale)

    def delta_matrix(self) -> torch.Tensor:
        return self.scale * (self.lora_B @ self.lora_A)  # (m, n)

    def initial_delta_matrix(self) -> torch.Tensor:
        return self.scale * (self.lora_B_init @ self.lora_A_init)

    def row_norms_with(self, w0: torch.Tensor) -> torch.Tensor:
        """‖W0 + s·B·A‖ per row without forming B·A:

        ‖w_i‖² + 2s·⟨B_i, (W0·Aᵀ)_i⟩ + s²·B_i·(A·Aᵀ)·B_iᵀ — O(m·n·r) instead of an (m, n) product.
        """
        with torch.no_grad():
            w0 = w0.to(acc_dtype(w0.dtype))
            a, b, s = self.lora_A.to(w0.dtype), self.lora_B.to(w0.dtype), self.scale
            sq = torch.linalg.vector_norm(w0, dim=1).square()           # (m,), one pass, no (m, n) temp
            sq = sq + 2 * s * (b * (w0 @ a.t())).sum(1)                 # (m, r) ⊙ (m, r)
            sq = sq + s * s * ((b @ (a @ a.t())) * b).sum(1)            # (m, r) ⊙ (m, r)
            return sq.clamp_min(0).sqrt()

    def extra_repr(self) -> str:
        g = self.geometry
        return f"{g.kind}, in={g.in_features}, out={g.out_features}, rank={self.rank}, scale={self.scale:g}"
