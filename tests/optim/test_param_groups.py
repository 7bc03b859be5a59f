import pytest
import torch

import rankwise
from tests.helpers import tiny_llama


def test_loraplus_gives_b_the_larger_rate_and_everything_else_the_base_rate():
    model = tiny_llama()
    rankwise.adapt(model, rankwise.LoRAConfig(rank=4, dora=True, loraplus_ratio=16))
    groups = rankwise.param_groups(model, lr=1e-4, weight_decay=0.1)
    assert [g["lr"] for g in groups] == [pytest.approx(1e-4), pytest.approx(1.6e-3)]
    fast = {id(p) for p in groups[1]["params"]}
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert (id(p) in fast) == name.endswith("lora_B"), name
    assert sum(len(g["params"]) for g in groups) == len(rankwise.trainable_parameters(model))
    torch.optim.AdamW(groups)  # usable as is


def test_no_ratio_means_one_group():
    model = tiny_llama()
    rankwise.adapt(model, rankwise.LoRAConfig(rank=4))
    groups = rankwise.param_groups(model, lr=1e-3)
    assert len(groups) == 1 and len(groups[0]["params"]) == len(rankwise.trainable_parameters(model))
    assert len(rankwise.param_groups(model, lr=1e-3, loraplus_ratio=4)) == 2
