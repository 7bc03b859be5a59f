"""Whole modules trained with an adapter (``modules_to_save``): trainable, saved, and PEFT-compatible both ways."""

import copy
import json
import warnings

import pytest
import torch

import rankwise
from tests.helpers import ids, perturb

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")


def tiny_bert_classifier():
    cfg = transformers.BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=40, max_position_embeddings=64, num_labels=3)
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(cfg).eval()


def config(**kw):
    return rankwise.LoRAConfig(rank=4, alpha=8, targets=["query", "value"], modules_to_save=["classifier"], **kw)


def test_saved_module_is_trainable_and_the_rest_frozen():
    model = rankwise.adapt(tiny_bert_classifier(), config())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"classifier.weight", "classifier.bias"} <= trainable
    assert all("lora_" in n or n.startswith("classifier.") for n in trainable)
    assert not model.bert.embeddings.word_embeddings.weight.requires_grad


@pytest.mark.parametrize("fmt", ["rankwise", "peft"])
@pytest.mark.parametrize("dora", [False, True])
def test_round_trip_restores_head_and_adapter(tmp_path, fmt, dora):
    base = tiny_bert_classifier()
    model = rankwise.adapt(copy.deepcopy(base), config(dora=dora))
    perturb(model)
    x = ids()
    out = model(x).logits
    rankwise.save_adapter(model, tmp_path, format=fmt)
    back = rankwise.load_adapter(copy.deepcopy(base), tmp_path)
    assert (back(x).logits - out).abs().max() <= 1e-5
    assert back.classifier.weight.requires_grad and not back.bert.pooler.dense.weight.requires_grad


def test_rankwise_file_loads_in_peft_with_same_logits(tmp_path):
    base = tiny_bert_classifier()
    model = rankwise.adapt(copy.deepcopy(base), config())
    perturb(model)
    x = ids()
    out = model(x).logits
    rankwise.save_adapter(model, tmp_path, format="peft")
    assert json.loads((tmp_path / "adapter_config.json").read_text())["modules_to_save"] == ["classifier"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path).eval()
    assert (theirs(x).logits - out).abs().max() <= 1e-5
    assert (out - base(x).logits).abs().max() > 1e-3  # head and adapter really changed the model


def test_peft_file_with_modules_to_save_loads_in_rankwise(tmp_path):
    base = tiny_bert_classifier()
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], modules_to_save=["classifier"])
    pm = peft.get_peft_model(copy.deepcopy(base), cfg)
    perturb(pm)
    pm.eval()
    x = ids()
    theirs = pm(x).logits
    pm.save_pretrained(tmp_path)
    ours = rankwise.load_adapter(copy.deepcopy(base), tmp_path)
    assert rankwise.adapter_config(ours).modules_to_save == ("classifier",)
    assert (ours(x).logits - theirs).abs().max() <= 1e-5


def test_bad_modules_to_save_rejected_before_any_change():
    model = tiny_bert_classifier()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(rankwise.TargetError, match="classifer"):
        rankwise.adapt(model, rankwise.LoRAConfig(targets=["query"], modules_to_save=["classifer"]))
    with pytest.raises(rankwise.TargetError, match="also adapted"):
        rankwise.adapt(model, rankwise.LoRAConfig(rank=2, targets=["query", "classifier"],
                                                  modules_to_save=["classifier"]))
    with pytest.raises(rankwise.ConfigError, match="modules_to_save"):
        rankwise.LoRAConfig(modules_to_save=[3])
    assert all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
