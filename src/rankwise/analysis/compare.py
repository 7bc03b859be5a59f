"""Compare a base and a tuned model layer by layer: update spectra, subspace angles, intruder dimensions.

    diff = analysis.compare(base_model, tuned_model)   # two models, state dicts, files or folders
    diff = analysis.compare(model_with_adapters)        # base = W0, tuned = W0 with the adapters folded in

For each layer with base W0 and tuned W (matrix views, m × n):

* the spectrum of the update ΔW = W − W0, and its 90 % / 99 % energy ranks — how many directions
  the fine-tune really used;
* the principal angles between the top-k left singular subspaces of W0 and W;
* the intruder dimensions of W ("LoRA vs Full Fine-tuning: An Illusion of Equivalence",
  Shuttleworth et al., arXiv 2410.21228): top-k singular vectors of W with max |cos| < ε to every
  singular vector of W0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from ..errors import ConfigError, TargetError
from .batched import batched_singular_values
from .measures import effective_rank, energy_rank
from .report import json_float, markdown_table
from .sources import adapted_layer_names, has_adapters, load_source, weights


@dataclass
class LayerComparison:
    """Base vs tuned for one layer.

    Attributes:
        delta_singular_values: σ(ΔW), descending.
        delta_rank90 / delta_rank99: energy ranks of ΔW (0 when ΔW = 0).
        delta_effective_rank: Roy & Vetterli effective rank of ΔW.
        relative_change: ‖ΔW‖_F / ‖W0‖_F.
        angles: principal angles (degrees, ascending) between the top-k left singular subspaces of W0 and W.
        intruders: indices (0-based, into W's spectrum) of W's top-k singular vectors that are intruders.
    """

    name: str
    shape: tuple[int, int]
    delta_singular_values: list[float]
    delta_rank90: int
    delta_rank99: int
    delta_effective_rank: float
    relative_change: float
    angles: list[float]
    intruders: list[int]

    @property
    def intruder_count(self) -> int:
        return len(self.intruders)


@dataclass
class CompareReport:
    """Per-layer comparisons of two models, with the settings used."""

    layers: list[LayerComparison] = field(default_factory=list)
    k: int = 10
    eps: float = 0.5

    def __getitem__(self, name: str) -> LayerComparison:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer {name!r}")

    @property
    def total_intruders(self) -> int:
        return sum(x.intruder_count for x in self.layers)

    def to_dict(self) -> dict:
        layers = []
        for x in self.layers:
            d = asdict(x)
            d["shape"] = list(x.shape)
            d["intruder_count"] = x.intruder_count
            d["relative_change"] = json_float(x.relative_change)
            layers.append(d)
        return {"type": "compare", "k": self.k, "eps": self.eps, "total_intruders": self.total_intruders,
                "layers": layers}

    def to_markdown(self) -> str:
        rows = [(x.name, f"{x.shape[0]}×{x.shape[1]}", x.relative_change, x.delta_rank90, x.delta_rank99,
                 x.delta_effective_rank, max(x.angles) if x.angles else 0.0, x.intruder_count) for x in self.layers]
        head = ["layer", "shape", "‖ΔW‖/‖W0‖", "ΔW rank 90%", "ΔW rank 99%", "ΔW eff. rank",
                f"max angle top-{self.k} (°)", f"intruders (k={self.k}, ε={self.eps})"]
        return markdown_table(head, rows) + f"\n\nTotal intruder dimensions: {self.total_intruders}\n"


def _pairs(base, tuned, targets, exclude, include_embeddings):
    if tuned is None or tuned is base:
        if not has_adapters(base):
            raise ConfigError("compare(model) with one model needs rankwise adapters on it; "
                              "otherwise pass compare(base, tuned)")
        if targets is None:
            targets = adapted_layer_names(base)
        return (weights(base, targets, exclude, include_embeddings, which="base"),
                weights(base, targets, exclude, include_embeddings, which="tuned"))
    base, tuned = load_source(base), load_source(tuned)
    return weights(base, targets, exclude, include_embeddings), weights(tuned, targets, exclude, include_embeddings)


def compare(base, tuned=None, targets=None, exclude: Sequence[str] = (), include_embeddings: bool = False,
            k: int = 10, eps: float = 0.5) -> CompareReport:
    """Per-layer update spectra, principal angles and intruder dimensions of ``tuned`` against ``base``.

    Args:
        base: an ``nn.Module``, state dict, ``.safetensors`` file or model folder; alone, a model
            carrying rankwise adapters (its base weights vs the adapters folded in).
        tuned: the same kinds (a model with adapters is read with the adapters folded in).
        targets, exclude, include_embeddings: layer selection as in :func:`spectra`; layers are
            matched by name and only layers present in both are compared.
        k: top singular vectors examined for angles and intruders.
        eps: intruder threshold on |cos|.

    Raises:
        ConfigError: a layer has different shapes in the two models, or bad k / eps.
        TargetError: the two models have no layer name in common.
    """
    if k < 1:
        raise ConfigError(f"k={k} must be ≥ 1")
    if not 0.0 < eps <= 1.0:
        raise ConfigError(f"eps={eps} must be in (0, 1]")
    b, t = _pairs(base, tuned, targets, exclude, include_embeddings)
    names = [n for n in t if n in b]
    if not names:
        raise TargetError(f"base and tuned share no layer name (base e.g. {list(b)[:3]}, tuned e.g. {list(t)[:3]})")
    for n in names:
        if b[n].matrix.shape != t[n].matrix.shape:
            raise ConfigError(f"layer {n!r} has shape {tuple(b[n].matrix.shape)} in base and "
                              f"{tuple(t[n].matrix.shape)} in tuned; compare checkpoints of the same architecture")
    deltas = {n: t[n].matrix - b[n].matrix.to(t[n].matrix.dtype) for n in names}
    dsv = batched_singular_values(deltas)
    layers = []
    for n in names:
        w0, w = b[n].matrix, t[n].matrix
        U0, _, _ = torch.linalg.svd(w0, full_matrices=False)  # (m, min(m,n))
        U, _, _ = torch.linalg.svd(w, full_matrices=False)
        kk = min(k, U.shape[1])
        Ut = U[:, :kk]
        cos = torch.linalg.svdvals(U0[:, :kk].t().to(Ut.dtype) @ Ut).clamp(0, 1)
        angles = sorted(math.degrees(math.acos(float(c))) for c in cos)
        sim = (Ut.t() @ U0.to(Ut.dtype)).abs().max(dim=1).values
        intr = [int(i) for i in torch.nonzero(sim < eps).flatten()]
        s = dsv[n]
        w0n = float(torch.linalg.norm(w0))
        layers.append(LayerComparison(n, tuple(w.shape), [float(v) for v in s], energy_rank(s, 0.9),
                                      energy_rank(s, 0.99), effective_rank(s),
                                      float(torch.linalg.norm(deltas[n])) / w0n if w0n > 0 else math.inf,
                                      angles, intr))
    return CompareReport(layers, k, eps)
