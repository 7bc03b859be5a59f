"""EVA: explained-variance adaptation — A from the principal components of each layer's inputs.

"One Initialization to Rule them All: Fine-tuning via Explained Variance Adaptation", Paischer
et al., arXiv 2410.07170.

For each targeted layer, with the layer inputs x (n,) of all calibration tokens:

    C = centred covariance of x (n, n) = Q·diag(λ)·Qᵀ,  λ descending,  ratio_i = λ_i / Σλ
    A = Q[:, :k]ᵀ (k, n) (optionally whitened: row i / √σ_i, σ_i = √(λ_i·(N−1))),   B = 0

so ΔW = 0 at init and W0 is untouched. **Rank redistribution**: each layer offers its top
round(r·ρ) explained-variance ratios; the Σ r (the global budget) largest ratios over all layers
win, and layer ℓ gets k_ℓ = the number of its ratios that won. Layers with k_ℓ = 0 get no adapter.
With ``eva_adjust_scaling`` (default, as PEFT) α is scaled by k_ℓ/r so s = α/r is unchanged.
Options: ``eva_rho`` (ρ ≥ 1, default 2), ``eva_whiten`` (False), ``eva_adjust_scaling`` (True).

The PCA is computed from the streamed input covariance (Σxxᵀ, Σx, counts: one n×n matrix per
distinct layer input, however many batches), i.e. the exact PCA of all calibration tokens.
PEFT's ``initialize_lora_eva_weights`` runs an incremental PCA (randomized SVD) and stops a layer
early once its components' cosine similarity between batches passes τ = 0.99, so its components
approximate these (``benchmarks/results/calibration.md`` compares the two).
"""

from __future__ import annotations

from collections import Counter

import torch

from ..errors import ConfigError
from .factors import require_lora
from .registry import register_initialiser


def pca(stats) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(components (n, n) rows, explained-variance ratios (n,), singular values of the centred data (n,))."""
    cov = stats.covariance(centred=True).double()
    lam, q = torch.linalg.eigh(cov)                            # ascending
    lam, q = lam.flip(0).clamp_min(0), q.flip(1)
    ratio = lam / lam.sum().clamp_min(torch.finfo(lam.dtype).tiny)
    sv = (lam * max(stats.tokens - 1, 1)).sqrt()
    return q.t().float(), ratio.float(), sv.float()


def redistribute(plans: list, stats: dict, config) -> list:
    """EVA's rank redistribution (module docstring); returns the plans with k_ℓ > 0, ranks/α updated."""
    rho = config.option("eva_rho")
    if isinstance(rho, bool) or not isinstance(rho, int | float) or rho < 1:
        raise ConfigError(f"options['eva_rho'] must be a number ≥ 1, got {rho!r}")
    cache: dict[int, tuple] = {}
    entries = []
    for p in plans:
        key = id(stats[p.name])
        if key not in cache:  # layers fed the same tensor share one PCA
            cache[key] = pca(stats[p.name])
        comps, ratio, sv = cache[key]
        k_max = min(round(p.rank * rho), p.geometry.max_rank, ratio.numel())
        entries += [(float(v), i, p.name) for i, v in enumerate(ratio[:k_max].tolist())]
        stats[p.name] = (comps, ratio, sv)
    budget = sum(p.rank for p in plans)
    entries.sort(key=lambda e: -e[0])  # stable: ties keep model order
    counts = Counter(name for _, _, name in entries[:budget])
    kept = []
    for p in plans:
        k = counts.get(p.name, 0)
        if k == 0:
            continue  # rank 0: this layer is left alone
        if config.option("eva_adjust_scaling"):
            p.alpha = p.alpha * k / p.rank
        p.rank = k
        kept.append(p)
    return kept


@register_initialiser("eva", paper="EVA, arXiv 2410.07170", collects="inputs", prepare=redistribute,
                      options={"eva_rho": 2.0, "eva_whiten": False, "eva_adjust_scaling": True})
def init_eva(delta, w0: torch.Tensor, calibration=None, config=None, **_) -> bool:
    """A = top-k principal components of the layer's inputs, B = 0 (k set by :func:`redistribute`)."""
    require_lora(delta, "eva")
    comps, _, sv = calibration
    a = comps[: delta.rank]
    if config.option("eva_whiten"):
        a = a / sv[: delta.rank].sqrt().clamp_min(1e-12)[:, None]
    with torch.no_grad():
        delta.lora_A.copy_(a.to(delta.lora_A.dtype))
        delta.lora_B.zero_()
    return False
