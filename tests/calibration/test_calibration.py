"""The shared calibration pass: statistics against plain-PyTorch references, state restored, errors."""

import copy

import pytest
import torch
from torch import nn

import rankwise
from rankwise.calibration import collect_gradients, collect_inputs
from rankwise.core.geometry import LayerGeometry
from tests.helpers import ToyNet, ids, tiny_llama, toy_inputs


def lm_batches(n=2, batch=2, length=9):
    return [{"input_ids": ids(batch, length).roll(i, 1), "labels": ids(batch, length).roll(i, 1)} for i in range(n)]


def layers_of(model, names):
    mods = dict(model.named_modules())
    return {n: (mods[n], LayerGeometry.of(mods[n])) for n in names}


def test_mean_gradient_matches_plain_autograd():
    model = tiny_llama()
    batches = lm_batches(3)
    names = ["model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj"]
    got = collect_gradients(model, layers_of(model, names), batches)
    ref = copy.deepcopy(model)
    for b in batches:
        ref(**b).loss.backward()
    mods = dict(ref.named_modules())
    for n in names:
        torch.testing.assert_close(got[n], mods[n].weight.grad / 3, atol=1e-6, rtol=1e-5)


def test_conv1d_gradient_is_in_matrix_view():
    from tests.helpers import tiny_gpt2

    model = tiny_gpt2()
    batches = lm_batches(1)
    got = collect_gradients(model, layers_of(model, ["transformer.h.0.attn.c_attn"]), batches)
    ref = copy.deepcopy(model)
    ref(**batches[0]).loss.backward()
    torch.testing.assert_close(got["transformer.h.0.attn.c_attn"], ref.transformer.h[0].attn.c_attn.weight.grad.t())


def test_input_statistics_match_reference_and_shared_inputs_share_one_accumulator():
    model = tiny_llama()
    batches = lm_batches(2)
    batches[1]["attention_mask"] = torch.ones(2, 9, dtype=torch.long)
    batches[1]["attention_mask"][0, 6:] = 0  # padding tokens must not count
    names = ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj", "model.layers.0.mlp.down_proj"]
    stats = collect_inputs(model, layers_of(model, names), batches)
    assert stats[names[0]] is stats[names[1]]  # q and k read the same tensor
    seen = {n: [] for n in names}
    mods = dict(model.named_modules())
    hooks = [mods[n].register_forward_hook(lambda m, a, o, n=n: seen[n].append(a[0].detach())) for n in names]
    with torch.no_grad():
        for b in batches:
            model(**b)
    for h in hooks:
        h.remove()
    for n in (names[0], names[2]):
        x0 = seen[n][0].reshape(-1, seen[n][0].shape[-1])
        x1 = seen[n][1][batches[1]["attention_mask"].bool()]
        x = torch.cat([x0, x1])
        assert stats[n].tokens == x.shape[0] == 18 + 15
        torch.testing.assert_close(stats[n].covariance(), torch.cov(x.t()), atol=1e-5, rtol=1e-4)


def test_normalised_statistics_follow_corda_reference():
    lin = nn.Linear(6, 4)
    x = torch.randn(3, 5, 6)
    stats = collect_inputs(nn.Sequential(lin), {"0": (lin, LayerGeometry.of(lin))}, [x], normalise=True)["0"]
    ref = sum((s / s.max().abs()).t() @ (s / s.max().abs()) for s in x) / 3
    torch.testing.assert_close(stats.covariance(centred=False), ref)


def test_model_state_is_restored_and_no_gradient_left():
    model = tiny_llama().train()
    model.model.layers[0].self_attn.eval()
    model.lm_head.weight.requires_grad_(False)
    model.model.norm.weight.grad = torch.ones_like(model.model.norm.weight)
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    modes = {n: m.training for n, m in model.named_modules()}
    rankwise.adapt(model, rankwise.method_config("lora-ga", rank=2, targets=["q_proj"]), calibration=lm_batches(1))
    after = {n: p.requires_grad for n, p in model.named_parameters() if "rankwise" not in n}
    assert {n: m.training for n, m in model.named_modules() if "rankwise" not in n} == modes
    assert after == {n: False for n in before}  # adapt freezes the base model, as for any init
    torch.testing.assert_close(model.model.norm.weight.grad, torch.ones_like(model.model.norm.weight))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "model.norm.weight")


def test_tuple_batches_and_loss_fn():
    model = ToyNet()
    tokens, image = toy_inputs()
    target = torch.randn(4, 10)
    loss_fn = lambda out, batch: ((out - target) ** 2).mean()  # noqa: E731
    rankwise.adapt(model, rankwise.method_config("lora-one", rank=2, targets=["fc1", "fc2"]),
                   calibration=[(tokens, image)], loss_fn=loss_fn)
    assert model.fc1.rankwise["default"].delta.lora_B.abs().sum() > 0


def test_calibration_batches_option_limits_the_pass():
    model = tiny_llama()
    calls = []
    model.model.layers[0].self_attn.q_proj.register_forward_hook(lambda *a: calls.append(1))
    cfg = rankwise.method_config("eva", rank=2, targets=["q_proj"], options={"calibration_batches": 2})
    rankwise.adapt(model, cfg, calibration=lm_batches(5))
    assert len(calls) == 2


def test_non_calibration_init_ignores_calibration():
    a, b = tiny_llama(), tiny_llama()
    torch.manual_seed(1)
    rankwise.adapt(a, rankwise.LoRAConfig(rank=2), calibration=[object()])
    torch.manual_seed(1)
    rankwise.adapt(b, rankwise.LoRAConfig(rank=2))
    for (na, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(pa, pb), na


@pytest.mark.parametrize("method", ["lora-ga", "eva", "corda-ipm", "lora-sb"])
def test_missing_calibration_names_the_fix(method):
    model = tiny_llama()
    with pytest.raises(rankwise.ConfigError, match="calibration=batches"):
        rankwise.adapt(model, rankwise.method_config(method, rank=2))
    assert not list(rankwise.core.api.hosts(model))


@pytest.mark.parametrize("calibration, match", [
    ([], "empty"),
    (iter([]), "empty"),
    (["not a batch"], "batch 0 is a str"),
    ([{"input_ids": ids(vocab=1000), "labels": ids()}], "model failed on calibration batch 0"),
    ([{"input_ids": ids()}], r"no \.loss"),
    (torch.zeros(2, 3), "iterable of batches"),
])
def test_bad_calibration_raises_before_any_change(calibration, match):
    model = tiny_llama()
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(rankwise.ConfigError, match=match):
        rankwise.adapt(model, rankwise.method_config("lora-ga", rank=2), calibration=calibration)
    assert not list(rankwise.core.api.hosts(model))
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_activation_inits_refuse_embeddings_and_convs():
    model = ToyNet()
    with pytest.raises(rankwise.ConfigError, match="Linear/Conv1D"):
        rankwise.adapt(model, rankwise.method_config("eva", rank=2, targets=["embed", "fc1"]),
                       calibration=[toy_inputs()])


def test_collectors_restore_flags_modes_and_grads_even_when_a_batch_fails():
    model = tiny_llama().train()
    model.lm_head.weight.requires_grad_(False)
    model.model.norm.weight.grad = torch.full_like(model.model.norm.weight, 3.0)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    layers = layers_of(model, ["model.layers.0.self_attn.q_proj"])
    collect_gradients(model, layers, lm_batches(1))
    with pytest.raises(rankwise.ConfigError, match="batch 1"):
        collect_gradients(model, layers, [lm_batches(1)[0], "bad"])
    with pytest.raises(rankwise.ConfigError, match="batch 1"):
        collect_inputs(model, layers, [lm_batches(1)[0], "bad"])
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(m.training for m in model.modules())
    assert torch.equal(model.model.norm.weight.grad, torch.full_like(model.model.norm.weight, 3.0))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "model.norm.weight")
    assert not any(m._forward_hooks for m in model.modules())  # every hook removed
