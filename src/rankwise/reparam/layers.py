"""Shared machinery of the layer-replacing methods: the base class, layer selection and swapping.

Low-rank, SLTrain, LOST, CoLA and SST replace each selected ``nn.Linear`` (by default every linear
layer of the transformer blocks: attention and MLP projections; never embeddings, norms or the output
head) with a module that stores W in factored form. ReLoRA and SwitchLoRA instead keep the layer and
add a LoRA adapter through ``rankwise.adapt`` (see relora.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import nn

from ..core.targeting import resolve_targets
from ..errors import ConfigError, TargetError
from .config import ReparamConfig


class FactoredLinear(nn.Module):
    """Base class of a linear layer y = W·x + b whose W (out_features × in_features) is stored factored.

    Subclasses implement ``forward`` (never forming W) and :meth:`dense_weight` (forms W, for
    densifying and tests only). ``mergeable`` is False where W·x is not linear in x (CoLA).
    """

    mergeable = True

    def __init__(self, in_features: int, out_features: int, bias: torch.Tensor | None):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    def dense_weight(self) -> torch.Tensor:
        """W, (out_features, in_features). Not for the training hot path."""
        raise NotImplementedError

    def factor_pairs(self) -> list[tuple[nn.Parameter, nn.Parameter, float]]:
        """The (B, A, s) triples whose product s·B·A is a linear part of W (for refactorisation)."""
        return []

    def to_linear(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing the same function."""
        if not self.mergeable:
            raise ConfigError(f"{type(self).__name__} is not linear in its input and cannot become an nn.Linear")
        w = self.dense_weight().detach()
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device=w.device,
                        dtype=w.dtype)
        with torch.no_grad():
            lin.weight.copy_(w)
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def layer_generator(seed: int, index: int) -> torch.Generator:
    """A CPU generator that depends only on (seed, layer index): layers draw independently of global RNG."""
    return torch.Generator().manual_seed(seed * 1_000_003 + index)


def balanced_factors(weight: torch.Tensor, rank: int, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced rank-r factors of ``weight`` (m, n): s·B·A = its best rank-r approximation.

    With W ≈ U_r Σ_r V_rᵀ: B = U_r·√(Σ_r/s) (m, r), A = √(Σ_r/s)·V_rᵀ (r, n), so both factors carry
    the same spectrum (the "balanced" init of factored training). Computed in fp32/fp64.
    """
    w = weight.detach().to(torch.float64 if weight.dtype == torch.float64 else torch.float32)
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    root = (s[:rank] / scale).sqrt()
    return (u[:, :rank] * root).to(weight.dtype), (root[:, None] * vh[:rank]).to(weight.dtype)


def select_linears(model: nn.Module, config: ReparamConfig) -> list[tuple[str, nn.Linear]]:
    """The ``nn.Linear`` layers that ``config.targets`` minus ``config.exclude`` selects, in model order.

    Raises:
        TargetError: nothing selected, or a selected weight is tied to another module.
    """
    matches = [(m.name, m.module) for m in resolve_targets(model, config.targets, config.exclude)
               if isinstance(m.module, nn.Linear)]
    if not matches:
        raise TargetError(f"targets {config.targets!r} select no nn.Linear layer of {type(model).__name__}; "
                          "reparameterisation replaces linear layers (name e.g. 'q_proj' or use 'all-linear')")
    owners: dict[int, list[str]] = {}
    for pname, p in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(p), []).append(pname.rsplit(".", 1)[0])
    for name, module in matches:
        tied = [o for o in owners.get(id(module.weight), []) if o != name]
        if tied:
            raise TargetError(f"the weight of {name!r} is tied to {tied}; reparameterising it would break the tie. "
                              f"Add {name!r} to exclude")
        if not module.weight.is_floating_point():
            raise ConfigError(f"layer {name!r} has a {module.weight.dtype} weight; reparameterise float weights")
    return matches


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule at dotted ``name``."""
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, leaf, module)


def replace_linears(model: nn.Module, config: ReparamConfig,
                    build: Callable[[int, str, nn.Linear], FactoredLinear]) -> list[str]:
    """Swap each selected ``nn.Linear`` for ``build(index, name, layer)``. In place.

    Every replacement is built before the first swap, so a failure leaves the model unchanged.
    Returns the replaced layer names.
    """
    matches = select_linears(model, config)
    built = [(name, build(i, name, layer)) for i, (name, layer) in enumerate(matches)]
    for name, new in built:
        set_submodule(model, name, new)
    return [name for name, _ in built]


def factored_layers(model: nn.Module) -> Iterator[tuple[str, FactoredLinear]]:
    """(name, layer) for every factored layer in ``model``."""
    for name, module in model.named_modules():
        if isinstance(module, FactoredLinear):
            yield name, module


def layer_rank(config: ReparamConfig, layer: nn.Linear) -> int:
    """config.rank capped at min(m, n) of the layer."""
    return min(config.rank, layer.in_features, layer.out_features)


def kaiming_bound(fan_in: int) -> float:
    """Kaiming-uniform(a=√5) bound, 1/√fan_in (nn.Linear's and LoRA A's default)."""
    return 1.0 / math.sqrt(fan_in)
