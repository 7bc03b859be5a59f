"""Writing initial factors into a parameterisation (shared by the initialisers)."""

from __future__ import annotations

import torch

from ..errors import ConfigError


def set_factors(delta, b: torch.Tensor, a: torch.Tensor, core: torch.Tensor | None = None) -> None:
    """Copy B (m, r), A (r, n) and, for core-shaped adapters, R (r, r) into ``delta`` (casting to its dtype)."""
    with torch.no_grad():
        delta.lora_B.copy_(b.to(delta.lora_B.dtype))
        delta.lora_A.copy_(a.to(delta.lora_A.dtype))
        if core is not None:
            delta.lora_core.copy_(core.to(delta.lora_core.dtype))


def require_core(delta, init: str) -> None:
    """Inits that set an r×r core need a core-shaped parameterisation ("lora-xs" or "bca")."""
    if not hasattr(delta, "lora_core"):
        raise ConfigError(f"init={init!r} sets an r×r core between B and A; use parameterisation='lora-xs' (or "
                          f"'bca'), not {type(delta).__name__}")


def require_lora(delta, init: str) -> None:
    """Inits that write B and A need a LoRA-shaped parameterisation."""
    if not (hasattr(delta, "lora_A") and hasattr(delta, "lora_B")):
        raise ConfigError(f"init={init!r} writes LoRA factors B and A; {type(delta).__name__} has none — use "
                          "parameterisation='lora', 'bca' or 'lora-xs'")


def top_svd(g: torch.Tensor, q: int, niter: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Randomized top-q SVD (``torch.svd_lowrank``, as LoRA-GA's and LoRA-One's code): U (m, q), S (q,), Vh (q, n)."""
    u, s, v = torch.svd_lowrank(g.float(), q=q, niter=niter)
    return u, s, v.t()
