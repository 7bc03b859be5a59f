"""PEFT format both ways, checked against peft itself (the test oracle): same logits within 1e-5 (fp32)."""

import copy
import json
import warnings

import pytest
import torch
from torch import nn

import rankwise
from tests.helpers import ToyNet, ids, perturb, tiny_gpt2, tiny_llama, toy_inputs

peft = pytest.importorskip("peft")

VARIANTS = {
    "lora": dict(),
    "rslora": dict(rslora=True),
    "dora": dict(dora=True),
    "rslora-dora-patterns": dict(rslora=True, dora=True, rank_pattern={"v_proj": 2, "c_fc": 2},
                                 alpha_pattern={"up_proj": 3.0, "c_proj": 3.0}),
}
MODELS = {"llama": tiny_llama, "gpt2": tiny_gpt2}


def peft_load(base, folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return peft.PeftModel.from_pretrained(base, folder).eval()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("arch", MODELS)
def test_rankwise_adapter_loads_in_peft_with_same_logits(tmp_path, arch, variant):
    base = MODELS[arch]()
    model = copy.deepcopy(base)
    rankwise.adapt(model, rankwise.LoRAConfig(rank=4, alpha=8, **VARIANTS[variant]))
    perturb(model)
    x = ids()
    out = model(x).logits
    rankwise.save_adapter(model, tmp_path, format="peft")
    theirs = peft_load(copy.deepcopy(base), tmp_path)(x).logits
    assert (theirs - out).abs().max() <= 1e-5
    assert (out - base(x).logits).abs().max() > 1e-3  # the adapter does change the model


@pytest.mark.parametrize("init", ["pissa", "olora", "milora"])
@pytest.mark.parametrize("dora", [False, True])
def test_base_moving_inits_save_as_rank_2r_lora_on_public_base(tmp_path, init, dora):
    base = tiny_llama()
    model = copy.deepcopy(base)
    rankwise.adapt(model, rankwise.LoRAConfig(rank=4, alpha=8, init=init, dora=dora, targets=["q_proj", "down_proj"]))
    perturb(model)
    x = ids()
    out = model(x).logits
    rankwise.save_adapter(model, tmp_path, format="peft")
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    assert cfg["r"] == 8 and cfg["lora_alpha"] == 16  # rank 2r, α doubled: the same scale
    theirs = peft_load(copy.deepcopy(base), tmp_path)(x).logits  # loaded onto the public, unmodified base model
    assert (theirs - out).abs().max() <= 1e-5
    ours = rankwise.load_adapter(copy.deepcopy(base), tmp_path)(x).logits
    assert (ours - out).abs().max() <= 1e-5


def test_embedding_and_conv2d_layers_interop(tmp_path):
    base = ToyNet().eval()
    model = copy.deepcopy(base)
    rankwise.adapt(model, rankwise.LoRAConfig(rank=2, alpha=4, dora=True, targets=["embed", "conv", "fc1"]))
    perturb(model)
    x = toy_inputs()
    out = model(*x)
    rankwise.save_adapter(model, tmp_path, format="peft")
    theirs = peft_load(copy.deepcopy(base), tmp_path)(*x)
    assert (theirs - out).abs().max() <= 1e-5
    back = rankwise.load_adapter(copy.deepcopy(base), tmp_path)(*x)
    assert (back - out).abs().max() <= 1e-5


def train_peft(model, config, steps=3):
    pm = peft.get_peft_model(model, config)
    pm.train()
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=5e-2)
    x = ids()
    for _ in range(steps):
        if hasattr(pm.base_model.model, "lm_head"):
            loss = pm(input_ids=x, labels=x).loss
        else:
            loss = pm(*toy_inputs()).square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    return pm.eval()


PEFT_CONFIGS = {
    "llama-lora": (tiny_llama, dict(target_modules=["q_proj", "v_proj", "gate_proj"])),
    "llama-rslora-dora": (tiny_llama, dict(target_modules=["q_proj", "k_proj", "o_proj", "embed_tokens"],
                                           use_rslora=True, use_dora=True, rank_pattern={"k_proj": 2},
                                           alpha_pattern={"o_proj": 5})),
    "gpt2-lora": (tiny_gpt2, dict(target_modules=["c_attn", "c_proj"], fan_in_fan_out=True)),
    "gpt2-dora": (tiny_gpt2, dict(target_modules=["c_attn", "c_fc"], fan_in_fan_out=True, use_dora=True)),
}


@pytest.mark.parametrize("name", PEFT_CONFIGS)
def test_peft_trained_adapter_loads_in_rankwise_with_same_logits(tmp_path, name):
    make, kwargs = PEFT_CONFIGS[name]
    base = make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = train_peft(copy.deepcopy(base), peft.LoraConfig(r=4, lora_alpha=8, **kwargs))
        x = ids()
        theirs = pm(input_ids=x).logits
        pm.save_pretrained(tmp_path)
    ours = rankwise.load_adapter(copy.deepcopy(base), tmp_path)
    assert (ours(x).logits - theirs).abs().max() <= 1e-5
    assert (theirs - base(x).logits).abs().max() > 1e-3
    # and back out through rankwise's PEFT writer: PEFT reads the same adapter again
    rankwise.save_adapter(ours, tmp_path / "again", format="peft")
    again = peft_load(copy.deepcopy(base), tmp_path / "again")(x).logits
    assert (again - theirs).abs().max() <= 1e-5


def test_peft_toy_with_conv2d_and_embedding_loads(tmp_path):
    base = ToyNet().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = train_peft(copy.deepcopy(base), peft.LoraConfig(r=2, lora_alpha=4, target_modules=["embed", "conv", "fc2"],
                                                             use_dora=True))
        x = toy_inputs()
        theirs = pm(*x)
        pm.save_pretrained(tmp_path)
    ours = rankwise.load_adapter(copy.deepcopy(base), tmp_path)
    assert (ours(*x) - theirs).abs().max() <= 1e-5


def test_unsupported_peft_types_are_refused(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
    with pytest.raises(rankwise.AdapterFileError, match="peft_type 'IA3' is not supported"):
        rankwise.load_adapter(tiny_llama(), tmp_path)


def test_lora_on_unsaved_model_layer_mismatch_is_reported(tmp_path):
    base = tiny_llama()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(
            tmp_path)
    other = tiny_gpt2()
    with pytest.raises(rankwise.AdapterFileError, match="model.layers.0.self_attn.q_proj"):
        rankwise.load_adapter(other, tmp_path)
    assert not rankwise.adapter_names(other)


def test_saved_peft_folder_layout(tmp_path):
    model = tiny_llama()
    rankwise.adapt(model, rankwise.LoRAConfig(rank=4, targets=["q_proj"], dropout=0.1))
    rankwise.save_adapter(model, tmp_path, format="peft")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    cfg = peft.LoraConfig.from_pretrained(tmp_path)
    assert cfg.r == 4 and cfg.lora_dropout == 0.1 and isinstance(cfg.target_modules, set | list)
    assert nn  # imported for type targets elsewhere
