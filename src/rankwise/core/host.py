"""The per-layer host: the named adapters living on one layer, and the hook that runs them.

rankwise does not replace layers. It attaches an ``AdapterHost`` as the child ``rankwise`` of each
adapted layer and registers a forward hook, so the layer keeps its class (``isinstance`` checks
in user and transformers code still hold), its ``weight`` and its state-dict keys; adapter tensors
appear as ``<layer>.rankwise.<adapter>.delta.lora_A`` and so on.

    y = base(x)                                       # the layer's own forward, untouched
    y = adapter_k(x, y) for each active, unmerged k   # each adds its factored contribution
"""

from __future__ import annotations

import torch
from torch import nn

from .contract import Adapter
from .geometry import LayerGeometry

HOST_ATTR = "rankwise"


def _run_adapters(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    """Forward hook (module-level so that deepcopy/pickle of the model keep working)."""
    return getattr(module, HOST_ATTR).run(module, args[0], output)


class AdapterHost(nn.ModuleDict):
    """Named adapters of one layer, which of them are active, and which are merged into W0.

    Attributes:
        geometry: the layer's shapes.
        active: names of adapters applied in forward (in order).
        merged: names of adapters currently folded into the layer's weight.
        enabled: False inside ``rankwise.disabled(model)``.
        config: adapter name → the config that created it.
    """

    def __init__(self, geometry: LayerGeometry):
        super().__init__()
        self.geometry = geometry
        self.active: list[str] = []
        self.merged: list[str] = []
        self.enabled = True
        self.config: dict[str, object] = {}  # adapter name -> the config that built it

    @staticmethod
    def of(module: nn.Module) -> AdapterHost | None:
        host = getattr(module, HOST_ATTR, None)
        return host if isinstance(host, AdapterHost) else None

    @staticmethod
    def attach(module: nn.Module, geometry: LayerGeometry) -> AdapterHost:
        host = AdapterHost.of(module)
        if host is None:
            host = AdapterHost(geometry)
            module.add_module(HOST_ATTR, host)
            module.register_forward_hook(_run_adapters)
        return host

    @staticmethod
    def detach(module: nn.Module) -> None:
        for key, hook in list(module._forward_hooks.items()):
            if hook is _run_adapters:
                del module._forward_hooks[key]
        delattr(module, HOST_ATTR)

    def run(self, base: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            # base model = W0_moved + ΔW₀ for adapters whose init moved W0 (PiSSA, …)
            for adapter in self.values():
                if adapter.delta.moves_base:
                    out = adapter.delta.add_initial_delta(base, x, out)
            return out
        base_out = out
        for name in self.active:
            if name not in self.merged:
                out = self[name](base, x, out, base_out)
        return out

    # ---- merging ----------------------------------------------------------------------------
    @torch.no_grad()
    def merge(self, base: nn.Module, name: str) -> None:
        """Fold adapter ``name`` into the weight: computed in fp32, cast once to the weight dtype."""
        adapter: Adapter = self[name]
        w = base.weight
        w.copy_(adapter.merged_weight(w).to(w.dtype))
        self.merged.append(name)

    @torch.no_grad()
    def unmerge(self, base: nn.Module, name: str) -> None:
        adapter: Adapter = self[name]
        w = base.weight
        w.copy_(adapter.unmerged_weight(w).to(w.dtype))
        self.merged.remove(name)

    @torch.no_grad()
    def shift_base(self, base: nn.Module, name: str, sign: float) -> None:
        """W0 ← W0 + sign·ΔW₀ for an adapter whose init moved the base (−1 at init, +1 to restore)."""
        delta = self[name].delta
        w = base.weight
        d0 = self.geometry.to_weight(delta.initial_delta_matrix().float())
        w.copy_((w.float() + sign * d0).to(w.dtype))

    def extra_repr(self) -> str:
        return f"active={self.active}, merged={self.merged}, enabled={self.enabled}"
