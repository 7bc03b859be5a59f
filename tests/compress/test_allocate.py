"""Budget arithmetic of the rank allocations."""

import math

import pytest
import torch

from rankwise.compress import allocate as al
from rankwise.errors import ConfigError

SHAPES = [(64, 64), (32, 96), (96, 32), (48, 48)]
G = torch.Generator().manual_seed(0)
SIGMAS = [torch.sort(torch.rand(min(s), generator=G, dtype=torch.float64) ** p, descending=True).values
          for s, p in zip(SHAPES, [1, 4, 8, 0.2], strict=True)]


def test_kept_params_and_budget():
    assert al.kept_params((64, 32), 5) == 5 * 96
    assert al.kept_params((64, 32), None) == 64 * 32
    assert al.budget(SHAPES, 0.4) == math.floor(0.6 * sum(m * n for m, n in SHAPES))
    assert al.achieved_ratio([(10, 10)], [2]) == pytest.approx(1 - 40 / 100)
    for bad in (0, 1, -0.1, 1.5):
        with pytest.raises(ConfigError, match="fraction of the chosen layers"):
            al.budget(SHAPES, bad)


@pytest.mark.parametrize("ratio", [0.2, 0.4, 0.6])
def test_uniform_is_the_rank_formula_and_fits(ratio):
    ranks = al.uniform(SHAPES, ratio)
    assert ranks == [math.floor((1 - ratio) * m * n / (m + n)) for m, n in SHAPES]
    assert al.achieved_ratio(SHAPES, ranks) >= ratio
    # one more direction anywhere would exceed that layer's share
    for (m, n), k in zip(SHAPES, ranks, strict=True):
        assert (k + 1) * (m + n) > (1 - ratio) * m * n


@pytest.mark.parametrize("ratio", [0.2, 0.4, 0.6])
@pytest.mark.parametrize("rule", ["energy", "welore"])
def test_spectral_allocations_fit_the_budget_tightly(rule, ratio):
    ranks = getattr(al, rule)(SIGMAS, SHAPES, ratio)
    kept = sum(al.kept_params(s, k) for s, k in zip(SHAPES, ranks, strict=True))
    assert kept <= al.budget(SHAPES, ratio)
    assert al.achieved_ratio(SHAPES, ranks) < ratio + 0.1  # not wastefully below budget
    assert all(k is None or 1 <= k <= min(s) for s, k in zip(SHAPES, ranks, strict=True))


def test_welore_keeps_flat_spectra_dense_and_cuts_fast_decaying_ones():
    shapes = [(40, 40), (40, 40)]
    flat = torch.linspace(1.0, 0.9, 40, dtype=torch.float64)
    fast = 0.5 ** torch.arange(40, dtype=torch.float64)
    ranks = al.welore_ranks([flat, fast], shapes, tau=0.05)
    assert ranks[0] is None  # every normalised value ≥ 0.05: not worth factorising
    assert ranks[1] == int(((fast - fast.min()) / (fast.max() - fast.min()) >= 0.05).sum())
    budgeted = al.welore([flat, fast], shapes, 0.3)
    assert budgeted[0] is None and al.achieved_ratio(shapes, budgeted) >= 0.3


def test_sensitivity_spends_the_budget_where_loss_is_insensitive():
    shapes = [(40, 40), (40, 40)]
    cands = [[(16, 0.01), (8, 0.02), (4, 0.03)], [(16, 1.0), (8, 2.0), (4, 3.0)]]
    ranks = al.sensitivity(cands, shapes, 0.5)
    assert al.achieved_ratio(shapes, ranks) >= 0.5
    assert ranks[0] == 4  # the insensitive layer is cut first
    with pytest.raises(ConfigError, match="out of reach"):
        al.sensitivity(cands, shapes, 0.95)


def test_out_of_reach_ratios_raise():
    with pytest.raises(ConfigError, match="less than rank 1"):
        al.uniform([(4, 4)], 0.9)
    with pytest.raises(ConfigError, match="out of reach"):
        al.energy([torch.ones(4)], [(4, 4)], 0.9)
