"""The r×r-core shape (BCA) and LoRA-XS: forward vs the formula, parameter counts, merge, save/load, training."""

import copy
import warnings

import pytest
import torch
from torch import nn

import rankwise
from tests.helpers import ToyNet, ids, perturb, tiny_llama, toy_inputs


def test_forward_matches_the_dense_formula_on_every_layer_kind(toy):
    base = copy.deepcopy(toy)
    rankwise.adapt(toy, rankwise.method_config("bca", rank=2, targets=["embed", "conv", "fc1", "fc2"]))
    perturb(toy)
    x = toy_inputs()
    ref = copy.deepcopy(base)
    with torch.no_grad():
        for name, mod in toy.named_modules():
            if hasattr(mod, "rankwise"):
                d = mod.rankwise["default"].delta
                dense = d.scale * d.lora_B @ d.lora_core @ d.lora_A  # the plain formula, (m, n)
                target = dict(ref.named_modules())[name]
                target.weight.add_(d.geometry.to_weight(dense))
    torch.testing.assert_close(toy(*x), ref(*x), atol=1e-5, rtol=1e-5)


def test_trainable_parameter_counts():
    m, n, r = 24, 40, 4
    for method, expected in [("lora-xs", r * r), ("bca", r * (m + n) + r * r)]:
        model = nn.Sequential(nn.Linear(n, m))
        rankwise.adapt(model, rankwise.method_config(method, rank=r, targets=nn.Linear))
        assert sum(p.numel() for p in rankwise.trainable_parameters(model)) == expected, method
    rankwise.set_active(model, "default")  # re-activation must not unfreeze LoRA-XS's factors (buffers)


def test_lora_xs_factors_are_the_svd_of_w0_and_stay_frozen():
    layer = nn.Linear(40, 24)
    model = nn.Sequential(layer)
    rankwise.adapt(model, rankwise.method_config("lora-xs", rank=4, targets=nn.Linear))
    rankwise.set_active(model, "default")
    d = layer.rankwise["default"].delta
    u, s, vh = torch.linalg.svd(layer.weight.detach(), full_matrices=False)
    torch.testing.assert_close(d.lora_B @ d.lora_A, u[:, :4] @ torch.diag(s[:4]) @ vh[:4], atol=1e-5, rtol=1e-4)
    assert 0 < d.lora_core.abs().max() < 1e-4
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["0.rankwise.default.delta.lora_core"]


@pytest.mark.parametrize("method, extra", [("bca", {}), ("lora-xs", {}), ("bca", {"dora": True}),
                                           ("bca", {"init": "pissa"})])
def test_merge_save_load_and_peft_export(tmp_path, method, extra):
    peft = pytest.importorskip("peft")
    base = tiny_llama()
    model = copy.deepcopy(base)
    rankwise.adapt(model, rankwise.method_config(method, rank=4, targets=["q_proj", "down_proj"], **extra))
    perturb(model)
    x = ids()
    out = model(x).logits
    assert (out - base(x).logits).abs().max() > 1e-3
    rankwise.save_adapter(model, tmp_path / "n")
    assert (rankwise.load_adapter(copy.deepcopy(base), tmp_path / "n")(x).logits - out).abs().max() <= 1e-5
    rankwise.save_adapter(model, tmp_path / "p", format="peft")  # the core folded into B: a plain LoRA
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "p")(x).logits
    assert (theirs - out).abs().max() <= 1e-5
    rankwise.merge(model)
    assert (model(x).logits - out).abs().max() <= 1e-5
    rankwise.unmerge(model)
    with rankwise.disabled(model):
        assert (model(x).logits - base(x).logits).abs().max() <= 1e-5


def test_core_init_on_plain_lora_is_refused():
    with pytest.raises(rankwise.ConfigError, match="parameterisation='lora-xs'"):
        rankwise.adapt(ToyNet(), rankwise.LoRAConfig(rank=2, init="lora-xs", targets=["fc1"]))


def test_nlora_blocks_follow_the_official_code():
    layer = nn.Linear(40, 24)
    model = nn.Sequential(layer)
    w0 = layer.weight.detach().clone()
    rankwise.adapt(model, rankwise.method_config("nlora", rank=4, targets=nn.Linear))
    d = layer.rankwise["default"].delta
    assert torch.equal(d.lora_B.detach(), w0[:, :4]) and torch.equal(d.lora_A.detach(), w0[:4])
    torch.testing.assert_close(d.delta_matrix().detach(), d.scale * w0[:, :4] @ w0[:4, :4] @ w0[:4])
    assert torch.equal(layer.weight, w0)  # W0 untouched
    assert sum(p.numel() for p in rankwise.trainable_parameters(model)) == 4 * (24 + 40) + 16
