"""SVFT's gate, init and top-k pattern; MoRA's RoPE operator (type 6) — against dense and brute-force references."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import rankwise
from rankwise.adapters import mora as mora_mod
from rankwise.adapters import svft as svft_mod
from rankwise.core.api import adapter_names
from rankwise.io.files import read_tensors
from tests.adapters import structured_refs
from tests.helpers import perturb


def make_model():
    torch.manual_seed(0)
    # m > n, m < n and m = n: the three branches of SVFT's top-k alignment; padding/tiling/truncation for MoRA
    return nn.Sequential(nn.Linear(24, 40), nn.Tanh(), nn.Linear(40, 16), nn.Tanh(), nn.Linear(16, 16))


LAYERS = (0, 2, 4)


def adapt(name, options, model=None, rank=4, **kw):
    model = make_model() if model is None else model
    return rankwise.adapt(model, rankwise.method_config(name, rank=rank, targets=nn.Linear, options=options, **kw))


def dense_reference(model, ref, x):
    """The same network with each adapted layer replaced by a plain linear map with W0 + ΔW_ref."""
    h = x
    for layer in model:
        if isinstance(layer, nn.Linear):
            d = layer.rankwise["default"].delta
            h = torch.nn.functional.linear(h, layer.weight + ref(d, layer.weight), layer.bias)
        else:
            h = layer(h)
    return h


def check_forward_and_grads(model, ref):
    x = torch.randn(3, 5, 24, generator=torch.Generator().manual_seed(4))
    y = model(x)
    h = dense_reference(model, ref, x)
    torch.testing.assert_close(y, h, atol=1e-5, rtol=1e-4)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    g = torch.randn_like(y)
    grads = torch.autograd.grad((y * g).sum(), list(params.values()))
    ref_grads = torch.autograd.grad((h * g).sum(), list(params.values()))
    for n, a, b in zip(params, grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=lambda msg, n=n: f"grad {n}: {msg}")
    return params, grads


# ----------------------------------------------------------------------------------------------------- SVFT


def svft_dense(d, w0):
    """ΔW = U·M_eff·Vᵀ with M_eff = σ(g)·M written out entry by entry (independent of SVFT.core)."""
    return structured_refs.svft(d, w0)


@pytest.mark.parametrize("gate", [True, False])
@pytest.mark.parametrize("pattern", svft_mod.PATTERNS)
def test_svft_forward_and_grads_match_dense_formula(pattern, gate):
    model = adapt("svft", {"svft_pattern": pattern, "svft_d": 1, "svft_gate": gate})
    perturb(model, std=0.2)
    params, grads = check_forward_and_grads(model, svft_dense)
    for i in LAYERS:
        d = model[i].rankwise["default"].delta
        torch.testing.assert_close(d.delta_matrix(), svft_dense(d, model[i].weight), atol=1e-6, rtol=1e-5)
    gate_grads = [g for n, g in zip(params, grads, strict=True) if n.endswith("svft_gate")]
    assert len(gate_grads) == (len(LAYERS) if gate else 0)
    assert all(g.abs().item() > 1e-6 for g in gate_grads)  # the gate is trained


@pytest.mark.parametrize("pattern", svft_mod.PATTERNS)
def test_svft_sparse_product_equals_the_gather_reference_and_follows_a_new_pattern(pattern):
    model = adapt("svft", {"svft_pattern": pattern, "svft_d": 2})
    d = model[LAYERS[0]].rankwise["default"].delta.double()
    h = torch.randn(3, 5, d.svft_U.shape[1], dtype=torch.float64, requires_grad=True)
    grads = []
    for reference in (False, True):
        y = d.apply_core(h, reference=reference)
        (g,) = torch.autograd.grad((y * torch.cos(y)).sum(), [d.svft_values])
        grads.append((y.detach(), g))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-12, rtol=0)
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-12, rtol=0)
    with torch.no_grad():  # a loaded file may bring another pattern: the CSR layout must follow it
        d.svft_index.copy_(d.svft_index.flip(1).roll(1, dims=0))
    torch.testing.assert_close(d.apply_core(h), d.apply_core(h, reference=True), atol=1e-12, rtol=0)


def brute_force_top_k(u, vh, count):
    """The reference's choice, looped: alignment U·V (square W0), U (m < n) or Vᵀ (m > n), largest signed entries."""
    m, k = u.shape
    n = vh.shape[1]
    a = [[0.0] * k for _ in range(k)]
    for i in range(k):
        for j in range(k):
            if m == n:
                a[i][j] = sum(u[i, t].item() * vh[j, t].item() for t in range(k))
            elif m < n:
                a[i][j] = u[i, j].item()
            else:
                a[i][j] = vh[i, j].item()
    ranked = sorted(((a[i][j], i, j) for i in range(k) for j in range(k)), reverse=True)
    return {(i, j) for _, i, j in ranked[:count]}


@pytest.mark.parametrize("m,n", [(9, 9), (7, 11), (11, 7)])
def test_svft_top_k_pattern_matches_brute_force(m, n):
    torch.manual_seed(1)
    layer = nn.Linear(n, m)
    rankwise.adapt(nn.Sequential(layer), rankwise.method_config(
        "svft", rank=2, targets=nn.Linear, options={"svft_pattern": "top_k", "svft_d": 1}))
    d = layer.rankwise["default"].delta
    k = min(m, n)
    assert d.svft_values.numel() == k * 3 - 2 == svft_mod.banded_count(k, 1)
    picked = set(map(tuple, d.svft_index.t().tolist()))
    assert len(picked) == d.svft_values.numel()
    assert picked == brute_force_top_k(d.svft_U, d.svft_Vh, d.svft_values.numel())
    # the bases are W0's SVD, so the pattern is a function of W0
    torch.testing.assert_close(d.svft_U @ torch.diag(torch.linalg.svdvals(layer.weight)) @ d.svft_Vh,
                               layer.weight.detach(), atol=1e-5, rtol=1e-5)


def test_svft_default_init_is_the_references_and_counts_the_gate():
    torch.manual_seed(3)
    layer = nn.Linear(20, 30)
    rankwise.adapt(nn.Sequential(layer), rankwise.method_config("svft", targets=nn.Linear))
    d = layer.rankwise["default"].delta
    nnz = svft_mod.banded_count(20, 2)
    # the reference: kaiming_normal_ on a (1, nnz) tensor, gate 0; same RNG stream as the adapt above
    torch.manual_seed(3)
    nn.Linear(20, 30)
    expected = torch.empty(1, nnz)
    nn.init.kaiming_normal_(expected)
    torch.testing.assert_close(d.svft_values.detach(), expected[0])
    assert d.svft_gate.item() == 0.0
    assert sum(p.numel() for p in rankwise.trainable_parameters(nn.Sequential(layer))) == nnz + 1
    # started off the base model by ½·U·M₀·Vᵀ, like the reference
    x = torch.randn(4, 20)
    start = layer(x) - nn.functional.linear(x, layer.weight, layer.bias)
    torch.testing.assert_close(start, x @ svft_dense(d, layer.weight).t(), atol=1e-6, rtol=1e-5)
    assert start.abs().max() > 1e-3


def test_svft_init_zero_starts_at_the_base_and_gate_learns_after_m_moves():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 30))
    x = torch.randn(8, 20)
    y0 = model(x)
    adapt("svft", {"svft_init_zero": True}, model)
    torch.testing.assert_close(model(x), y0, atol=1e-6, rtol=1e-6)
    d = model[0].rankwise["default"].delta
    opt = torch.optim.SGD(rankwise.trainable_parameters(model), lr=0.1)
    target = torch.randn(8, 30)
    for step in range(2):
        opt.zero_grad()
        (model(x) - target).square().mean().backward()
        if step == 0:
            assert d.svft_gate.grad.item() == 0.0  # M = 0: σ(g)·M does not depend on g yet
        else:
            assert d.svft_gate.grad.abs().item() > 0
        opt.step()


def test_svft_without_gate_has_no_gate_parameter():
    model = adapt("svft", {"svft_gate": False, "svft_pattern": "plain"})
    names = [n for n, _ in model.named_parameters() if "rankwise" in n]
    assert names and not any("svft_gate" in n for n in names)
    assert sum(p.numel() for p in rankwise.trainable_parameters(model)) == 24 + 16 + 16


@pytest.mark.parametrize("pattern", ["top_k", "banded"])
def test_svft_merge_and_round_trip_restore_gate_and_pattern(pattern, tmp_path):
    model = adapt("svft", {"svft_pattern": pattern, "svft_d": 1})
    perturb(model, std=0.2)
    x = torch.randn(4, 24)
    y = model(x)
    rankwise.save_adapter(model, tmp_path)
    stored = read_tensors(tmp_path / "adapter.safetensors")
    assert sum(k.endswith("svft_gate") for k in stored) == len(LAYERS)
    assert any(k.endswith("svft_index") for k in stored) == (pattern == "top_k")  # others: rebuilt from options
    fresh = rankwise.load_adapter(make_model(), tmp_path)
    torch.testing.assert_close(fresh(x), y, atol=1e-6, rtol=1e-6)
    for i in LAYERS:
        a, b = model[i].rankwise["default"].delta, fresh[i].rankwise["default"].delta
        assert torch.equal(a.svft_index, b.svft_index)
        assert torch.equal(a.svft_gate, b.svft_gate) and a.svft_gate.item() != 0.0
    rankwise.merge(model)
    torch.testing.assert_close(model(x), y, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(rankwise.merge_and_unload(fresh)(x), y, atol=1e-5, rtol=1e-4)


def test_svft_top_k_on_gpt2_conv1d():
    from tests.helpers import ids, tiny_gpt2

    model = tiny_gpt2(layers=1)
    x = ids()
    y0 = model(x).logits
    rankwise.adapt(model, rankwise.method_config("svft", targets=["c_attn", "c_fc"], options={
        "svft_pattern": "top_k", "svft_init_zero": True}))
    torch.testing.assert_close(model(x).logits, y0, atol=1e-5, rtol=1e-5)
    perturb(model, std=0.05)
    y = model(x).logits
    rankwise.merge(model)
    torch.testing.assert_close(model(x).logits, y, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("options,match", [
    ({"svft_pattern": "topk"}, "svft_pattern"), ({"svft_d": -1}, "svft_d"), ({"svft_d": 1.5}, "svft_d"),
    ({"svft_gate": "yes"}, "svft_gate"), ({"svft_init_zero": 1}, "svft_init_zero")])
def test_svft_bad_options_are_named(options, match):
    model = make_model()
    with pytest.raises(rankwise.ConfigError, match=match):
        adapt("svft", options, model)
    assert adapter_names(model) == []  # refused before touching the model


# ----------------------------------------------------------------------------------------------------- MoRA


@pytest.mark.parametrize("m,n,rank,rhat", [
    (40, 24, 4, 16),    # b = 2 chunks, 8 padded features, 32 outputs tiled to 40
    (14, 25, 2, 8),     # round(√78) = 9 → 8 (even), b = 4, 7 padded, 32 outputs truncated to 14
    (16, 16, 2, 8),     # no padding, b·r̂ = m
])
def test_mora_rope_operator_matches_brute_force(m, n, rank, rhat):
    torch.manual_seed(0)
    layer = nn.Linear(n, m)
    rankwise.adapt(nn.Sequential(layer), rankwise.method_config("mora", rank=rank, targets=nn.Linear,
                                                                options={"mora_type": 6}))
    d = layer.rankwise["default"].delta
    assert d.rhat == rhat and d.mora_M.numel() == rhat * rhat
    with torch.no_grad():
        d.mora_M.normal_()
    ref = structured_refs.mora_rope(m, n, d.mora_M.detach())
    torch.testing.assert_close(d.delta_matrix().detach(), ref, atol=1e-5, rtol=1e-5)
    # the operator matrices: ΔW = D·(I_b ⊗ M)·C
    dec, comp = d.operators()
    nb = -(-n // rhat)
    assert dec.shape == (m, nb * rhat) and comp.shape == (nb * rhat, n)
    kron = torch.block_diag(*[d.mora_M.detach()] * nb)
    torch.testing.assert_close(dec @ kron @ comp, ref, atol=1e-5, rtol=1e-5)
    # every chunk's rotation is orthogonal: C's rows from one chunk keep the chunk's norm
    x = torch.randn(3, n)
    chunks = mora_mod.compress_rope(x, rhat, d.mora_cos, d.mora_sin)
    torch.testing.assert_close(chunks.norm(dim=-1), mora_mod.pad(x, rhat).view(3, nb, rhat).norm(dim=-1))


def test_mora_type_changes_rhat_rounding_and_count():
    t1 = adapt("mora", {"mora_type": 1}, nn.Sequential(nn.Linear(25, 14)), rank=2)
    t6 = adapt("mora", {"mora_type": 6}, nn.Sequential(nn.Linear(25, 14)), rank=2)
    assert t1[0].rankwise["default"].delta.rhat == 9 and t6[0].rankwise["default"].delta.rhat == 8
    assert sum(p.numel() for p in rankwise.trainable_parameters(t6)) == 64
    assert mora_mod.mora_rank(14, 25, 2, 6) == 8 and mora_mod.mora_rank(14, 25, 2) == 9


def test_mora_rope_forward_and_grads_match_dense_reference():
    model = adapt("mora", {"mora_type": 6})
    perturb(model, std=0.2)
    check_forward_and_grads(model, structured_refs.mora)


def test_mora_rope_forward_never_forms_the_dense_update(monkeypatch):
    model = adapt("mora", {"mora_type": 6})
    for attr in ("delta_matrix", "operators", "blocks"):
        monkeypatch.setattr(mora_mod.MoRA, attr, lambda *a, **k: pytest.fail("formed the m×n update in forward"))
    model(torch.randn(2, 24)).sum().backward()


@pytest.mark.parametrize("dora", [False, True])
def test_mora_rope_merge_and_round_trip(dora, tmp_path):
    model = adapt("mora", {"mora_type": 6}, dora=dora)
    x = torch.randn(4, 24)
    y0 = make_model()(x)
    torch.testing.assert_close(model(x), y0, atol=1e-6, rtol=1e-6)  # M = 0
    perturb(model, std=0.2)
    y = model(x)
    rankwise.save_adapter(model, tmp_path)
    stored = read_tensors(tmp_path / "adapter.safetensors")
    assert not any(k.endswith(("mora_cos", "mora_sin")) for k in stored)  # rebuilt from r̂ and n
    fresh = rankwise.load_adapter(make_model(), tmp_path)
    assert rankwise.adapter_config(fresh).option("mora_type") == 6
    assert fresh[0].rankwise["default"].delta.mora_type == 6
    torch.testing.assert_close(fresh(x), y, atol=1e-6, rtol=1e-6)
    w_before = model[0].weight.detach().clone()
    rankwise.merge(model)
    torch.testing.assert_close(model(x), y, atol=1e-5, rtol=1e-4)
    rankwise.unmerge(model)
    torch.testing.assert_close(model[0].weight, w_before, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rankwise.merge_and_unload(fresh)(x), y, atol=1e-5, rtol=1e-4)


def test_mora_rope_on_gpt2_conv1d():
    from tests.helpers import ids, tiny_gpt2

    model = tiny_gpt2(layers=1)
    x = ids()
    y0 = model(x).logits
    rankwise.adapt(model, rankwise.method_config("mora", rank=4, targets=["c_attn", "c_fc"],
                                                 options={"mora_type": 6}))
    torch.testing.assert_close(model(x).logits, y0, atol=1e-5, rtol=1e-5)
    perturb(model, std=0.05)
    y = model(x).logits
    rankwise.merge(model)
    torch.testing.assert_close(model(x).logits, y, atol=1e-4, rtol=1e-4)


def test_mora_bad_type_and_tiny_layer_are_named():
    with pytest.raises(rankwise.ConfigError, match="mora_type"):
        adapt("mora", {"mora_type": 3})
    with pytest.raises(rankwise.ConfigError, match="mora_type=6"):
        adapt("mora", {"mora_type": 6}, nn.Sequential(nn.Linear(8, 1)), rank=1)


def test_rope_tables_are_the_rotary_angles():
    cos, sin = mora_mod.rope_tables(3, 8)
    for i in range(3):
        for j in range(8):
            angle = i * 10000.0 ** (-2.0 * (j % 4) / 8)
            assert math.isclose(cos[i, j].item(), math.cos(angle), abs_tol=1e-6)
            assert math.isclose(sin[i, j].item(), math.sin(angle), abs_tol=1e-6)
