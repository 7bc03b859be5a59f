"""Generic properties of every structured / random-basis / multiplicative adapter, against plain references.

For each method: forward and gradients equal the dense reference formula (tests/adapters/structured_refs.py),
the trainable-parameter count is the paper's, the adapted model starts at the base model, merge/unmerge keep
the output, the rankwise-format round trip reproduces the output without storing seeded tensors, and a few
training steps reduce the loss.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rankwise
from rankwise.io.files import read_tensors
from tests.adapters.structured_refs import OPTIONS, REFERENCES, trainable_count
from tests.helpers import fit, perturb

METHODS = list(REFERENCES)
RANK = 4


def make_model():
    torch.manual_seed(0)
    # in < out and in > out, so orientation-dependent forms (RandLoRA) are covered both ways
    return nn.Sequential(nn.Linear(24, 40), nn.Tanh(), nn.Linear(40, 16))


def adapt(name, model=None, **kw):
    model = make_model() if model is None else model
    cfg = rankwise.method_config(name, rank=RANK, alpha=8, targets=nn.Linear, options=dict(OPTIONS.get(name, {})), **kw)
    return rankwise.adapt(model, cfg)


def test_every_method_is_catalogued():
    names = {m.name for m in rankwise.methods("adapter")}
    assert set(METHODS) <= names


@pytest.mark.parametrize("name", METHODS)
def test_forward_delta_and_gradients_match_reference(name):
    model = adapt(name)
    perturb(model, std=0.2)
    x = torch.randn(3, 5, 24)
    y = model(x)
    # reference: the same network with dense W0 + ΔW_ref, ΔW_ref from the formula
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    h = x
    for layer in (model[0], model[2]):
        d = layer.rankwise["default"].delta
        w0 = layer.weight
        dw = REFERENCES[name](d, w0)
        torch.testing.assert_close(d.delta_matrix() if name != "hra" else
                                   layer.rankwise["default"].delta_weight(w0), dw, atol=1e-5, rtol=1e-4)
        h = torch.nn.functional.linear(h, w0 + dw, layer.bias)
        if layer is model[0]:
            h = torch.tanh(h)
    torch.testing.assert_close(y, h, atol=1e-5, rtol=1e-4)
    g = torch.randn_like(y)
    grads = torch.autograd.grad((y * g).sum(), list(params.values()))
    ref_grads = torch.autograd.grad((h * g).sum(), list(params.values()))
    for n, a, b in zip(params, grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=lambda m, n=n: f"{name} grad {n}: {m}")


@pytest.mark.parametrize("name", METHODS)
def test_trainable_count_is_the_papers(name):
    model = adapt(name)
    opts = OPTIONS.get(name, {})
    expected = trainable_count(name, 40, 24, RANK, opts) + trainable_count(name, 16, 40, RANK, opts)
    assert sum(p.numel() for p in rankwise.trainable_parameters(model)) == expected


# FourierFT and SVFT start, like their reference code, with small random coefficients (tested in their own files)
@pytest.mark.parametrize("name", [n for n in METHODS if n not in ("fourierft", "svft")])
def test_starts_at_the_base_model(name):
    base = make_model()
    x = torch.randn(4, 24)
    y0 = base(x)
    y1 = adapt(name, base)(x)
    torch.testing.assert_close(y1, y0, atol=1e-6, rtol=1e-6)  # Deep LoRA: ΔW₀ = O(ε³) = O(1e-9)


@pytest.mark.parametrize("name", METHODS)
def test_merge_and_unmerge_keep_the_output(name):
    model = adapt(name)
    perturb(model, std=0.2)
    x = torch.randn(4, 24)
    w_before = model[0].weight.detach().clone()
    y = model(x)
    rankwise.merge(model)
    torch.testing.assert_close(model(x), y, atol=1e-5, rtol=1e-4)
    rankwise.unmerge(model)
    torch.testing.assert_close(model[0].weight, w_before, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(x), y, atol=1e-5, rtol=1e-4)
    merged = rankwise.merge_and_unload(model)
    torch.testing.assert_close(merged(x), y, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", METHODS)
def test_native_round_trip(name, tmp_path):
    model = adapt(name)
    perturb(model, std=0.2)
    x = torch.randn(4, 24)
    y = model(x)
    rankwise.save_adapter(model, tmp_path)
    stored = read_tensors(tmp_path / "adapter.safetensors")
    for key in model[0].rankwise["default"].regenerated_shapes():  # seeded tensors are never stored
        assert not any(k.endswith(key) for k in stored), key
    fresh = rankwise.load_adapter(make_model(), tmp_path)
    torch.testing.assert_close(fresh(x), y, atol=1e-6, rtol=1e-6)
    assert rankwise.adapter_config(fresh).parameterisation == name


@pytest.mark.parametrize("name", METHODS)
def test_a_few_steps_reduce_the_loss(name):
    model = adapt(name)
    teacher = adapt(name)
    perturb(teacher, std=0.3)  # a target the method can express: its own form with moved parameters
    x = torch.randn(32, 24, generator=torch.Generator().manual_seed(1))
    target = teacher(x).detach()
    losses = fit(model, x, target)
    assert losses[-1] < 0.7 * losses[0], losses


FACTORED = ["vera", "nola", "randlora", "svfit", "loldu", "qr-lora", "abba", "deep-lora"]


@pytest.mark.parametrize("name", FACTORED)
def test_factored_forms_adapt_every_layer_kind_and_take_dora(name, toy):
    from tests.helpers import toy_inputs

    tokens, image = toy_inputs()
    cfg = rankwise.method_config(name, rank=2, alpha=4, targets=["embed", "conv", "fc1", "fc2"], dora=True,
                                 options=dict(OPTIONS.get(name, {})))
    y0 = toy(tokens, image)
    rankwise.adapt(toy, cfg)
    torch.testing.assert_close(toy(tokens, image), y0, atol=1e-5, rtol=1e-5)
    perturb(toy, std=0.1)
    y = toy(tokens, image)
    rankwise.merge(toy)
    torch.testing.assert_close(toy(tokens, image), y, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["vera", "svfit", "hra"])
def test_other_inits_are_refused(name):
    with pytest.raises(rankwise.ConfigError, match="sets its own starting point"):
        rankwise.method_config(name, init="pissa")


def test_hra_refuses_dora():
    with pytest.raises(rankwise.ConfigError, match="not an additive update"):
        rankwise.method_config("hra", dora=True)


@pytest.mark.parametrize("name", [n for n in METHODS if n != "fourierft"])  # FourierFT: dense by design, see its doc
def test_training_forward_never_forms_the_dense_update(name, monkeypatch):
    model = adapt(name)
    for cls in {type(layer.rankwise["default"].delta) for layer in (model[0], model[2])}:
        for attr in ("delta_matrix", "rotation", "operators", "core"):
            if hasattr(cls, attr):
                monkeypatch.setattr(cls, attr, lambda *a, **k: pytest.fail("formed the m×n update in forward"))
    model(torch.randn(2, 24)).sum().backward()


@pytest.mark.parametrize("name", ["vera", "svft", "mora", "hra", "fourierft"])  # factored forms share vera's path
def test_gpt2_conv1d_layers(name):
    from tests.helpers import ids, tiny_gpt2

    model = tiny_gpt2(layers=1)
    x = ids()
    zero = {"fourierft": {"fourierft_init_zero": True}, "svft": {"svft_init_zero": True}}.get(name, {})
    opts = {**OPTIONS.get(name, {}), **zero}
    y0 = model(x).logits
    rankwise.adapt(model, rankwise.method_config(name, rank=4, targets=["c_attn", "c_fc"], options=opts))
    torch.testing.assert_close(model(x).logits, y0, atol=1e-5, rtol=1e-5)
    perturb(model, std=0.05)
    y = model(x).logits
    rankwise.merge(model)
    torch.testing.assert_close(model(x).logits, y, atol=1e-4, rtol=1e-4)
