"""Parameters and Adam state of each method match its per-layer formula."""

import math

import pytest
import torch

from .common import build, optimizer, train

# tiny_llama: hidden 32, intermediate 48, 2 blocks; per block q, k, v, o (32×32 for q, o; k, v 16×32 with 2 kv
# heads) and gate, up (48×32), down (32×48)
SHAPES = [(32, 32), (16, 32), (16, 32), (32, 32), (48, 32), (48, 32), (32, 48)] * 2


def _formula(method, r, m, n, density=0.03, channel_fraction=0.05):
    """(trainable values, frozen values) of one m×n layer."""
    r = min(r, m, n)
    if method in ("low-rank", "cola"):
        return r * (m + n), 0
    if method in ("relora", "switchlora"):
        return r * (m + n), m * n
    if method == "sltrain":
        return r * (m + n) + max(1, round(density * m * n)), 0
    if method == "lost":
        return r * (m + n) + m * max(1, math.ceil(channel_fraction * n)), 0
    k = min(m, n)                                       # sst
    return k * (m + n + 1), 0


@pytest.mark.parametrize("method", ["low-rank", "relora", "switchlora", "sltrain", "lost", "cola", "sst"])
def test_parameters_and_optimizer_state_match_formula(method):
    model, schedule = build(method, rank=4, density=0.05, channel_fraction=0.1)
    dense = sum(p.numel() for n, p in model.named_parameters() if ".layers." not in n or "norm" in n)
    trainable = sum(_formula(method, 4, m, n, 0.05, 0.1)[0] for m, n in SHAPES)
    frozen = sum(_formula(method, 4, m, n, 0.05, 0.1)[1] for m, n in SHAPES)
    got_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    got_frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert got_trainable == dense + trainable
    assert got_frozen == frozen
    opt = optimizer(model)
    train(model, schedule, opt, 0, 1)
    state = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values() if t.dim() > 0)
    assert state == 2 * 4 * (dense + trainable)         # AdamW: exp_avg + exp_avg_sq, fp32
    if method == "sltrain":                              # int32 support indices, not trained
        idx = sum(b.numel() * b.element_size() for n, b in model.named_buffers() if n.endswith(("rows", "cols")))
        assert idx == sum(2 * 4 * max(1, round(0.05 * m * n)) for m, n in SHAPES)
    assert torch.isfinite(next(iter(opt.state.values()))["exp_avg"]).all()
