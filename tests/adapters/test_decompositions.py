"""Method-specific checks: SVFit, SVFT, LoLDU, QR-LoRA, MoRA, ABBA, NOLA, Deep LoRA."""

import math

import pytest
import torch
from torch import nn

import rankwise
from rankwise.adapters import deep_lora
from rankwise.adapters.mora import compress, decompress
from tests.helpers import perturb


def one_layer(name, m=30, n=20, rank=4, **kw):
    torch.manual_seed(0)
    layer = nn.Linear(n, m)
    rankwise.adapt(nn.Sequential(layer), rankwise.method_config(name, rank=rank, targets=nn.Linear, **kw))
    return layer, layer.rankwise["default"].delta


def test_svfit_trains_the_top_singular_values():
    layer, d = one_layer("svfit")
    u, s, vh = torch.linalg.svd(layer.weight.detach(), full_matrices=False)
    torch.testing.assert_close(d.svfit_sigma0, s[:4])
    torch.testing.assert_close(d.svfit_U @ torch.diag(d.svfit_sigma0) @ d.svfit_Vh,
                               u[:, :4] @ torch.diag(s[:4]) @ vh[:4], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pattern,nnz", [("plain", 20), ("banded", 20 + 2 * 19 + 2 * 18), ("random", 20 + 2 * 20),
                                         ("top_k", 20 + 2 * 19 + 2 * 18)])
def test_svft_patterns(pattern, nnz):
    layer, d = one_layer("svft", options={"svft_pattern": pattern})
    assert d.svft_values.numel() == nnz
    assert len(set(map(tuple, d.svft_index.t().tolist()))) == nnz  # no duplicate entries
    torch.testing.assert_close(d.svft_U @ torch.diag(torch.linalg.svdvals(layer.weight)) @ d.svft_Vh,
                               layer.weight.detach(), atol=1e-5, rtol=1e-5)


def test_loldu_reconstructs_w0_at_full_rank():
    layer, d = one_layer("loldu", rank=20)
    torch.testing.assert_close(d.loldu_L @ torch.diag(d.loldu_z0) @ d.loldu_U, layer.weight.detach(),
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.diagonal(d.loldu_U), torch.ones(20))  # U is unit upper triangular


def test_qr_lora_basis_is_orthonormal_and_reconstructs_w0():
    layer, d = one_layer("qr-lora", rank=20)
    torch.testing.assert_close(d.qr_Q.t() @ d.qr_Q, torch.eye(20), atol=1e-5, rtol=0)
    torch.testing.assert_close(d.qr_Q @ d.qr_R, layer.weight.detach(), atol=1e-5, rtol=1e-5)
    norms = torch.linalg.vector_norm(d.qr_R, dim=1)
    assert norms[0] >= norms[-1]  # pivoting puts the dominant directions first


def test_mora_square_size_and_operators():
    layer, d = one_layer("mora", m=30, n=20, rank=2)
    assert d.rhat == round(math.sqrt(50 * 2))  # 10
    x = torch.randn(3, 20)
    dec, comp = d.operators()
    torch.testing.assert_close(compress(x, d.rhat), x @ comp.t())
    h = torch.randn(3, d.rhat)
    torch.testing.assert_close(decompress(h, 30), h @ dec.t())


def test_abba_init_and_khatri_rao_identity():
    layer, d = one_layer("abba", rank=4, alpha=4)
    u, s, vh = torch.linalg.svd(layer.weight.detach(), full_matrices=False)
    torch.testing.assert_close(d.abba_B1 @ d.abba_A1, u[:, :2] @ torch.diag(s[:2]) @ vh[:2], atol=1e-5, rtol=1e-5)
    assert d.abba_B2.detach().eq(0).all()
    assert d.scale == pytest.approx(4 / math.sqrt(2 * 2))
    perturb(nn.Sequential(layer), std=0.3)
    b, a = d.factors()
    assert b.shape == (30, 4) and a.shape == (4, 20)  # inner size r₁·r₂
    torch.testing.assert_close(b @ a, (d.abba_B1 @ d.abba_A1) * (d.abba_B2 @ d.abba_A2), atol=1e-6, rtol=1e-5)


def test_nola_saves_only_coefficients_and_shares_bases_by_shape(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 20), nn.Linear(20, 20), nn.Linear(20, 8))
    rankwise.adapt(model, rankwise.method_config("nola", rank=4, targets=nn.Linear,
                                                 options={"nola_k": 5, "nola_l": 3}))
    d0, d1, d2 = (m.rankwise["default"].delta for m in model)
    assert d0.nola_A is d1.nola_A and d0.nola_A is not d2.nola_A
    assert not torch.equal(d0.nola_A[:, :, :20], d2.nola_A[:, :, :20])
    rankwise.save_adapter(model, tmp_path)
    stored = rankwise.io.files.read_tensors(tmp_path / "adapter.safetensors")
    assert {k.split(".")[-1] for k in stored} == {"nola_alpha", "nola_beta"}
    assert sum(t.numel() for t in stored.values()) == 3 * (5 + 3)


def test_deep_lora_init_scale_and_compression(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 30), nn.Linear(30, 10))
    rankwise.adapt(model, rankwise.method_config("deep-lora", rank=6, targets=nn.Linear))
    d = model[0].rankwise["default"].delta
    torch.testing.assert_close(d.deep_W2 @ d.deep_W2.t(), 1e-6 * torch.eye(6), atol=1e-9, rtol=1e-4)  # ε·orthogonal
    with torch.no_grad():  # a product of rank 2, as the paper's compressible dynamics produce
        for m in model:
            dd = m.rankwise["default"].delta
            dd.deep_W2.zero_()
            dd.deep_W2[:2, :2] = torch.randn(2, 2)
            dd.deep_W1.normal_()
            dd.deep_W3.normal_()
    x = torch.randn(4, 20)
    y = model(x)
    assert deep_lora.compress(model, 2) == 2
    assert d.deep_W1.shape == (2, 20) and d.rank == 2
    torch.testing.assert_close(model(x), y, atol=1e-4, rtol=1e-4)
    rankwise.save_adapter(model, tmp_path)
    fresh = nn.Sequential(nn.Linear(20, 30), nn.Linear(30, 10))
    fresh.load_state_dict({k: v for k, v in model.state_dict().items() if "rankwise" not in k})
    torch.testing.assert_close(rankwise.load_adapter(fresh, tmp_path)(x), y, atol=1e-4, rtol=1e-4)
