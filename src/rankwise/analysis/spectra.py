"""Per-layer spectra of a model: singular values and rank measures of every selected weight.

    report = analysis.spectra(model)          # or a state dict, a .safetensors file, a model folder
    print(report.to_markdown())
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from .batched import batched_singular_values
from .measures import effective_rank, energy_rank, nuclear_norm, stable_rank, welore_rank
from .report import json_float, markdown_table
from .sources import weights


@dataclass
class LayerSpectrum:
    """Spectrum and rank measures of one matrix (m, n).

    ``rank90``/``rank99`` are energy ranks (directions holding 90/99 % of ‖W‖_F²). With a
    randomized SVD (``niter``) only the top-k values are known: measures then describe that top-k
    part of the spectrum.
    """

    name: str
    kind: str
    shape: tuple[int, int]
    singular_values: list[float]
    effective_rank: float
    stable_rank: float
    rank90: int
    rank99: int
    welore_rank: int
    nuclear_norm: float

    @property
    def max_rank(self) -> int:
        return min(self.shape)

    @staticmethod
    def of(name: str, kind: str, shape, s: torch.Tensor, tau: float) -> LayerSpectrum:
        return LayerSpectrum(name, kind, (int(shape[0]), int(shape[1])), [float(v) for v in s],
                             effective_rank(s), stable_rank(s), energy_rank(s, 0.9), energy_rank(s, 0.99),
                             welore_rank(s, tau), nuclear_norm(s))


@dataclass
class SpectraReport:
    """Spectra of a model's selected layers, in model order.

    Attributes:
        layers: one ``LayerSpectrum`` per layer.
        welore_tau: the WeLore threshold used for ``welore_rank``.
        k, niter: top-k / randomized-SVD settings (None: exact, all singular values).
    """

    layers: list[LayerSpectrum] = field(default_factory=list)
    welore_tau: float = 0.1
    k: int | None = None
    niter: int | None = None

    def __getitem__(self, name: str) -> LayerSpectrum:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer {name!r}; layers: {[x.name for x in self.layers][:8]}…")

    def to_dict(self) -> dict:
        """JSON-able: every number a plain float/int."""
        layers = []
        for x in self.layers:
            d = asdict(x)
            d["shape"] = list(x.shape)
            d["effective_rank"] = json_float(x.effective_rank)
            layers.append(d)
        return {"type": "spectra", "welore_tau": self.welore_tau, "k": self.k, "niter": self.niter, "layers": layers}

    def to_markdown(self) -> str:
        """Table: layer, shape, effective rank (also as % of min(m, n)), stable rank, 90/99 % energy ranks, WeLore."""
        rows = [(x.name, f"{x.shape[0]}×{x.shape[1]}", x.effective_rank, f"{100 * x.effective_rank / x.max_rank:.1f}%",
                 x.stable_rank, x.rank90, x.rank99, x.welore_rank, x.singular_values[0] if x.singular_values else 0.0)
                for x in self.layers]
        head = ["layer", "shape", "eff. rank", "eff./max", "stable rank", "rank 90%", "rank 99%",
                f"WeLore τ={self.welore_tau}", "σ₁"]
        return markdown_table(head, rows)


def spectra(model, targets=None, exclude: Sequence[str] = (), include_embeddings: bool = False,
            k: int | None = None, niter: int | None = None, welore_tau: float = 0.1) -> SpectraReport:
    """Singular values and rank measures of every selected layer, SVDs batched across equal shapes.

    Args:
        model: an ``nn.Module`` (adapters are folded in as the model computes them), a state dict,
            a ``.safetensors`` file or a Hugging Face model folder.
        targets: layers to analyse, as for ``rankwise.adapt`` (names, regexes, module types,
            ``"all-linear"``); default every Linear/Conv1D weight, the output head included.
        exclude: names/regexes to leave out.
        include_embeddings: with the default targets, also analyse embedding matrices.
        k: keep only the top-k singular values per layer.
        niter: randomized SVD with this many power iterations (needs ``k``; for large matrices).
        welore_tau: threshold of ``welore_rank``.
    """
    ws = weights(model, targets, exclude, include_embeddings)
    svals = batched_singular_values({n: w.matrix for n, w in ws.items()}, k=k, niter=niter)
    layers = [LayerSpectrum.of(n, w.kind, w.matrix.shape, svals[n], welore_tau) for n, w in ws.items()]
    return SpectraReport(layers, welore_tau, k, niter)
