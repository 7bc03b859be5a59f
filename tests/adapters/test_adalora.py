"""AdaLoRA: formula, PEFT step-for-step equivalence, PEFT files both ways, rankwise files, merge, resume."""

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rankwise
from rankwise.adapters.adalora_schedule import AdaLoRASchedule, adalora_layers
from tests.helpers import ids, perturb, tiny_llama

peft = pytest.importorskip("peft")
warnings.filterwarnings("ignore", category=UserWarning)

OPTS = {"target_r": 2, "tinit": 1, "tfinal": 2, "deltaT": 1}
STEPS = 8


def test_forward_is_the_svd_form_with_peft_scale():
    layer = nn.Linear(10, 7)
    model = nn.Sequential(layer)
    rankwise.adapt(model, rankwise.method_config("adalora", rank=4, alpha=6, targets=nn.Linear))
    perturb(model)
    d = layer.rankwise["default"].delta
    x = torch.randn(3, 10)
    w = layer.weight + 6 / (4 + 1e-5) * d.lora_B @ (d.lora_A * d.lora_E)
    torch.testing.assert_close(model(x), F.linear(x, w, layer.bias), atol=1e-6, rtol=1e-6)
    assert sum(p.numel() for p in rankwise.trainable_parameters(model)) == 4 * (10 + 7) + 4
    expected = model(x)
    rankwise.merge(model)
    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)


def test_default_init_is_peft_init():
    model = nn.Sequential(nn.Linear(10, 7))
    rankwise.adapt(model, rankwise.LoRAConfig(rank=4, parameterisation="adalora", targets=nn.Linear))
    d = model[0].rankwise["default"].delta
    assert torch.all(d.lora_E == 0) and d.lora_A.std() > 0.005 and d.lora_B.std() > 0.005


def _peft_pair():
    """A PEFT AdaLoRA model and a rankwise model loaded from its (initial) PEFT file."""
    base = tiny_llama(layers=1)
    cfg = peft.AdaLoraConfig(init_r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                             total_step=STEPS, tinit=OPTS["tinit"], tfinal=OPTS["tfinal"], target_r=OPTS["target_r"])
    pm = peft.get_peft_model(copy.deepcopy(base), cfg)
    return pm, base


def _rw_step(model, sched, opt, step, x):
    loss = model(input_ids=x, labels=x).loss + sched.loss_term()
    loss.backward()
    sched.before_step(step)
    opt.step()
    sched.after_step(step, opt)
    opt.zero_grad()


def test_training_matches_peft_step_for_step_and_files_round_trip_both_ways(tmp_path):
    pm, base = _peft_pair()
    pm.save_pretrained(tmp_path / "init")
    rw = rankwise.load_adapter(copy.deepcopy(base), tmp_path / "init")
    cfg = rankwise.adapter_config(rw)
    assert cfg.parameterisation == "adalora" and cfg.option("target_r") == 2
    sched = AdaLoRASchedule(rw, cfg, STEPS)
    x = ids()
    opt_p = torch.optim.SGD([p for p in pm.parameters() if p.requires_grad], lr=0.5)
    opt_r = torch.optim.SGD(rankwise.trainable_parameters(rw), lr=0.5)
    for step in range(STEPS):
        # AdaLoraModel.forward adds the orthogonality penalty (PeftModelForCausalLM.forward skips it in PEFT 0.21)
        loss = pm.base_model(input_ids=x, labels=x).loss
        loss.backward()
        opt_p.step()
        pm.base_model.update_and_allocate(step)
        opt_p.zero_grad()
        _rw_step(rw, sched, opt_r, step, x)
    pattern = pm.peft_config["default"].rank_pattern
    for layer, d in adalora_layers(rw):
        assert d.rank_mask.tolist() == pattern[f"{layer}.lora_E.default"], layer
    kept = sum(d.kept_rank for _, d in adalora_layers(rw))
    assert kept == OPTS["target_r"] * len(adalora_layers(rw))
    pm.eval()
    rw.eval()
    with torch.no_grad():
        ref = pm(input_ids=x).logits
        torch.testing.assert_close(rw(input_ids=x).logits, ref, atol=1e-5, rtol=0)
    # PEFT -> rankwise
    pm.save_pretrained(tmp_path / "peft")
    back = rankwise.load_adapter(copy.deepcopy(base), tmp_path / "peft")
    with torch.no_grad():
        torch.testing.assert_close(back(input_ids=x).logits, ref, atol=1e-5, rtol=0)
    # rankwise -> PEFT
    rankwise.save_adapter(rw, tmp_path / "rw", format="peft")
    loaded = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "rw").eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=x).logits, ref, atol=1e-5, rtol=0)


def test_native_round_trip_merge_and_exact_resume(tmp_path):
    torch.manual_seed(0)
    base = tiny_llama(layers=1)
    cfg = rankwise.method_config("adalora", rank=4, targets=["q_proj", "v_proj"], options=OPTS)
    x = ids()

    def run(model, sched, opt, steps):
        for step in steps:
            _rw_step(model, sched, opt, step, x)

    torch.manual_seed(1)
    full = rankwise.adapt(copy.deepcopy(base), cfg)
    s_full = AdaLoRASchedule(full, cfg, STEPS)
    o_full = torch.optim.AdamW(rankwise.trainable_parameters(full), lr=1e-2)
    run(full, s_full, o_full, range(STEPS))

    torch.manual_seed(1)
    part = rankwise.adapt(copy.deepcopy(base), cfg)
    s_part = AdaLoRASchedule(part, cfg, STEPS)
    o_part = torch.optim.AdamW(rankwise.trainable_parameters(part), lr=1e-2)
    run(part, s_part, o_part, range(4))
    rankwise.save_adapter(part, tmp_path / "ckpt")
    state, ostate = copy.deepcopy(s_part.state_dict()), copy.deepcopy(o_part.state_dict())
    resumed = rankwise.load_adapter(copy.deepcopy(base), tmp_path / "ckpt")
    s_res = AdaLoRASchedule(resumed, rankwise.adapter_config(resumed), STEPS)
    s_res.load_state_dict(state)
    o_res = torch.optim.AdamW(rankwise.trainable_parameters(resumed), lr=1e-2)
    o_res.load_state_dict(ostate)
    run(resumed, s_res, o_res, range(4, STEPS))
    for (_, a), (_, b) in zip(adalora_layers(full), adalora_layers(resumed), strict=True):
        assert torch.equal(a.rank_mask, b.rank_mask)
        torch.testing.assert_close(a.lora_E, b.lora_E, atol=1e-6, rtol=0)
    full.eval()
    with torch.no_grad():
        expected = full(input_ids=x).logits
        rankwise.merge(full)
        torch.testing.assert_close(full(input_ids=x).logits, expected, atol=1e-5, rtol=1e-5)


def test_budget_is_cubic_and_bad_schedules_are_refused():
    model = rankwise.adapt(tiny_llama(), rankwise.method_config("adalora", rank=4, targets=["q_proj"],
                                                               options={"target_r": 1, "tinit": 2, "tfinal": 3}))
    s = AdaLoRASchedule(model, rankwise.adapter_config(model), 15)
    b0, bt = 8, 2
    assert s.budget(2) == (b0, False)
    assert s.budget(7)[0] == int((b0 - bt) * (1 - 5 / 10) ** 3 + bt)
    with pytest.raises(rankwise.ConfigError, match="tinit"):
        AdaLoRASchedule(model, rankwise.adapter_config(model), 5)
