import copy
import warnings

import pytest
import torch
from torch import nn

import rankwise
from tests.helpers import ToyNet, ids, perturb, tiny_gpt2, tiny_llama, toy_inputs

ALL_TOY = [nn.Embedding, nn.Conv2d, nn.Linear]
INITS = ["default", "gaussian", "pissa", "milora", "olora"]


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("dora", [False, True])
def test_merge_matches_unmerged_on_every_layer_type(init, dora):
    model = ToyNet().eval()
    x = toy_inputs()
    ref = model(*x)
    rankwise.adapt(model, rankwise.LoRAConfig(rank=2, alpha=4, targets=ALL_TOY, init=init, dora=dora))
    torch.testing.assert_close(model(*x), ref, atol=1e-5, rtol=0)  # every init starts at the base model
    perturb(model)
    out = model(*x)
    assert (out - ref).abs().max() > 1e-3
    rankwise.merge(model)
    torch.testing.assert_close(model(*x), out, atol=1e-5, rtol=0)
    with pytest.raises(rankwise.AdapterStateError, match="already merged"):
        rankwise.merge(model)
    rankwise.unmerge(model)
    torch.testing.assert_close(model(*x), out, atol=1e-5, rtol=0)
    plain = rankwise.merge_and_unload(model)
    torch.testing.assert_close(plain(*x), out, atol=1e-5, rtol=0)
    assert not list(rankwise.core.api.hosts(plain))
    assert "rankwise" not in str(plain.state_dict().keys())


@pytest.mark.parametrize("make", [tiny_llama, tiny_gpt2])
def test_merge_on_transformers_models(make):
    model = make()
    x = ids()
    rankwise.adapt(model, rankwise.LoRAConfig(rank=4, alpha=8, dora=True, rslora=True))
    perturb(model)
    out = model(x).logits
    merged = rankwise.merge_and_unload(model)
    torch.testing.assert_close(merged(x).logits, out, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_merge_into_half_weights_computes_in_fp32_and_casts_once(dtype):
    lin = nn.Linear(64, 48).to(dtype)
    model = nn.Sequential(lin)
    w0 = lin.weight.detach().clone()
    rankwise.adapt(model, rankwise.LoRAConfig(rank=4, alpha=8, targets=nn.Linear))
    adapter = lin.rankwise["default"]
    assert adapter.delta.lora_A.dtype == torch.float32  # adapters stay fp32 over half weights, as in PEFT
    perturb(model)
    expected = (w0.float() + adapter.delta.delta_matrix().detach()).to(dtype)
    rankwise.merge(model)
    assert torch.equal(lin.weight.detach(), expected)
    x = torch.randn(3, 64).to(dtype)
    assert model(x).dtype == dtype


def test_only_adapter_parameters_change_in_a_training_step():
    model = tiny_llama()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rankwise.adapt(model, rankwise.LoRAConfig(rank=4, alpha=8, dora=True, dropout=0.1))
    params = rankwise.trainable_parameters(model)
    assert params and all(".rankwise." in n for n, p in model.named_parameters() if p.requires_grad)
    opt = torch.optim.AdamW(params, lr=1e-2)
    x = ids()
    for _ in range(2):
        loss = model(x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    after = model.state_dict()
    for k, v in before.items():
        assert torch.equal(after[k], v), k  # base weights untouched
    changed = [k for k in after if ".rankwise." in k and "lora_B" in k]
    assert changed and all(after[k].abs().sum() > 0 for k in changed)


def test_several_named_adapters_set_active_and_disabled():
    model = tiny_llama()
    x = ids()
    ref = model(x).logits
    rankwise.adapt(model, rankwise.LoRAConfig(rank=4, targets=["q_proj"]), name="a")
    perturb(model)
    out_a = model(x).logits
    rankwise.adapt(model, rankwise.LoRAConfig(rank=2, targets=["v_proj", "q_proj"], init="pissa"), name="b")
    assert rankwise.active_adapters(model) == ["b"]
    assert rankwise.adapter_names(model) == ["a", "b"]
    # inactive adapter "a" is frozen, "b" trainable
    q = model.model.layers[0].self_attn.q_proj.rankwise
    assert not q["a"].delta.lora_A.requires_grad and q["b"].delta.lora_A.requires_grad
    torch.testing.assert_close(model(x).logits, ref, atol=1e-5, rtol=0)  # b starts at the base (PiSSA)
    perturb(model)
    out_b = model(x).logits
    rankwise.set_active(model, "a")
    # a alone: base moved by b's PiSSA init, but b inactive -> W_res + ΔW_a, not out_a; check via disabled
    with rankwise.disabled(model):
        torch.testing.assert_close(model(x).logits, ref, atol=1e-5, rtol=0)
    rankwise.set_active(model, ["a", "b"])
    both = model(x).logits
    rankwise.merge(model)
    torch.testing.assert_close(model(x).logits, both, atol=1e-5, rtol=0)
    with rankwise.disabled(model):
        torch.testing.assert_close(model(x).logits, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(model(x).logits, both, atol=1e-5, rtol=0)  # re-merged on exit
    rankwise.unmerge(model)
    rankwise.delete_adapter(model, "b")
    rankwise.set_active(model, "a")
    torch.testing.assert_close(model(x).logits, out_a, atol=1e-5, rtol=0)  # b's base shift undone
    with pytest.raises(rankwise.AdapterStateError, match="no adapter named 'zz'"):
        rankwise.set_active(model, "zz")
    rankwise.unload(model)
    torch.testing.assert_close(model(x).logits, ref, atol=1e-5, rtol=0)
    assert out_b is not None


def test_adapting_twice_under_one_name_is_refused_and_changes_nothing():
    model = tiny_llama()
    rankwise.adapt(model, rankwise.LoRAConfig(targets=["q_proj"]))
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(rankwise.AdapterStateError, match="already has an adapter named 'default'"):
        rankwise.adapt(model, rankwise.LoRAConfig(targets=["q_proj", "k_proj"], init="pissa"))
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


@pytest.mark.parametrize("bad, match", [
    (dict(rank=0), "rank must be a positive int"),
    (dict(rank=2.5), "rank must be a positive int"),
    (dict(dropout=1.0), "dropout"),
    (dict(init="nope"), "unknown init 'nope'"),
    (dict(init="default", init_niter=2), "init_niter applies to SVD inits"),
    (dict(alpha=float("nan")), "alpha"),
    (dict(targets=[]), "targets is empty"),
    (dict(rank_pattern={"q": -1}), r"rank_pattern\['q'\]"),
])
def test_bad_config_fields_are_named(bad, match):
    with pytest.raises(rankwise.ConfigError, match=match):
        rankwise.LoRAConfig(**bad)


def test_rank_too_large_is_refused_before_any_change():
    model = ToyNet()
    with pytest.raises(rankwise.ConfigError, match=r"rank 11 is too large for layer 'fc2'.*rank ≤ 10"):
        rankwise.adapt(model, rankwise.LoRAConfig(rank=11, targets=["fc1", "fc2"]))
    assert not rankwise.adapter_names(model) and all(p.requires_grad for p in model.parameters())


def test_summary_counts_parameters():
    model = tiny_llama()
    rankwise.adapt(model, rankwise.LoRAConfig(rank=4, targets=["q_proj", "embed_tokens"], dora=True))
    s = rankwise.summary(model)
    lin, emb = s.rows["Linear"], s.rows["Embedding"]
    assert lin.layers == 2 and lin.adapter_params == 2 * (4 * (32 + 32) + 32)
    assert emb.layers == 1 and emb.adapter_params == 4 * (97 + 32) + 32
    assert s.trainable == lin.adapter_params + emb.adapter_params
    assert s.total == sum(p.numel() for p in model.parameters())
    text = str(s)
    assert "Linear" in text and "Embedding" in text and "trainable" in text


def test_adapted_model_survives_deepcopy_and_state_dict_keys_keep_base_names():
    model = tiny_llama()
    base_keys = set(model.state_dict())
    rankwise.adapt(model, rankwise.LoRAConfig(rank=4))
    perturb(model)
    clone = copy.deepcopy(model)
    x = ids()
    torch.testing.assert_close(clone(x).logits, model(x).logits)
    with torch.no_grad():
        clone.model.layers[0].self_attn.q_proj.rankwise["default"].delta.lora_B.zero_()
    assert not torch.allclose(clone(x).logits, model(x).logits)  # the copy runs its own adapters
    assert base_keys <= set(model.state_dict())
    assert isinstance(model.model.layers[0].self_attn.q_proj, nn.Linear)


@pytest.mark.parametrize("reentrant", [False, True])
def test_gradient_checkpointing_gives_the_same_gradients(reentrant):
    """The fused adapter nodes recompute correctly under transformers' activation checkpointing."""
    grads = []
    for checkpointing in (False, True):
        model = tiny_llama()
        rankwise.adapt(model, rankwise.LoRAConfig(rank=4, dora=True, targets=["q_proj", "v_proj", "down_proj"]))
        perturb(model)
        model.train()
        if checkpointing:
            with warnings.catch_warnings():  # transformers 5 renames it; the old name works everywhere
                warnings.simplefilter("ignore", FutureWarning)
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
        x = ids()
        model(x, labels=x).loss.backward()
        grads.append([p.grad.clone() for p in rankwise.trainable_parameters(model)])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_merging_into_a_tied_weight_is_refused():
    model = tiny_gpt2()  # wte and lm_head share one weight
    rankwise.adapt(model, rankwise.LoRAConfig(rank=2, targets=["wte", "c_attn"]))
    perturb(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(rankwise.AdapterStateError, match=r"'transformer.wte' is tied to \['lm_head'\]"):
        rankwise.merge(model)
    with pytest.raises(rankwise.AdapterStateError, match="tied"):
        rankwise.merge_and_unload(model)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    with pytest.raises(rankwise.ConfigError, match=r"init='pissa' rewrites the weight of 'transformer.wte'"):
        rankwise.adapt(tiny_gpt2(), rankwise.LoRAConfig(rank=2, targets=["wte"], init="pissa"))


def test_config_round_trips_through_dict_for_every_target_form():
    for targets in ["all-linear", "q_proj", nn.Linear, ["q_proj", nn.Embedding], r".*\.v_proj"]:
        cfg = rankwise.LoRAConfig(targets=targets, exclude="lm_head", rank_pattern={"v": 2})
        assert rankwise.LoRAConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(rankwise.ConfigError, match=r"unknown LoRAConfig fields \['rnak'\]"):
        rankwise.LoRAConfig.from_dict({"rnak": 3})
