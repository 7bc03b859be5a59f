"""reparameterize / densify on a transformers Llama: selection, forward, generate, save_pretrained, errors."""

import pytest
import torch
from torch import nn

import rankwise
from rankwise.errors import ConfigError, TargetError
from rankwise.reparam import FactoredLinear, densify
from tests.helpers import ids, tiny_llama
from tests.reparam.common import ALL, build, logits, optimizer, train


def test_catalogue_lists_every_method_with_its_paper():
    names = [m.name for m in rankwise.methods("reparam")]
    assert names == list(ALL)
    for m in rankwise.methods("reparam"):
        assert "arXiv" in m.paper and m.formula and m.trainable
        assert rankwise.method_config(m.name).method == m.name
    assert rankwise.method_config("sltrain", rank=8, density=0.05).density == 0.05


@pytest.mark.parametrize("bad, match", [({"rank": 0}, "rank"), ({"density": 0.0}, "density"),
                                        ({"prune": "half"}, "prune"), ({"gamma": 1.0}, "gamma"),
                                        ({"activation": "swish"}, "activation"), ({"method": "lora"}, "method")])
def test_bad_config_is_named(bad, match):
    with pytest.raises(ConfigError, match=match):
        rankwise.method_config("sltrain", **bad)


def test_refactor_rejected_for_cola():
    with pytest.raises(ConfigError, match="refactor_every"):
        rankwise.method_config("cola", refactor_every=10)


@pytest.mark.parametrize("method", ALL)
def test_selects_block_linears_only_and_generates(method):
    model, _ = build(method)
    names = {n for n, m in model.named_modules() if isinstance(m, FactoredLinear)}
    adapted = {n for n, m in model.named_modules() if hasattr(m, "rankwise")}
    chosen = names | adapted
    assert len(chosen) == 2 * 7                                   # q, k, v, o, gate, up, down per block
    assert all(".layers." in n for n in chosen)
    assert isinstance(model.lm_head, nn.Linear) and isinstance(model.model.embed_tokens, nn.Embedding)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "lm_head.weight" in trainable and "model.embed_tokens.weight" in trainable
    assert "model.norm.weight" in trainable
    out = model.generate(ids(1, 4), max_new_tokens=2, do_sample=False)
    assert out.shape == (1, 6)


@pytest.mark.parametrize("method", ["low-rank", "relora", "switchlora", "sltrain", "lost", "sst"])
def test_densify_keeps_function_and_saves(method, tmp_path):
    model, schedule = build(method)
    train(model, schedule, optimizer(model), 0, 2)
    before = logits(model)
    densify(model)
    assert all(type(m) is nn.Linear for n, m in model.named_modules() if n.endswith(("q_proj", "down_proj")))
    assert not any(isinstance(m, FactoredLinear) or hasattr(m, "rankwise") for m in model.modules())
    torch.testing.assert_close(logits(model), before, rtol=1e-4, atol=1e-5)
    if method != "sltrain":  # one save/reload round trip is enough (densified models are plain Llamas)
        return
    model.save_pretrained(tmp_path)
    reloaded = type(model).from_pretrained(tmp_path)
    torch.testing.assert_close(logits(reloaded), before, rtol=1e-4, atol=1e-5)


def test_cola_refuses_densify_before_any_change():
    model, _ = build("cola")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match="no dense form"):
        densify(model)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


def test_errors_leave_model_unchanged():
    model = tiny_llama()
    with pytest.raises(TargetError):
        rankwise.reparameterize(model, rankwise.method_config("low-rank", targets="qq_proj"))
    assert not any(isinstance(m, FactoredLinear) for m in model.modules())
    with pytest.raises(ConfigError, match="ReparamConfig"):
        rankwise.reparameterize(model, rankwise.LoRAConfig())
    rankwise.reparameterize(model, rankwise.method_config("low-rank", rank=4, targets=["q_proj", "v_proj"]))
    assert sum(isinstance(m, FactoredLinear) for m in model.modules()) == 4
    with pytest.raises(ConfigError, match="already"):
        rankwise.reparameterize(model, rankwise.method_config("cola"))
