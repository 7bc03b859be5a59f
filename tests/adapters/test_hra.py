"""HRA: orthogonal multiplicative update, Gram-Schmidt variant, regulariser, exact unmerge, PEFT format both ways."""

import torch
from torch import nn

import rankwise
from rankwise.adapters.hra import orthogonality_penalty
from tests.adapters.peft_roundtrip import check_both_directions, make_model, peft
from tests.helpers import perturb


def test_rotation_is_orthogonal_and_keeps_singular_values():
    model = rankwise.adapt(make_model(), rankwise.method_config("hra", rank=4, targets=nn.Linear))
    perturb(model, std=0.3)
    layer = model[2]
    d = layer.rankwise["default"].delta
    h = d.rotation()
    torch.testing.assert_close(h @ h.t(), torch.eye(40), atol=1e-5, rtol=0)
    w = layer.rankwise["default"].merged_weight(layer.weight)
    torch.testing.assert_close(torch.linalg.svdvals(w), torch.linalg.svdvals(layer.weight), atol=1e-4, rtol=1e-4)


def test_wy_rotation_and_fused_layer_agree_with_the_reflection_by_reflection_reference():
    torch.manual_seed(0)
    model = rankwise.adapt(make_model(), rankwise.method_config("hra", rank=6, targets=nn.Linear))
    perturb(model, std=0.3)
    layer = model[0]
    d = layer.rankwise["default"].delta
    x = torch.randn(5, 7, 24, dtype=torch.float64)
    d64 = d.double()
    torch.testing.assert_close(d64.rotate(x), d64.rotate_reference(x), atol=1e-12, rtol=0)
    d.float()
    x = x.float().requires_grad_(True)
    h = d.rotation()                                            # H from the reflection-by-reflection product
    assert not torch.allclose(h, h.t(), atol=1e-3)              # so the check below sees the orientation
    fused = layer(x)                                            # one adapter, no dropout: the fused path
    torch.testing.assert_close(fused, x @ (layer.weight @ h).t() + layer.bias, atol=1e-5, rtol=1e-4)
    fused.square().sum().backward()
    g_fused = d.hra_u.grad.clone()
    d.hra_u.grad = None
    ref = torch.nn.functional.linear(d.rotate_reference(x), layer.weight, layer.bias)
    ref.square().sum().backward()
    torch.testing.assert_close(g_fused, d.hra_u.grad, atol=1e-4, rtol=1e-4)


def test_gram_schmidt_variant_matches_its_formula():
    model = rankwise.adapt(make_model(), rankwise.method_config("hra", rank=4, targets=nn.Linear,
                                                                  options={"hra_apply_gs": True}))
    perturb(model, std=0.3)
    layer = model[0]
    d = layer.rankwise["default"].delta
    q, _ = torch.linalg.qr(d.hra_u)           # Gram-Schmidt = QR up to column signs, which I − 2QQᵀ ignores
    ref = layer.weight @ (torch.eye(24) - 2 * q @ q.t())
    x = torch.randn(3, 24)
    torch.testing.assert_close(layer(x), x @ ref.t() + layer.bias, atol=1e-5, rtol=1e-4)


def test_orthogonality_penalty():
    model = rankwise.adapt(make_model(), rankwise.method_config("hra", rank=4, targets=nn.Linear))
    d = model[0].rankwise["default"].delta
    u = d.hra_u / d.hra_u.norm(dim=0)
    expected = d.orthogonality_penalty() + model[2].rankwise["default"].delta.orthogonality_penalty()
    torch.testing.assert_close(orthogonality_penalty(model), expected)
    torch.testing.assert_close(d.orthogonality_penalty(), (u.t() @ u - torch.eye(4)).square().sum())
    orthogonality_penalty(model).backward()
    assert d.hra_u.grad is not None


def test_peft_round_trip_both_directions(tmp_path):
    cfg = rankwise.method_config("hra", rank=4, targets=nn.Linear)
    check_both_directions(tmp_path, cfg, peft.HRAConfig(r=4, target_modules=["0", "2"]))
