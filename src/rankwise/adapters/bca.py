"""LoRA with an r×r core between the factors ("BCA"), and LoRA-XS, its frozen-factor special case.

    ΔW = s·B·R·A,   B (m, r), R = ``lora_core`` (r, r), A (r, n)

* ``"bca"`` — B, R and A all trainable; R starts at the identity, so any LoRA init (default,
  PiSSA, LoRA-GA, …) applies unchanged and ΔW starts as s·B·A. This is the shape of SLoRA in
  "NLoRA: Nyström-Initiated Low-Rank Adaptation for Large Language Models" (Guo et al.,
  arXiv 2502.14482). Trainable: r·(m+n) + r².
* ``"lora-xs"`` — "LoRA-XS: Low-Rank Adaptation with Extremely Small Number of Parameters"
  (Bałazy et al., arXiv 2405.17604): B and A are frozen (buffers, set once by the init, e.g. the
  top-r SVD of W0 with ``init="lora-xs"``) and only R is trained: r² parameters per layer,
  independent of the layer's size. LoRA-SB (arXiv 2411.19557) uses the same shape.

Forward, factored (T tokens): h = A·x (T, r) → h·Rᵀ (T, r) → out + s·B·h: O(T·r·(m+n) + T·r²), the
(m, n) product is never formed. Saving in PEFT's format folds the core into B (B' = B·R), which is
exact: PEFT loads it as a plain LoRA.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.contract import Parameterisation
from ..core.geometry import LayerGeometry


class CoreLoRA(Parameterisation):
    """ΔW = s·B·R·A: ``lora_B`` (m, r), ``lora_core`` (r, r) = I at construction, ``lora_A`` (r, n), all trainable."""

    frozen_factors = False
    fast_params = ("lora_B",)

    def __init__(self, geometry: LayerGeometry, rank: int, scale: float, dtype: torch.dtype,
                 device: torch.device | str | None = None):
        super().__init__(geometry, rank, scale)
        a = torch.empty(rank, geometry.in_features, dtype=dtype, device=device)
        b = torch.empty(geometry.out_features, rank, dtype=dtype, device=device)
        if self.frozen_factors:  # buffers: set_active's requires_grad_ can never unfreeze them
            self.register_buffer("lora_A", a)
            self.register_buffer("lora_B", b)
        else:
            self.lora_A, self.lora_B = nn.Parameter(a), nn.Parameter(b)
        self.lora_core = nn.Parameter(torch.eye(rank, dtype=dtype, device=device))

    def _initial(self, name: str) -> torch.Tensor:
        return getattr(self, f"{name}_init", getattr(self, name))  # frozen factors have no snapshot

    def _add(self, base, x, out, a, core, b):
        if x.is_floating_point() and x.dtype != a.dtype:
            x = x.to(a.dtype)
        h = self.geometry.first(base, x, a)                          # (..., r) or (N, r, H, W)
        h = torch.einsum("nrhw,sr->nshw", h, core) if self.geometry.kind == "conv2d" else h @ core.t()
        return self.geometry.second_add(out, h, b, self.scale)

    def add_delta(self, base: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return self._add(base, x, out, self.lora_A, self.lora_core, self.lora_B)

    def add_initial_delta(self, base: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return self._add(base, x, out, self._initial("lora_A"), self._initial("lora_core"), self._initial("lora_B"))

    def delta_matrix(self) -> torch.Tensor:
        return self.scale * (self.lora_B @ self.lora_core @ self.lora_A)  # (m, n)

    def initial_delta_matrix(self) -> torch.Tensor:
        return self.scale * (self._initial("lora_B") @ self._initial("lora_core") @ self._initial("lora_A"))

    def lora_factors(self, initial: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(B·R, A): the same ΔW as a plain LoRA pair, for PEFT's format."""
        get = self._initial if initial else (lambda n: getattr(self, n))
        return (get("lora_B") @ get("lora_core")).detach(), get("lora_A").detach()

    def extra_repr(self) -> str:
        g = self.geometry
        return (f"{g.kind}, in={g.in_features}, out={g.out_features}, rank={self.rank}, scale={self.scale:g}, "
                f"frozen_factors={self.frozen_factors}")


class LoRAXS(CoreLoRA):
    """LoRA-XS: ``lora_A``, ``lora_B`` frozen buffers; only ``lora_core`` (r, r) is trained."""

    frozen_factors = True
    fast_params = ()
