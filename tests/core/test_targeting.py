import pytest
from torch import nn

import rankwise
from rankwise.core.targeting import resolve_targets
from tests.helpers import ToyNet, tiny_gpt2, tiny_llama


def names(model, targets, exclude=()):
    return [m.name for m in resolve_targets(model, targets, exclude)]


def test_all_linear_excludes_output_head():
    model = tiny_llama()
    got = names(model, "all-linear")
    assert len(got) == 2 * 7
    assert "lm_head" not in got
    assert all(n.split(".")[-1] in {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
               for n in got)


def test_all_linear_on_gpt2_conv1d_excludes_tied_head():
    got = names(tiny_gpt2(), "all-linear")
    assert len(got) == 2 * 4 and "lm_head" not in got
    assert {n.split(".")[-1] for n in got} == {"c_attn", "c_proj", "c_fc"}


def test_suffix_exact_regex_and_type_targets():
    model = tiny_llama()
    assert names(model, ["q_proj", "v_proj"]) == [f"model.layers.{i}.self_attn.{p}" for i in range(2)
                                                  for p in ("q_proj", "v_proj")]
    assert names(model, "model.layers.1.mlp.up_proj") == ["model.layers.1.mlp.up_proj"]
    assert names(model, r"model\.layers\.0\..*_proj") == [n for n in names(model, "all-linear") if ".0." in n]
    assert names(model, nn.Embedding) == ["model.embed_tokens"]
    assert names(model, "all-linear", exclude=["mlp.down_proj", r".*\.0\..*"]) == [
        n for n in names(model, "all-linear") if ".0." not in n and not n.endswith("down_proj")]


def test_toy_layer_types():
    assert names(ToyNet(), [nn.Embedding, nn.Conv2d, nn.Linear]) == ["embed", "conv", "fc1", "fc2"]


def test_unknown_target_lists_close_names():
    model = tiny_llama()
    with pytest.raises(rankwise.TargetError, match=r"q_prj.*q_proj"):
        rankwise.adapt(model, rankwise.LoRAConfig(targets=["q_prj"]))
    assert not rankwise.adapter_names(model)
    assert all(p.requires_grad for p in model.parameters())  # untouched: nothing was frozen


def test_unsupported_module_type_is_named():
    with pytest.raises(rankwise.TargetError, match="LayerNorm"):
        rankwise.adapt(ToyNet(), rankwise.LoRAConfig(targets=["norm"]))
    with pytest.raises(rankwise.TargetError, match="unsupported"):
        rankwise.adapt(ToyNet(), rankwise.LoRAConfig(targets=nn.LayerNorm))


def test_rank_and_alpha_patterns():
    model = tiny_llama()
    cfg = rankwise.LoRAConfig(rank=4, alpha=8, targets=["q_proj", "v_proj"], rank_pattern={"v_proj": 2},
                              alpha_pattern={r"layers\.1\.self_attn\.q_proj": 3.0})
    rankwise.adapt(model, cfg)
    attn = model.model.layers
    assert attn[0].self_attn.q_proj.rankwise["default"].delta.rank == 4
    assert attn[0].self_attn.v_proj.rankwise["default"].delta.rank == 2
    assert attn[0].self_attn.q_proj.rankwise["default"].delta.scale == pytest.approx(8 / 4)
    assert attn[1].self_attn.q_proj.rankwise["default"].delta.scale == pytest.approx(3 / 4)
    assert attn[1].self_attn.v_proj.rankwise["default"].delta.scale == pytest.approx(8 / 2)
