"""LoRA-GA: the formula on small matrices, the model starts unchanged, agreement with PEFT's gradient and subspaces."""

import copy
import warnings

import pytest
import torch
from torch import nn

import rankwise
from rankwise.core.geometry import LayerGeometry
from rankwise.init.lora_ga import lora_ga_factors
from tests.helpers import ids, tiny_llama

peft = pytest.importorskip("peft")


def lm_batches(n=2):
    return [{"input_ids": ids(2, 9).roll(i, 1), "labels": ids(2, 9).roll(i, 1)} for i in range(n)]


@pytest.mark.parametrize("direction, b_idx, a_idx", [("ArB2r", slice(3, 6), slice(0, 3)),
                                                     ("A2rBr", slice(0, 3), slice(3, 6)),
                                                     ("ArBr", slice(0, 6, 2), slice(1, 6, 2))])
def test_factors_follow_the_formula(direction, b_idx, a_idx):
    g = torch.randn(20, 16, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(5)
    b, a = lora_ga_factors(g, 3, scale=2.0, direction=direction)
    torch.manual_seed(5)
    u, _, v = torch.svd_lowrank(g, q=12, niter=4)  # the plain reference: q = 4r, niter 4
    c = 20 ** 0.25 / 16 ** 0.5
    torch.testing.assert_close(b, c * u[:, b_idx])
    torch.testing.assert_close(a, c * v.t()[a_idx])
    torch.manual_seed(5)
    b_gd, a_gd = lora_ga_factors(g, 3, scale=2.0, direction=direction, mode="gd")
    torch.testing.assert_close(b_gd, b / c / 2.0)
    torch.testing.assert_close(a_gd, a / c / 2.0)


def test_rank_too_large_for_the_split_is_refused():
    layer = nn.Linear(6, 5)
    model = nn.Sequential(layer)
    with pytest.raises(rankwise.ConfigError, match="2·rank"):
        rankwise.adapt(model, rankwise.method_config("lora-ga", rank=3, targets=nn.Linear),
                       calibration=[torch.randn(4, 6)], loss_fn=lambda out, batch: out.square().mean())


def test_model_starts_unchanged_and_saves_as_plain_lora_for_peft(tmp_path):
    base = tiny_llama()
    model = copy.deepcopy(base)
    rankwise.adapt(model, rankwise.method_config("lora-ga", rank=4), calibration=lm_batches())
    x = ids()
    assert (model(x).logits - base(x).logits).abs().max() < 1e-5
    with rankwise.disabled(model):
        assert (model(x).logits - base(x).logits).abs().max() < 1e-5
    with torch.no_grad():
        for p in rankwise.trainable_parameters(model):
            p.add_(0.05 * torch.randn_like(p))
    out = model(x).logits
    rankwise.save_adapter(model, tmp_path / "peft", format="peft")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "peft")(x).logits
    assert (theirs - out).abs().max() <= 1e-5
    rankwise.save_adapter(model, tmp_path / "native")
    ours = rankwise.load_adapter(copy.deepcopy(base), tmp_path / "native")(x).logits
    assert (ours - out).abs().max() <= 1e-5


def test_same_gradient_and_subspaces_as_peft():
    """PEFT 0.21 multiplies B by S[r:2r] and scales only B; rankwise follows the paper (see lora_ga.py)."""
    base = tiny_llama()
    batches = lm_batches()
    targets = ["q_proj", "down_proj"]
    r = 4
    pcfg = peft.LoraConfig(r=r, lora_alpha=8, target_modules=targets, init_lora_weights="lora_ga",
                           lora_ga_config=peft.LoraGAConfig())
    theirs = copy.deepcopy(base)

    def train_step():
        for b in batches:
            theirs(**b).loss.backward()

    from peft.tuners.lora.loraga import preprocess_loraga

    preprocess_loraga(theirs, pcfg, train_step)
    grads = {n: m._peft_loraga_grad.clone() for n, m in theirs.named_modules() if hasattr(m, "_peft_loraga_grad")}
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = peft.get_peft_model(theirs, pcfg)
    ours = copy.deepcopy(base)
    torch.manual_seed(0)
    rankwise.adapt(ours, rankwise.method_config("lora-ga", rank=r, alpha=8, targets=targets), calibration=batches)
    mods, base_mods = dict(ours.named_modules()), dict(base.named_modules())
    pmods = dict(pm.base_model.model.named_modules())
    mine = rankwise.calibration.collect_gradients(
        base, {n: (base_mods[n], LayerGeometry.of(base_mods[n])) for n in grads}, batches)
    for name, g in grads.items():
        delta = mods[name].rankwise["default"].delta
        torch.testing.assert_close(mine[name], g, atol=1e-6, rtol=1e-5)  # the same mean gradient
        pa, pb = pmods[name].lora_A["default"].weight, pmods[name].lora_B["default"].weight
        m = pb.shape[0]
        c = m ** 0.25 / 16 ** 0.5
        s_b = torch.linalg.norm(pb, dim=0) / c  # PEFT's B = c·U[:, r:2r]·diag(S[r:2r]), U orthonormal
        a, b = delta.lora_A.detach(), delta.lora_B.detach()
        # singular vectors are defined up to sign (and the randomized SVDs draw differently): compare Aᵀ·A, B·Bᵀ
        torch.testing.assert_close(a.t() @ a, (c * pa).t() @ (c * pa), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(b @ b.t(), (pb / s_b) @ (pb / s_b).t(), atol=1e-5, rtol=1e-4)
