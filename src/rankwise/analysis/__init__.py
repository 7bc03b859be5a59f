"""Spectral analysis: which layers are low-rank, how many directions an update uses, intruder dimensions.

    from rankwise import analysis
    report = analysis.spectra(model)                 # per-layer singular values and rank measures
    diff = analysis.compare(base_model, tuned_model) # update spectra, subspace angles, intruder dimensions
    analysis.plot(report, "out/")                    # PNG figures (pip install 'rankwise[plot]')
    tracker = analysis.Tracker(model, every=50)      # σᵢ(t), rank of W(t) − W(0) during training

The survey behind it: "An Overview of Low-Rank Structures in the Training and Adaptation of Large
Models" (Balzano et al., arXiv 2503.19859); its experiments live in ``rankwise.experiments``.
"""

from .batched import batched_singular_values
from .compare import CompareReport, LayerComparison, compare
from .measures import (
    effective_rank,
    energy_rank,
    intruder_dimensions,
    nuclear_norm,
    numerical_rank,
    principal_angles,
    singular_values,
    stable_rank,
    welore_rank,
)
from .plot import plot
from .spectra import LayerSpectrum, SpectraReport, spectra
from .tracking import Tracker, TrackingReport

__all__ = [
    "spectra", "compare", "plot", "Tracker", "TrackingReport", "SpectraReport", "LayerSpectrum", "CompareReport",
    "LayerComparison", "singular_values", "effective_rank", "stable_rank", "numerical_rank", "energy_rank",
    "welore_rank", "nuclear_norm", "principal_angles", "intruder_dimensions", "batched_singular_values",
]
