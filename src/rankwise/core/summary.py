"""A printable summary of an adapted model: trainable and total parameters per layer type."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from .api import active_adapters, hosts


@dataclass
class Row:
    """Counts for one adapted layer type."""

    layer_type: str
    layers: int = 0
    base_params: int = 0
    adapter_params: int = 0
    trainable: int = 0


@dataclass
class Summary:
    """Counts per adapted layer type and for the whole model. ``str(summary)`` is a table."""

    rows: dict[str, Row] = field(default_factory=dict)
    total: int = 0
    trainable: int = 0
    adapters: list[str] = field(default_factory=list)
    active: list[str] = field(default_factory=list)

    @property
    def trainable_fraction(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        head = f"{'layer type':<14}{'layers':>8}{'base params':>14}{'adapter params':>16}{'trainable':>12}"
        lines = [f"rankwise adapters {self.adapters} (active {self.active})", head, "-" * len(head)]
        for r in self.rows.values():
            lines.append(f"{r.layer_type:<14}{r.layers:>8}{r.base_params:>14,}{r.adapter_params:>16,}{r.trainable:>12,}")
        lines.append("-" * len(head))
        lines.append(f"trainable {self.trainable:,} / total {self.total:,} ({100 * self.trainable_fraction:.3f}%)")
        return "\n".join(lines)


def summary(model: nn.Module) -> Summary:
    """Summarise ``model``: per adapted layer type, base and adapter parameters; trainable overall."""
    s = Summary(active=active_adapters(model))
    seen: dict[str, None] = {}
    for _, module, host in hosts(model):
        seen.update(dict.fromkeys(host.keys()))
        t = type(module).__name__
        row = s.rows.setdefault(t, Row(t))
        row.layers += 1
        row.base_params += sum(p.numel() for n, p in module.named_parameters() if not n.startswith("rankwise."))
        row.adapter_params += sum(p.numel() for p in host.parameters())
        row.trainable += sum(p.numel() for p in host.parameters() if p.requires_grad)
    s.adapters = list(seen)
    params = list(model.parameters())
    s.total = sum(p.numel() for p in params)
    s.trainable = sum(p.numel() for p in params if p.requires_grad)
    return s
