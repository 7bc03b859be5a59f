"""The per-layer host: the named adapters living on one layer, and the forward that runs them.

rankwise does not replace layers. It attaches an ``AdapterHost`` as the child ``rankwise`` of each
adapted layer and sets the layer's ``forward`` (an instance attribute, as accelerate's hooks do),
so the layer keeps its class (``isinstance`` checks in user and transformers code still hold),
its ``weight`` and its state-dict keys; adapter tensors appear as
``<layer>.rankwise.<adapter>.delta.lora_A`` and so on. The forward is

    y = base(x)                                       # the layer's own forward, untouched
    y = adapter_k(x, y) for each active, unmerged k   # each adds its factored contribution

except that a single eligible adapter may run base and adapter as one fused op
(``Adapter.fused_forward``), which the plain path above serves as the reference for.
"""

from __future__ import annotations

import torch
from torch import nn

from .contract import Adapter
from .geometry import LayerGeometry, acc_dtype

HOST_ATTR = "rankwise"


class AdaptedForward:
    """The ``forward`` of an adapted layer. A module-level class, so deepcopy and pickle keep working.

    Args:
        module: the adapted layer.
        previous: an instance-level ``forward`` that was already set (e.g. by accelerate), called
            for the base output; None to call the layer class's own ``forward``.
    """

    def __init__(self, module: nn.Module, previous=None):
        self.module = module
        self.previous = previous

    def __call__(self, x, *args, **kwargs):
        module = self.module
        host: AdapterHost = getattr(module, HOST_ATTR)
        if self.previous is None and not args and not kwargs:
            out = host.fused(module, x)
            if out is not None:
                return out
        base = self.previous if self.previous is not None else type(module).forward.__get__(module)
        return host.run(module, x, base(x, *args, **kwargs))


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
        """The host on ``module``, or None if it is not adapted."""
        host = module._modules.get(HOST_ATTR)  # direct dict lookup: this runs for every module in a walk
        return host if isinstance(host, AdapterHost) else None

    @staticmethod
    def attach(module: nn.Module, geometry: LayerGeometry) -> AdapterHost:
        """The host on ``module``, created (with the adapted forward) if absent."""
        host = AdapterHost.of(module)
        if host is None:
            host = AdapterHost(geometry)
            module.add_module(HOST_ATTR, host)
            module.forward = AdaptedForward(module, module.__dict__.get("forward"))
        return host

    @staticmethod
    def detach(module: nn.Module) -> None:
        """Remove the host and restore the layer's forward."""
        forward = module.__dict__.get("forward")
        if isinstance(forward, AdaptedForward):
            if forward.previous is None:
                del module.forward
            else:
                module.forward = forward.previous
        delattr(module, HOST_ATTR)

    def fused(self, base: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
        """The whole layer output from a fused kernel, or None when the plain path must run."""
        if not self.enabled:
            return None
        live = [n for n in self.active if n not in self.merged]
        if len(live) != 1:
            return None
        return self[live[0]].fused_forward(base, x)

    def run(self, base: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The plain path: add each active, unmerged adapter to the base output ``out``."""
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
        """Fold adapter ``name`` into the weight: computed in fp32 (fp64 for fp64), cast once."""
        adapter: Adapter = self[name]
        w = base.weight
        w.copy_(adapter.merged_weight(w, remember=True).to(w.dtype))
        self.merged.append(name)

    @torch.no_grad()
    def unmerge(self, base: nn.Module, name: str) -> None:
        """Take adapter ``name`` back out of the weight (same arithmetic as :meth:`merge`)."""
        adapter: Adapter = self[name]
        w = base.weight
        w.copy_(adapter.unmerged_weight(w).to(w.dtype))
        self.merged.remove(name)

    @torch.no_grad()
    def shift_base(self, base: nn.Module, name: str, sign: float) -> None:
        """W0 ← W0 + sign·ΔW₀ for an adapter whose init moved the base (−1 at init, +1 to restore)."""
        delta = self[name].delta
        w = base.weight
        acc = acc_dtype(w.dtype)
        d0 = self.geometry.to_weight(delta.initial_delta_matrix().to(acc))
        w.copy_((w.to(acc) + sign * d0).to(w.dtype))

    def extra_repr(self) -> str:
        return f"active={self.active}, merged={self.merged}, enabled={self.enabled}"
