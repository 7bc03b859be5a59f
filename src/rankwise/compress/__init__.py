"""Low-rank compression of trained models: plan, apply, save, load, densify, fine-tune.

    plan = rankwise.compress.plan(model, ratio=0.4, method="svd-llm", calibration=batches)
    print(plan)                                   # layer, shape, rank, params kept, predicted error
    small = rankwise.compress.apply(model, plan)  # chosen Linears become LowRankLinear (two Linears)
    rankwise.compress.save(small, "out/")         # model.safetensors + compression.json
    small = rankwise.compress.load("out/")        # transformers models rebuild from the saved config

**Ratio** everywhere means the fraction of the chosen layers' weight parameters removed:
``1 − kept / Σ m·n``, where a rank-k layer keeps k·(m + n) weights and a dense one m·n.
"""

from . import catalogue  # noqa: F401  (registers svd, fwsvd, asvd, svd-llm, welore)
from .allocate import ALLOCATIONS, achieved_ratio, budget, kept_params
from .apply import apply, compressed_layers, densify
from .calibration import Calibration, CalibrationError, LayerStats, collect
from .config import CompressConfig
from .decompose import DECOMPOSITIONS, Spectrum
from .finetune import add_lora, finetune, freeze_except_lowrank, lowrank_parameters
from .lowrank_linear import LowRankLinear
from .plan import LayerPlan, Plan
from .planner import plan, target_layers
from .residual import residuals
from .saving import load, save


def main(argv: list[str] | None = None) -> int:
    """``rankwise compress`` entry point (see :mod:`rankwise.compress.cli`)."""
    from .cli import main as _main

    return _main(argv)


__all__ = ["ALLOCATIONS", "DECOMPOSITIONS", "Calibration", "CalibrationError", "CompressConfig", "LayerPlan",
           "LayerStats", "LowRankLinear", "Plan", "Spectrum", "achieved_ratio", "add_lora", "apply", "budget",
           "collect", "compressed_layers", "densify", "finetune", "freeze_except_lowrank", "kept_params", "load",
           "lowrank_parameters", "main", "plan", "residuals", "save", "target_layers"]
