import pytest
import torch

from rankwise.errors import ConfigError
from rankwise.optim import Fira, GaLoreAdamW
from tests.optim.util import groups, loss_of, mlp


def lr_lambda(step):
    return 0.5 ** step


@pytest.mark.parametrize("cls", [GaLoreAdamW, Fira])
def test_layerwise_matches_standard_mode_with_a_scheduler(cls):
    std, lw = mlp(), mlp()
    opt_s = cls(groups(std, rank=3, update_gap=3), lr=1e-2, weight_decay=0.01)
    opt_l = cls(groups(lw, rank=3, update_gap=3), lr=1e-2, weight_decay=0.01, layerwise=True)
    sched_s = torch.optim.lr_scheduler.LambdaLR(opt_s, lr_lambda)
    sched_l = torch.optim.lr_scheduler.LambdaLR(opt_l, lr_lambda)
    for step in range(7):  # refreshes at 0, 3, 6
        for model, opt, sched in ((std, opt_s, sched_s), (lw, opt_l, sched_l)):
            opt.zero_grad()
            loss_of(model, step).backward()
            if opt is opt_l:
                assert all(p.grad is None for p in model.parameters())  # freed inside backward
            opt.step()
            sched.step()
    for a, b in zip(std.parameters(), lw.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    # the schedule advanced once per optimizer step, not once per parameter
    assert sched_l.last_epoch == 7
    assert opt_l.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5 ** 7)
    assert opt_l.state[lw[0].weight]["step"] == 7


def test_layerwise_refuses_gradient_accumulation():
    model = mlp()
    GaLoreAdamW(groups(model, rank=3), lr=1e-2, layerwise=True)
    loss_of(model, 0).backward()
    with pytest.raises(ConfigError, match="gradient accumulation"):
        loss_of(model, 1).backward()


def test_remove_hooks_returns_to_standard_mode():
    model = mlp()
    opt = GaLoreAdamW(groups(model, rank=3), lr=1e-2, layerwise=True)
    opt.remove_hooks()
    before = [p.detach().clone() for p in model.parameters()]
    loss_of(model, 0).backward()
    assert all(p.grad is not None for p in model.parameters())
    opt.step()
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
