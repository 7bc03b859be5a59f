"""VeRA: bases shared across layers and drawn as PEFT draws them; PEFT format both ways."""

import torch
from torch import nn

import rankwise
from rankwise.io.files import read_tensors
from tests.adapters.peft_roundtrip import check_both_directions, make_model, peft


def test_bases_are_shared_views_and_equal_peft_draw():
    model = rankwise.adapt(make_model(), rankwise.method_config("vera", rank=4, targets=nn.Linear,
                                                                   options={"vera_seed": 3}))
    d0, d2 = model[0].rankwise["default"].delta, model[2].rankwise["default"].delta
    assert d0.vera_A.untyped_storage().data_ptr() == d2.vera_A.untyped_storage().data_ptr()  # one copy in memory
    theirs = peft.get_peft_model(make_model(), peft.VeraConfig(r=4, target_modules=["0", "2"], projection_prng_key=3))
    a, b = theirs.base_model.vera_A["default"], theirs.base_model.vera_B["default"]
    torch.testing.assert_close(d0.vera_A, a[:, :24], rtol=0, atol=0)
    torch.testing.assert_close(d2.vera_B, b[:16], rtol=0, atol=0)
    assert d0.vera_lambda_d.detach().eq(0.1).all() and d0.vera_lambda_b.detach().eq(0).all()


def test_native_file_holds_seed_and_shapes_not_bases(tmp_path):
    model = rankwise.adapt(make_model(), rankwise.method_config("vera", rank=4, targets=nn.Linear))
    rankwise.save_adapter(model, tmp_path)
    assert sorted(read_tensors(tmp_path / "adapter.safetensors")) == [
        "0.delta.vera_lambda_b", "0.delta.vera_lambda_d", "2.delta.vera_lambda_b", "2.delta.vera_lambda_d"]
    meta = rankwise.io.files.read_json(tmp_path / "adapter.json")
    assert meta["config"]["options"]["vera_seed"] == 0
    assert meta["layers"]["0"]["regenerated"] == {"delta.vera_A": [4, 24], "delta.vera_B": [40, 4]}


def test_load_refuses_mismatched_regenerated_shapes(tmp_path):
    model = rankwise.adapt(make_model(), rankwise.method_config("vera", rank=4, targets=nn.Linear))
    rankwise.save_adapter(model, tmp_path)
    meta_path = tmp_path / "adapter.json"
    meta = rankwise.io.files.read_json(meta_path)
    meta["layers"]["0"]["regenerated"]["delta.vera_A"] = [4, 99]
    rankwise.io.files.write_json(meta_path, meta)
    fresh = make_model()
    try:
        rankwise.load_adapter(fresh, tmp_path)
    except rankwise.AdapterFileError as e:
        assert "regenerates seeded tensors" in str(e)
    else:
        raise AssertionError("a mismatched regenerated shape must be refused")
    assert not rankwise.adapter_names(fresh)  # nothing attached


def test_peft_round_trip_both_directions(tmp_path):
    cfg = rankwise.method_config("vera", rank=4, targets=nn.Linear, options={"vera_seed": 5})
    check_both_directions(tmp_path, cfg, peft.VeraConfig(r=4, target_modules=["0", "2"], projection_prng_key=5))


def test_rank_pattern_is_refused():
    cfg = rankwise.method_config("vera", rank=4, targets=nn.Linear, rank_pattern={"2": 2})
    try:
        rankwise.adapt(make_model(), cfg)
    except rankwise.ConfigError as e:
        assert "same rank" in str(e)
    else:
        raise AssertionError("VeRA with per-layer ranks must be refused")


def test_peft_round_trip_on_gpt2_conv1d(tmp_path):
    import warnings

    from tests.helpers import ids, perturb, tiny_gpt2

    x = ids()
    model = rankwise.adapt(tiny_gpt2(layers=1), rankwise.method_config("vera", rank=4, targets=["c_attn", "c_fc"]))
    perturb(model, std=0.2)
    y = model(x).logits
    rankwise.save_adapter(model, tmp_path, format="peft")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = peft.PeftModel.from_pretrained(tiny_gpt2(layers=1), tmp_path)
    torch.testing.assert_close(pm(x).logits, y, atol=1e-5, rtol=0)
