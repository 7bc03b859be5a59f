"""Stopping, saving (weights_only) and resuming across restarts / switches / re-SVDs is bit-exact."""

import pytest
import torch

from .common import build, optimizer, roundtrip, train

CASES = {
    "relora": {"restart_every": 2, "prune": "random", "prune_fraction": 0.5},
    "switchlora": {"switch_every": 2, "freeze_steps": 2},
    "sst": {"rank": 3, "sample_every": 2, "restart_every": 3},
    "sltrain": {"refactor_every": 2, "refactor_warmup": 2},
    "low-rank": {"refactor_every": 3},
}
# lost and cola have no schedule state: their resume is the plain model + optimizer round trip


@pytest.mark.parametrize("method", list(CASES))
def test_resume_is_bit_exact(method):
    kw = CASES[method]
    model, schedule = build(method, **kw)
    opt = optimizer(model)
    train(model, schedule, opt, 0, 4)
    reference = {k: v.clone() for k, v in model.state_dict().items()}

    model, schedule = build(method, **kw)
    opt = optimizer(model)
    train(model, schedule, opt, 0, 2)                    # stop right after an event (step 1)
    saved = roundtrip({"model": model.state_dict(), "optim": opt.state_dict(), "schedule": schedule.state_dict()})
    model, schedule = build(method, **kw)                 # a fresh process would do the same
    opt = optimizer(model)
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["optim"])
    schedule.load_state_dict(saved["schedule"])
    train(model, schedule, opt, 2, 4)
    for k, v in model.state_dict().items():
        assert torch.equal(v, reference[k]), k
