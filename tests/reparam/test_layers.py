"""Each factored layer against its dense reconstruction and its closed form; fast paths against reference paths."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rankwise.reparam import CoLALinear, LostLinear, LowRankLinear, SparseLowRankLinear, SpectralLinear
from rankwise.reparam.refactor import rebalance


def _linear(n=24, m=20, bias=True, dtype=torch.float64):
    torch.manual_seed(0)
    return nn.Linear(n, m, bias=bias).to(dtype)


def _perturb(layer):
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _make(kind, lin):
    if kind == "low-rank":
        return LowRankLinear.from_linear(lin, 5, scale=0.5)
    if kind == "sltrain":
        return SparseLowRankLinear.from_linear(lin, 5, 0.1, 0.5, torch.Generator().manual_seed(1))
    if kind == "lost":
        return LostLinear.from_linear(lin, 5, 0.2, 0.6, 0.5)
    return SpectralLinear.from_linear(lin)


@pytest.mark.parametrize("kind", ["low-rank", "sltrain", "lost", "sst"])
def test_forward_equals_dense_reconstruction(kind):
    layer = _make(kind, _linear())
    _perturb(layer)                                       # away from init, so every part matters
    x = torch.randn(3, 7, 24, dtype=torch.float64)
    torch.testing.assert_close(layer(x), F.linear(x, layer.dense_weight(), layer.bias), rtol=1e-10, atol=1e-10)
    dense = layer.to_linear()
    torch.testing.assert_close(dense(x), layer(x), rtol=1e-10, atol=1e-10)


def test_inits_closed_forms():
    lin = _linear()
    w = lin.weight.detach()
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    top5 = (u[:, :5] * s[:5]) @ vh[:5]
    low = LowRankLinear.from_linear(lin, 5, scale=0.5)
    torch.testing.assert_close(low.dense_weight(), top5)                        # best rank-5 approximation
    torch.testing.assert_close(low.B.t() @ low.B, low.A @ low.A.t())            # balanced: BᵀB = AAᵀ
    torch.testing.assert_close(SpectralLinear.from_linear(lin).dense_weight(), w)   # SST: exact
    sl = SparseLowRankLinear.from_linear(lin, 5, 0.1, 0.5, torch.Generator().manual_seed(1))
    r, c = sl.rows.long(), sl.cols.long()
    torch.testing.assert_close(sl.dense_weight()[r, c], w[r, c])                # W = W0 on the support
    assert sl.values.numel() == round(0.1 * 20 * 24) and len(set(zip(r.tolist(), c.tolist(), strict=True))) == 48
    lost = LostLinear.from_linear(lin, 5, 0.2, 0.6, 0.5)
    resid = w - top5
    k = lost.channels
    assert set(k.tolist()) == set(resid.norm(dim=0).topk(5).indices.tolist())  # ⌈0.2·24⌉ = 5 largest residual cols
    expect = top5.clone()
    expect[:, k] += resid[:, k]
    torch.testing.assert_close(lost.dense_weight(), expect)


def test_sltrain_sparse_path_matches_dense_reference_outputs_and_grads():
    layer = SparseLowRankLinear.from_linear(_linear(40, 30), 4, 0.07, 1.0, torch.Generator().manual_seed(2))
    _perturb(layer)
    x = torch.randn(5, 11, 40, dtype=torch.float64, requires_grad=True)
    outs, grads = [], []
    for reference in (False, True):
        layer.reference = reference
        y = layer(x)
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)).sum().backward()
        outs.append(y.detach())
        grads.append([t.grad.clone() for t in (x, layer.A, layer.B, layer.values, layer.bias)])
        for t in (x, layer.A, layer.B, layer.values, layer.bias):
            t.grad = None
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-12, atol=1e-12)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_sparse_layout_follows_a_loaded_support():
    """The cached CSR layout is rebuilt when load_state_dict brings another support (resume, copies)."""
    lin = _linear(16, 12)
    one = SparseLowRankLinear.from_linear(lin, 2, 0.3, 1.0, torch.Generator().manual_seed(3))
    two = SparseLowRankLinear.from_linear(lin, 2, 0.3, 1.0, torch.Generator().manual_seed(4))
    x = torch.randn(6, 16, dtype=torch.float64)
    one(x)                                                   # builds one's layout
    assert not torch.equal(one.rows, two.rows) or not torch.equal(one.cols, two.cols)
    one.load_state_dict(two.state_dict())
    torch.testing.assert_close(one(x), two(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(one(x), F.linear(x, two.dense_weight(), two.bias), rtol=1e-12, atol=1e-12)


def test_cola_closed_form_and_recompute_grads():
    lin = _linear()
    base = LowRankLinear.from_linear(lin, 6, 0.5)
    layers = []
    for recompute in (False, True):
        c = CoLALinear(24, 20, 6, 0.5, lin.bias, torch.float64, activation="silu", recompute=recompute)
        c.load_state_dict(base.state_dict())
        layers.append(c)
    x = torch.randn(4, 24, dtype=torch.float64, requires_grad=True)
    a, b = base.A, base.B
    torch.testing.assert_close(layers[0](x), 0.5 * F.silu(x @ a.t()) @ b.t() + lin.bias)
    grads = []
    for c in layers:
        y = c(x)
        grads.append(torch.autograd.grad((y ** 2).sum(), (x, c.A, c.B, c.bias)))
    for g0, g1 in zip(*grads, strict=True):
        torch.testing.assert_close(g0, g1, rtol=1e-12, atol=1e-12)
    with pytest.raises(Exception, match="not linear|no dense"):
        layers[0].to_linear()


def test_rebalance_keeps_product_and_balances():
    g = torch.Generator().manual_seed(4)
    b = torch.randn(20, 5, generator=g, dtype=torch.float64) * 3
    a = torch.randn(5, 24, generator=g, dtype=torch.float64) * 0.1
    prod = b @ a
    rebalance(b, a)
    torch.testing.assert_close(b @ a, prod, rtol=1e-10, atol=1e-12)
    gram_b, gram_a = b.t() @ b, a @ a.t()
    torch.testing.assert_close(gram_b, gram_a, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gram_b, torch.diag(torch.diag(gram_b)), rtol=0, atol=1e-10)
