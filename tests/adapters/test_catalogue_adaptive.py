"""Every gradient-rule / rank-adaptive catalogue entry runs through the TrainingSchedule contract (with the
method's own optimizer where it has one), and its state survives a weights-only torch.save/torch.load."""

import io

import pytest
import torch
from torch import nn

import rankwise

METHODS = {"adalora": {"rank": 4, "options": {"target_r": 1, "tinit": 1, "tfinal": 1}}, "sora": {"rank": 4},
           "dylora": {"rank": 4}, "lora-pro": {"rank": 4}, "altlora": {"rank": 4}, "allora": {"rank": 4},
           "lift": {"rank": 1, "refresh_every": 2}}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_trains_through_its_schedule_and_state_is_weights_only(name):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
    method = rankwise.get_method(name)
    cfg = rankwise.method_config(name, targets=nn.Linear, **METHODS[name])
    if method.apply is not None:  # LIFT is not applied by adapt: its schedule adds the sparse deltas
        method.apply(net, cfg)
    else:
        rankwise.adapt(net, cfg)
    sched = method.schedule(net, cfg, 6)
    assert isinstance(sched, rankwise.TrainingSchedule)
    # methods whose update rule is an optimizer (LoRA-Pro's AdamW, AltLoRA's momentum) hand it out through the hook
    opt = (method.optimizer(net, cfg, sched, lr=1e-2) if method.optimizer is not None
           else torch.optim.Adam(rankwise.trainable_parameters(net), lr=1e-2))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 8, generator=g)
    y = torch.sin(x[:, :4])
    losses = []
    for step in range(6):
        loss = ((net(x) - y) ** 2).mean()
        losses.append(loss.item())
        (loss + sched.loss_term()).backward()
        sched.before_step(step)
        opt.step()
        sched.after_step(step, opt)
        opt.zero_grad()
    assert losses[-1] < losses[0]
    buf = io.BytesIO()
    torch.save({"schedule": sched.state_dict(), "optimizer": opt.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    sched.load_state_dict(state["schedule"])
    opt.load_state_dict(state["optimizer"])
