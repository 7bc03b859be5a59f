"""SVD inits reconstruct W0 at init and pick the right singular directions."""

import pytest
import torch
from torch import nn

import rankwise
from rankwise.init.registry import fp32_svd


def adapted(init, rank=4, niter=None, shape=(24, 40), rslora=False):
    layer = nn.Linear(shape[1], shape[0])
    w0 = layer.weight.detach().clone()
    rankwise.adapt(nn.Sequential(layer), rankwise.LoRAConfig(rank=rank, alpha=8, targets=nn.Linear, init=init,
                                                            init_niter=niter, rslora=rslora))
    return layer, w0, layer.rankwise["default"].delta


@pytest.mark.parametrize("init", ["pissa", "milora", "olora"])
@pytest.mark.parametrize("rslora", [False, True])
def test_residual_plus_adapter_reconstructs_w0(init, rslora):
    layer, w0, delta = adapted(init, rslora=rslora)
    torch.testing.assert_close(layer.weight + delta.delta_matrix(), w0, atol=1e-5, rtol=0)
    assert delta.moves_base


def test_pissa_takes_top_and_milora_bottom_singular_triplets():
    for init, pick in [("pissa", slice(0, 4)), ("milora", slice(-4, None))]:
        layer, w0, delta = adapted(init)
        u, s, vh = torch.linalg.svd(w0, full_matrices=False)
        expected = u[:, pick] @ torch.diag(s[pick]) @ vh[pick]
        torch.testing.assert_close(delta.delta_matrix().detach(), expected, atol=1e-5, rtol=0)


def test_olora_factor_b_is_orthonormal():
    _, _, delta = adapted("olora")
    b = delta.lora_B.detach()
    torch.testing.assert_close(b.t() @ b, torch.eye(4), atol=1e-5, rtol=0)


def test_randomized_pissa_error_close_to_exact_on_decaying_spectrum():
    torch.manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(128, 128))
    v, _ = torch.linalg.qr(torch.randn(96, 96))
    s = torch.logspace(0, -3, 96)  # a decaying spectrum, like trained weights
    w = u[:, :96] @ torch.diag(s) @ v.t()
    ue, se, ve = fp32_svd(w, 8, niter=None)
    ur, sr, vr = fp32_svd(w, 8, niter=2)
    exact = torch.linalg.norm(w - ue @ torch.diag(se) @ ve)
    rand = torch.linalg.norm(w - ur @ torch.diag(sr) @ vr)
    assert rand <= exact * 1.01


def test_pissa_niter_alias_from_peft():
    cfg = rankwise.LoRAConfig(init="pissa_niter_4")
    assert (cfg.init, cfg.init_niter) == ("pissa", 4)


def test_milora_refuses_randomized_svd():
    with pytest.raises(rankwise.ConfigError, match="milora"):
        adapted("milora", niter=2)


def test_default_init_zero_b_and_kaiming_a_bounds():
    _, _, delta = adapted("default", shape=(30, 400))
    assert torch.count_nonzero(delta.lora_B) == 0
    bound = 1 / 400**0.5  # kaiming_uniform(a=√5) on fan_in n gives U(-1/√n, 1/√n)
    assert delta.lora_A.abs().max() <= bound and delta.lora_A.abs().max() > 0.9 * bound
