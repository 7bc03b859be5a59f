"""RandLoRA: PEFT's bases and pairing reproduced exactly; full rank reachable; PEFT format both ways."""

import torch
from torch import nn

import rankwise
from tests.adapters.peft_roundtrip import check_both_directions, make_model, peft


def test_bases_equal_peft_and_update_can_reach_full_rank():
    model = rankwise.adapt(make_model(), rankwise.method_config("randlora", rank=4, alpha=8, targets=nn.Linear))
    theirs = peft.get_peft_model(make_model(), peft.RandLoraConfig(r=4, target_modules=["0", "2"]))
    d0 = model[0].rankwise["default"].delta
    torch.testing.assert_close(d0.randlora_A, theirs.base_model.randlora_A["default"][:, :, :24], rtol=0, atol=0)
    torch.testing.assert_close(d0.randlora_B, theirs.base_model.randlora_B["default"][:40, :6], rtol=0, atol=0)
    torch.testing.assert_close(d0.randlora_gamma, torch.full((6, 24), 1 / 24))  # PEFT's reset: 1/max(N, min(m, n))
    with torch.no_grad():
        d0.randlora_lambda.normal_()
        d0.randlora_gamma.normal_()
    assert torch.linalg.matrix_rank(d0.delta_matrix()) == 24  # = min(m, n): N·r = 24 ≥ 24


def test_peft_round_trip_both_directions(tmp_path):
    cfg = rankwise.method_config("randlora", rank=4, alpha=8, targets=nn.Linear)
    check_both_directions(tmp_path, cfg, peft.RandLoraConfig(r=4, randlora_alpha=8, target_modules=["0", "2"]))
