"""What the builders of one adapter share across its layers.

Most parameterisations build each layer on its own from ``(geometry, rank, scale, dtype,
device)``. Some need more: VeRA and RandLoRA share one pair of frozen random bases across every
adapted layer (sized by the largest layer), NOLA shares its random bases between layers of the
same shape, and every seeded method must regenerate exactly the same tensors when the adapter is
loaded. A ``BuildContext`` carries that per-adapter state:

* the config (``ctx.option(key)`` reads a declared ``LoRAConfig.options`` value),
* the geometries of *all* layers the adapter is built on (so shared tensors can be sized first),
* the name of the layer being built (``ctx.layer``),
* a store of shared tensors (``ctx.shared(key, make)``), created once per adapter,
* seeded CPU generators (``ctx.generator(seed)``), so random tensors are a pure function of
  the seed and are regenerated on load instead of being stored.

A builder opts in by accepting a ``ctx`` keyword; LoRA/DoRA builders do not need one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .geometry import LayerGeometry


@dataclass
class BuildContext:
    """Per-adapter build state (see the module docstring).

    Attributes:
        config: the adapter's ``LoRAConfig``.
        adapter_name: the adapter's name.
        geometries: ``{layer name: LayerGeometry}`` for every layer being built, in model order.
        layer: the name of the layer currently being built (set by the caller before each build).
        store: the shared tensors created so far, by key.
    """

    config: Any
    adapter_name: str
    geometries: dict[str, LayerGeometry]
    layer: str = ""
    store: dict[str, Any] = field(default_factory=dict)

    def option(self, key: str) -> Any:
        """The value of the declared method option ``key`` (the user's, else its default)."""
        return self.config.option(key)

    def shared(self, key: str, make: Callable[[], Any]) -> Any:
        """The tensor (or tuple of tensors) stored under ``key``, created by ``make()`` on first use."""
        if key not in self.store:
            self.store[key] = make()
        return self.store[key]

    def generator(self, seed: int) -> torch.Generator:
        """A CPU generator seeded with ``seed``: random tensors drawn from it are the same on every machine
        that runs the same PyTorch, so they can be regenerated on load rather than saved."""
        return torch.Generator(device="cpu").manual_seed(int(seed))

    @property
    def max_out(self) -> int:
        """The largest m (out features) over the adapter's layers."""
        return max(g.out_features for g in self.geometries.values())

    @property
    def max_in(self) -> int:
        """The largest n (in features) over the adapter's layers."""
        return max(g.in_features for g in self.geometries.values())
