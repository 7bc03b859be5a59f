"""LoRA-One and LoRA-SB against their formulas; every calibrated method trains (loss goes down)."""

import copy

import pytest
import torch

import rankwise
from rankwise.init.lora_one import lora_one_factors
from rankwise.init.lora_sb import lora_sb_factors
from tests.helpers import ids, tiny_llama


def gapped(m=20, n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(m, m, generator=g))
    v, _ = torch.linalg.qr(torch.randn(n, n, generator=g))
    s = torch.tensor([10.0, 6, 3, 1] + [0.01] * (n - 4))  # a clear gap after 3: randomized SVD is exact there
    return u[:, :n] @ torch.diag(s) @ v.t()


def test_lora_one_is_the_normalised_best_rank_r_step():
    g = gapped()
    b, a = lora_one_factors(g, 3, gamma=128.0)
    u, s, vh = torch.linalg.svd(-g, full_matrices=False)
    ref = u[:, :3] @ torch.diag(s[:3]) @ vh[:3] / (s[0] * 128.0)  # plain reference
    torch.testing.assert_close(b @ a, ref, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(b.t() @ b, a @ a.t(), atol=1e-6, rtol=1e-4)  # balanced factors: √S on each side


def test_lora_sb_core_times_frozen_bases_is_the_best_rank_r_sign_update():
    g = torch.randn(12, 10, generator=torch.Generator().manual_seed(1))
    b, a, core = lora_sb_factors(g, 3, scale=2.0, lr=1e-3)
    u, s, vh = torch.linalg.svd(-1e-3 * torch.sign(g), full_matrices=False)
    torch.testing.assert_close(2.0 * b @ core @ a, u[:, :3] @ torch.diag(s[:3]) @ vh[:3], atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(b.t() @ b, torch.eye(3), atol=1e-5, rtol=0)
    assert torch.count_nonzero(core - torch.diag(core.diagonal())) == 0


def lm_batches(n=2):
    return [{"input_ids": ids(2, 12).roll(i, 1), "labels": ids(2, 12).roll(i, 1)} for i in range(n)]


def test_lora_sb_and_lora_one_start_one_step_away_from_the_base():
    base = tiny_llama()
    batch = lm_batches(1)[0]
    for method in ("lora-one", "lora-sb"):
        model = copy.deepcopy(base)
        rankwise.adapt(model, rankwise.method_config(method, rank=4), calibration=[batch])
        with torch.no_grad():  # a step along −G lowers the loss of the batch it was computed on
            assert model(**batch).loss < base(**batch).loss, method
    assert [n for n, p in model.named_parameters() if p.requires_grad][0].endswith("lora_core")


CALIBRATED = ["lora-ga", "lora-one", "lora-sb", "eva", "corda-ipm", "corda-kpm", "lora-xs", "bca", "nlora"]


@pytest.mark.slow
@pytest.mark.parametrize("method", CALIBRATED)
def test_trains_then_merges_and_round_trips(tmp_path, method):
    """A few steps reduce the loss; the trained adapter merges exactly and reloads onto the original base model."""
    model = tiny_llama()
    batches = lm_batches()
    rankwise.adapt(model, rankwise.method_config(method, rank=4), calibration=batches)
    params = rankwise.trainable_parameters(model)
    opt = torch.optim.Adam(params, lr=5e-3)
    batch = batches[0]
    losses = []
    for _ in range(6):
        loss = model(**batch).loss
        losses.append(loss.item())
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert losses[-1] < losses[0] - 1e-3, losses
    x = ids()
    with torch.no_grad():
        out = model(x).logits
        rankwise.save_adapter(model, tmp_path)
        back = rankwise.load_adapter(tiny_llama(), tmp_path)
        assert (back(x).logits - out).abs().max() <= 1e-5
        rankwise.merge(model)
        assert (model(x).logits - out).abs().max() <= 1e-5
