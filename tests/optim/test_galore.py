import io
import warnings

import pytest
import torch

from rankwise.errors import ConfigError
from rankwise.optim import APOLLO, Fira, GaLoreAdamW
from rankwise.optim.projectors import project
from tests.optim.util import groups, loss_of, mlp, params, train


def test_matches_galore_torch_trajectory_over_refreshes():
    galore_torch = pytest.importorskip("galore_torch")
    ours, ref = mlp(), mlp()
    opt = GaLoreAdamW(groups(ours, rank=4, update_gap=8, scale=0.25), lr=1e-2, weight_decay=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # galore-torch's deprecation chatter
        opt_ref = galore_torch.GaLoreAdamW(groups(ref, rank=4, update_proj_gap=8, scale=0.25, proj_type="std"),
                                           lr=1e-2, weight_decay=0.01)
    worst = 0.0
    for step in range(24):  # refreshes at 0, 8, 16
        for model, o in ((ours, opt), (ref, opt_ref)):
            o.zero_grad()
            loss_of(model, step).backward()
            o.step()
        pairs = zip(ours.parameters(), ref.parameters(), strict=True)
        worst = max(worst, max((a - b).abs().max().item() for a, b in pairs))
    assert worst < 1e-5
    assert opt.state[ours[0].weight]["refreshes"] == 3
    assert opt.state[ours[0].weight]["exp_avg"].shape == (24, 4)  # m×r: right side
    assert opt.state[ours[2].weight]["exp_avg"].shape == (4, 24)  # r×n: left side


CASES = [(GaLoreAdamW, "svd", "keep"), (GaLoreAdamW, "rsvd", "reproject"), (GaLoreAdamW, "dct", "reset"),
         (GaLoreAdamW, "random", "keep"), (Fira, "svd", "reproject"), (APOLLO, "random", "keep")]


@pytest.mark.parametrize("cls,projector,moments", CASES)
def test_resume_from_weights_only_file_is_bit_identical_across_a_refresh(cls, projector, moments):
    kw = dict(rank=3, update_gap=4, projector=projector, moments=moments, lazy_refresh=True, lazy_window=1)
    full = mlp()
    opt = cls(groups(full, **kw), lr=1e-2, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.7)
    train(full, opt, range(10), sched)

    half = mlp()
    opt_a = cls(groups(half, **kw), lr=1e-2, weight_decay=0.01)
    sched_a = torch.optim.lr_scheduler.StepLR(opt_a, step_size=2, gamma=0.7)
    train(half, opt_a, range(3), sched_a)  # stop before the step-4 refresh
    buf = io.BytesIO()
    torch.save({"model": half.state_dict(), "opt": opt_a.state_dict(), "sched": sched_a.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)

    resumed = mlp(seed=5)  # different init: everything must come from the file
    resumed.load_state_dict(saved["model"])
    opt_b = cls(groups(resumed, **kw), lr=1e-2, weight_decay=0.01)
    opt_b.load_state_dict(saved["opt"])
    sched_b = torch.optim.lr_scheduler.StepLR(opt_b, step_size=2, gamma=0.7)
    sched_b.load_state_dict(saved["sched"])
    train(resumed, opt_b, range(3, 10), sched_b)
    for a, b in zip(full.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    assert opt_b.state[resumed[0].weight]["refreshes"] == opt.state[full[0].weight]["refreshes"] >= 2


def test_state_dict_holds_only_plain_tensors_and_numbers():
    model = mlp()
    opt = GaLoreAdamW(groups(model, rank=3, update_gap=2, projector="dct"), lr=1e-2)
    train(model, opt, range(3))

    def plain(v):
        if isinstance(v, dict):
            return all(isinstance(k, str | int) and plain(x) for k, x in v.items())
        if isinstance(v, list | tuple):
            return all(plain(x) for x in v)
        return v is None or isinstance(v, torch.Tensor | int | float | str | bool)

    assert plain(opt.state_dict())
    st = opt.state[model[0].weight]
    assert "proj" not in st and st["proj_idx"].dtype == torch.int64 and st["proj_idx"].shape == (3,)


def _refresh_step(model, opt, step):
    opt.zero_grad()
    loss_of(model, step).backward()
    opt.step()


@pytest.mark.parametrize("layer", [0, 2])
def test_reprojected_moments_follow_the_closed_form(layer):
    model = mlp()
    opt = GaLoreAdamW(groups(model, rank=3, update_gap=3, moments="reproject"), lr=1e-2)
    train(model, opt, range(3))
    p = model[layer].weight
    st = opt.state[p]
    m_old, v_old, b_old = st["exp_avg"].clone(), st["exp_avg_sq"].clone(), opt.basis(p).clone()
    opt.zero_grad()
    loss_of(model, 3).backward()
    grad = p.grad.clone()
    opt.step()  # step 3: refresh, reproject, update
    b_new = opt.basis(p)
    assert not torch.allclose(b_new, b_old)
    side = "right" if layer == 0 else "left"
    low = project(grad, b_new, side)
    if side == "right":
        c = b_old @ b_new.t()
        m_exp, v_exp = m_old @ c, v_old @ (c * c)
    else:
        c = b_old.t() @ b_new
        m_exp, v_exp = c.t() @ m_old, (c * c).t() @ v_old
    torch.testing.assert_close(st["exp_avg"], 0.9 * m_exp + 0.1 * low, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(st["exp_avg_sq"], 0.999 * v_exp + 0.001 * low * low, rtol=1e-5, atol=1e-9)


def test_reset_moments_restart_adam_in_the_new_subspace():
    model = mlp()
    opt = GaLoreAdamW(groups(model, rank=3, update_gap=3, moments="reset"), lr=1e-2)
    train(model, opt, range(3))
    p = model[0].weight
    opt.zero_grad()
    loss_of(model, 3).backward()
    grad = p.grad.clone()
    opt.step()
    st = opt.state[p]
    low = project(grad, opt.basis(p), "right")
    torch.testing.assert_close(st["exp_avg"], 0.1 * low)
    assert st["mstep"] == 1 and st["step"] == 4


def test_lazy_refresh_doubles_the_gap_while_subspaces_agree():
    w = torch.nn.Parameter(torch.zeros(12, 8))
    fixed = torch.randn(12, 8)
    opt = GaLoreAdamW([{"params": [w], "rank": 2, "update_gap": 2, "lazy_refresh": True, "lazy_window": 2}], lr=1e-3)
    refresh_steps = []
    for step in range(20):
        w.grad = fixed.clone()  # same gradient: successive SVD subspaces agree exactly
        before = opt.state[w].get("refreshes", 0)
        opt.step()
        if opt.state[w]["refreshes"] != before:
            refresh_steps.append(step)
    # gap 2: refreshes at 0, 2, 4 → two agreeing similarities → gap 4: 8, 12 → gap 8: 20 (not reached)
    assert refresh_steps == [0, 2, 4, 8, 12]
    assert opt.state[w]["gap"] == 8


def test_lazy_refresh_keeps_the_gap_when_subspaces_change():
    w = torch.nn.Parameter(torch.zeros(12, 8))
    opt = GaLoreAdamW([{"params": [w], "rank": 2, "update_gap": 2, "lazy_refresh": True, "lazy_window": 2,
                        "lazy_threshold": 0.99}], lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(12):
        w.grad = torch.randn(12, 8, generator=g)
        opt.step()
    assert opt.state[w]["gap"] == 2 and opt.state[w]["refreshes"] == 6


def test_svd_runs_in_fp32_for_bfloat16_gradients():
    w = torch.nn.Parameter(torch.randn(10, 6).bfloat16())
    grad = torch.randn(10, 6).bfloat16()
    opt = GaLoreAdamW([{"params": [w], "rank": 2}], lr=1e-3)
    w.grad = grad.clone()
    opt.step()
    basis = opt.basis(w)
    assert basis.dtype == torch.bfloat16 and basis.shape == (2, 6)
    expected = torch.linalg.svd(grad.float(), full_matrices=False)[2][:2]
    torch.testing.assert_close(basis.float().abs(), expected.abs(), atol=1e-2, rtol=0)
    assert opt.state[w]["exp_avg"].dtype == torch.bfloat16


def test_svd_failure_falls_back_to_randomized_svd_and_says_so(monkeypatch):
    w = torch.nn.Parameter(torch.zeros(10, 6))
    opt = GaLoreAdamW([{"params": [w], "rank": 2}], lr=1e-3)

    real_svd = torch.linalg.svd

    calls = []

    def broken_once(a, *args, **kw):  # the exact SVD fails; the randomized SVD's small inner one works
        calls.append(a.shape)
        if len(calls) == 1:
            raise torch.linalg.LinAlgError("linalg.svd: The algorithm failed to converge")
        return real_svd(a, *args, **kw)

    monkeypatch.setattr(torch.linalg, "svd", broken_once)
    u, s, v = torch.randn(10, 2), torch.tensor([3.0, 1.0]), torch.linalg.qr(torch.randn(6, 2))[0]
    w.grad = (u * s) @ v.t()  # rank 2: a randomized SVD recovers its row space exactly
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt.step()
    messages = [str(c.message) for c in caught]
    assert any("falling back to a randomized SVD" in m for m in messages)
    assert not any("failed too" in m for m in messages)
    basis = opt.basis(w)  # 2×6
    torch.testing.assert_close(basis.t() @ basis, v @ v.t(), atol=1e-4, rtol=0)


def test_non_finite_gradient_keeps_the_previous_projection_and_says_so():
    w = torch.nn.Parameter(torch.zeros(10, 6))
    opt = GaLoreAdamW([{"params": [w], "rank": 2, "update_gap": 1}], lr=1e-3)
    w.grad = torch.randn(10, 6)
    opt.step()
    before = opt.basis(w).clone()
    w.grad = torch.full((10, 6), float("nan"))
    with pytest.warns(RuntimeWarning, match="keeping the previous projection"):
        opt.step()
    assert torch.equal(opt.basis(w), before)


def test_bad_options_raise_config_error_naming_the_field():
    w = torch.nn.Parameter(torch.zeros(4, 4))
    with pytest.raises(ConfigError, match="projector"):
        GaLoreAdamW([{"params": [w], "rank": 2, "projector": "qr"}])
    with pytest.raises(ConfigError, match="moments"):
        GaLoreAdamW([{"params": [w], "rank": 2}], moments="drop")
    with pytest.raises(ConfigError, match="rank"):
        GaLoreAdamW([{"params": [w], "rank": 0}])
    with pytest.raises(ConfigError, match="updte_gap"):
        GaLoreAdamW([{"params": [w], "rank": 2}], updte_gap=10)
    with pytest.raises(ConfigError, match="proj_type"):
        GaLoreAdamW([{"params": [w], "rank": 2, "proj_type": "reverse_std"}])


def test_torch_lr_scheduler_drives_the_update_size():
    a, b = mlp(), mlp()
    opt_a = GaLoreAdamW(groups(a, rank=3), lr=1e-2)
    opt_b = GaLoreAdamW(groups(b, rank=3), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt_a, lambda s: 0.0 if s >= 2 else 1.0)
    train(a, opt_a, range(4), sched)
    train(b, opt_b, range(2))
    assert all(torch.equal(x, y) for x, y in zip(params(a), params(b), strict=True))  # lr 0 after step 2: frozen
