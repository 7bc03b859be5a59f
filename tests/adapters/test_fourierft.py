"""FourierFT: PEFT's frequency locations; PEFT format both ways."""

import torch
from torch import nn

import rankwise
from tests.adapters.peft_roundtrip import check_both_directions, make_model, peft


def test_locations_equal_peft_and_are_not_stored(tmp_path):
    opts = {"fourierft_n_frequency": 50, "fourierft_seed": 11}
    model = rankwise.adapt(make_model(), rankwise.method_config("fourierft", targets=nn.Linear, options=opts))
    theirs = peft.get_peft_model(make_model(), peft.FourierFTConfig(n_frequency=50, random_loc_seed=11,
                                                                    target_modules=["0", "2"]))
    torch.testing.assert_close(model[2].rankwise["default"].delta.fourierft_indices,
                               theirs.base_model.model[2].indices["default"], rtol=0, atol=0)
    rankwise.save_adapter(model, tmp_path)
    stored = rankwise.io.files.read_tensors(tmp_path / "adapter.safetensors")
    assert sorted(stored) == ["0.delta.fourierft_spectrum", "2.delta.fourierft_spectrum"]


def test_init_zero_option_starts_at_base():
    base = make_model()
    x = torch.randn(3, 24)
    y0 = base(x)
    rankwise.adapt(base, rankwise.method_config("fourierft", targets=nn.Linear,
                                                options={"fourierft_n_frequency": 50, "fourierft_init_zero": True}))
    torch.testing.assert_close(base(x), y0)


def test_peft_round_trip_both_directions(tmp_path):
    cfg = rankwise.method_config("fourierft", targets=nn.Linear, options={"fourierft_n_frequency": 50})
    check_both_directions(tmp_path, cfg, peft.FourierFTConfig(n_frequency=50, target_modules=["0", "2"]))
