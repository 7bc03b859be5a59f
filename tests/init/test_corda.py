"""CorDA: the covariance-oriented SVD against PEFT's implementation, IPM/KPM triplets, residual, PEFT round trip."""

import copy
import warnings

import pytest
import torch

import rankwise
from rankwise.init.corda import corda_factors
from tests.helpers import ids, tiny_llama

peft = pytest.importorskip("peft")


def samples(n=4):
    return [{"input_ids": ids(1, 24).roll(3 * i, 1)} for i in range(n)]  # batch size 1, as PEFT's hook expects


@pytest.mark.parametrize("mode", ["ipm", "kpm"])
def test_factors_match_peft(mode):
    from peft.tuners.lora.corda import preprocess_corda

    base = tiny_llama()
    batches = samples()
    targets = ["q_proj", "up_proj", "down_proj"]
    theirs = copy.deepcopy(base)
    pcfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights="corda",
                           corda_config=peft.tuners.lora.config.CordaConfig(corda_method=mode))

    def run():
        for b in batches:
            theirs(**b)

    preprocess_corda(theirs, pcfg, run_model=run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = peft.get_peft_model(theirs, pcfg)
    ours = copy.deepcopy(base)
    rankwise.adapt(ours, rankwise.method_config(f"corda-{mode}", rank=4, alpha=8, targets=targets),
                   calibration=batches)
    pmods, mods = dict(pm.base_model.model.named_modules()), dict(ours.named_modules())
    checked = 0
    for name, pmod in pmods.items():
        if not hasattr(pmod, "lora_A") or "default" not in pmod.lora_A:
            continue
        d = mods[name].rankwise["default"].delta
        pb, pa = pmod.lora_B["default"].weight, pmod.lora_A["default"].weight
        torch.testing.assert_close(d.delta_matrix().detach(), 2.0 * pb @ pa, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(mods[name].weight, pmod.base_layer.weight, atol=1e-5, rtol=1e-4)  # residual
        checked += 1
    assert checked == 6
    x = ids()
    assert (ours(x).logits - pm(x).logits).abs().max() < 1e-4


def test_ipm_and_kpm_split_w0_exactly_by_singular_values():
    g = torch.Generator().manual_seed(0)
    w0, x = torch.randn(10, 8, generator=g), torch.randn(50, 8, generator=g)
    c = x.t() @ x / 50
    b_i, a_i = corda_factors(w0, c, 3, scale=2.0, mode="ipm")
    b_k, a_k = corda_factors(w0, c, 3, scale=2.0, mode="kpm")
    eye = torch.eye(8)
    damp = c + eye * c.diagonal().mean() * 0.01  # well conditioned: the first damping step is accepted
    u, s, vh = torch.linalg.svd(w0 @ damp, full_matrices=False)
    v = vh @ torch.linalg.inv(damp)
    torch.testing.assert_close(2.0 * b_i @ a_i, u[:, :3] @ torch.diag(s[:3]) @ v[:3], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(2.0 * b_k @ a_k, u[:, -3:] @ torch.diag(s[-3:]) @ v[-3:], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(u @ torch.diag(s) @ v, w0, atol=1e-5, rtol=1e-4)


def test_model_starts_unchanged_and_round_trips_through_peft(tmp_path):
    base = tiny_llama()
    model = copy.deepcopy(base)
    rankwise.adapt(model, rankwise.method_config("corda-kpm", rank=2, dora=True), calibration=samples(2))
    x = ids()
    assert (model(x).logits - base(x).logits).abs().max() < 1e-5
    with torch.no_grad():
        for p in rankwise.trainable_parameters(model):
            p.add_(0.05 * torch.randn_like(p))
    out = model(x).logits
    rankwise.save_adapter(model, tmp_path, format="peft")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path)(x).logits
    assert (theirs - out).abs().max() <= 1e-5
