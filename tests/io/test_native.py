"""rankwise format: round trips, atomic writes, and every kind of bad file."""

import copy
import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import rankwise
from tests.helpers import ToyNet, ids, perturb, tiny_llama, toy_inputs


@pytest.mark.parametrize("init", ["default", "pissa", "olora"])
@pytest.mark.parametrize("dora", [False, True])
def test_round_trip_restores_outputs_on_every_layer_type(tmp_path, init, dora):
    base = ToyNet().eval()
    model = copy.deepcopy(base)
    cfg = rankwise.LoRAConfig(rank=2, alpha=3, targets=[nn.Embedding, nn.Conv2d, nn.Linear], init=init, dora=dora,
                              rank_pattern={"fc1": 3})
    rankwise.adapt(model, cfg)
    perturb(model)
    x = toy_inputs()
    out = model(*x)
    rankwise.save_adapter(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter.json", "adapter.safetensors"]
    loaded = rankwise.load_adapter(copy.deepcopy(base), tmp_path)
    torch.testing.assert_close(loaded(*x), out, atol=1e-6, rtol=0)
    assert rankwise.adapter_config(loaded) == cfg
    # training resumes from the same place: same trainable tensors, same base
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys() and all(torch.allclose(sd[k], sd2[k], atol=1e-6) for k in sd)


def test_metadata_records_version_and_shapes(tmp_path):
    model = tiny_llama()
    rankwise.adapt(model, rankwise.LoRAConfig(rank=4, targets=["q_proj"]))
    rankwise.save_adapter(model, tmp_path)
    meta = json.loads((tmp_path / "adapter.json").read_text())
    assert meta["rankwise_version"] == rankwise.__version__
    assert meta["layers"]["model.layers.0.self_attn.q_proj"]["weight_shape"] == [32, 32]
    assert meta["config"]["targets"] == ["q_proj"]


@pytest.fixture
def saved(tmp_path):
    model = tiny_llama()
    rankwise.adapt(model, rankwise.LoRAConfig(rank=4, targets=["q_proj", "v_proj"], dora=True))
    perturb(model)
    rankwise.save_adapter(model, tmp_path)
    return tmp_path


def assert_untouched(model, state):
    assert not rankwise.adapter_names(model)
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert all(p.requires_grad for p in model.parameters())


def load_fails(folder, match, model=None):
    model = model or tiny_llama()
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(rankwise.AdapterFileError, match=match):
        rankwise.load_adapter(model, folder)
    assert_untouched(model, state)


def test_truncated_tensor_file(saved):
    data = (saved / "adapter.safetensors").read_bytes()
    (saved / "adapter.safetensors").write_bytes(data[: len(data) // 2])
    load_fails(saved, "adapter.safetensors.*corrupt or truncated")


def test_garbage_tensor_file(saved):
    (saved / "adapter.safetensors").write_bytes(b"\x00\x01not a safetensors file")
    load_fails(saved, "adapter.safetensors")


def test_corrupt_json(saved):
    (saved / "adapter.json").write_text('{"format": "rankwise.adapter", ')
    load_fails(saved, "adapter.json is not valid JSON")


def test_missing_key(saved):
    tensors = load_file(saved / "adapter.safetensors")
    key = "model.layers.1.self_attn.v_proj.wrapper.magnitude"
    del tensors[key]
    save_file(tensors, saved / "adapter.safetensors")
    load_fails(saved, r"layer 'model.layers.1.self_attn.v_proj' is missing tensors \['wrapper.magnitude'\]")


def test_nan_tensor(saved):
    tensors = load_file(saved / "adapter.safetensors")
    tensors["model.layers.0.self_attn.q_proj.delta.lora_B"][0, 0] = float("nan")
    save_file(tensors, saved / "adapter.safetensors")
    load_fails(saved, "lora_B.*NaN")


def test_shape_mismatch_names_layer(saved):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=48, intermediate_size=48, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2)
    load_fails(saved, r"layer 'model.layers.0.self_attn.q_proj' was saved for a weight of shape \(32, 32\)",
               transformers.LlamaForCausalLM(cfg))


def test_missing_layer_in_model(saved):
    load_fails(saved, "model.layers.1.self_attn.q_proj' does not exist", tiny_llama(layers=1))


def test_not_a_folder(tmp_path):
    with pytest.raises(rankwise.AdapterFileError, match="neither"):
        rankwise.load_adapter(tiny_llama(), tmp_path)
    with pytest.raises(rankwise.AdapterFileError, match="not a folder"):
        rankwise.load_adapter(tiny_llama(), tmp_path / "nope")


def test_loading_twice_under_one_name_is_refused(saved):
    model = rankwise.load_adapter(tiny_llama(), saved)
    with pytest.raises(rankwise.AdapterStateError, match="already has an adapter named 'default'"):
        rankwise.load_adapter(model, saved)
    rankwise.load_adapter(model, saved, name="second")
    assert rankwise.adapter_names(model) == ["default", "second"]


def test_write_is_atomic_on_failure(tmp_path, monkeypatch):
    model = tiny_llama()
    rankwise.adapt(model, rankwise.LoRAConfig(rank=4, targets=["q_proj"]))
    rankwise.save_adapter(model, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    perturb(model)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        rankwise.save_adapter(model, tmp_path)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before  # old files intact, no temp files left


def test_no_unpickling_bin_is_weights_only(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8}))
    (tmp_path / "adapter_model.bin").write_bytes(pickle.dumps({"x": Evil()}))
    load_fails(tmp_path, "weights-only")


def test_model_still_trains_after_load(saved):
    model = rankwise.load_adapter(tiny_llama(), saved)
    params = rankwise.trainable_parameters(model)
    assert params
    x = ids()
    model(x, labels=x).loss.backward()
    assert all(p.grad is not None for p in params)


def test_bad_adapter_name_is_named_before_reading(saved):
    model = tiny_llama()
    with pytest.raises(rankwise.ConfigError, match="adapter name 'a.b'"):
        rankwise.load_adapter(model, saved, name="a.b")
    assert not rankwise.adapter_names(model)
