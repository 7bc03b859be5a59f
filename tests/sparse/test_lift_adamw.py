"""LIFTAdamW: (K,) moments that follow torch.optim.AdamW on the masked dense path across refreshes; state size;
fast and reference paths; bit-exact resume across a refresh; misuse refused."""

import io

import pytest
import torch
from torch import nn

import rankwise
from rankwise.sparse import LIFTAdamW, LIFTConfig, lift
from rankwise.sparse.lift import storage_indices
from rankwise.sparse.lift_adamw import remap_entries

LR, WD, EPS = 2e-2, 0.1, 1e-4  # an ε large enough that its place in the formula shows


class Conv1D(nn.Module):
    """Hugging Face's Conv1D layout (weight stored (in, out), y = x·W + b): its matrix view is the transpose."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(0.3 * torch.randn(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return x @ self.weight + self.bias


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(12, 16)
        self.proj = Conv1D(10, 16)
        self.head = nn.Linear(10, 4)

    def forward(self, x):
        return self.head(torch.tanh(self.proj(torch.tanh(self.fc(x)))))


CFG = dict(rank=1, approx_rank=2, refresh_every=4, targets=["fc", "proj"], modules_to_save=["head"])


def _data():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(64, 12, generator=g)
    return x, torch.sin(x[:, :4] * 2)


def _loop(net, sched, opt, steps, start=0, decay_masked=0.0):
    """The schedule contract; ``decay_masked``: the plain reference of LIFTAdamW's decay (masked entries only)."""
    x, y = _data()
    for step in range(start, start + steps):
        ((net(x) - y) ** 2).mean().backward()
        sched.before_step(step)
        if decay_masked:
            with torch.no_grad():
                for layer in sched.layers:
                    flat = layer.weight.view(-1)
                    flat[layer.flat] *= 1.0 - LR * decay_masked
        opt.step()
        sched.after_step(step, opt)
        opt.zero_grad()


def _sparse(foreach=True, wd=WD):
    net = Net()
    sched = lift(net, LIFTConfig(**CFG))
    return net, sched, LIFTAdamW(rankwise.trainable_parameters(net), sched, lr=LR, eps=EPS, weight_decay=wd,
                                  foreach=foreach)


@pytest.mark.parametrize("foreach", [True, False])
def test_matches_torch_adamw_on_the_masked_dense_path_across_refreshes(foreach):
    dense = Net()
    dsched = lift(dense, LIFTConfig(**CFG))
    # reference: torch.optim.AdamW on dense W with masked gradients; decay applied by hand to the masked entries
    dopt = torch.optim.AdamW([{"params": [layer.weight for layer in dsched.layers], "weight_decay": 0.0},
                              {"params": list(dsched.saved.values()), "weight_decay": WD}], lr=LR, eps=EPS)
    net, sched, opt = _sparse(foreach)
    masks = [layer.idx.clone() for layer in sched.layers]
    for start in range(0, 13, 4):  # refreshes after steps 3, 7, 11
        _loop(dense, dsched, dopt, 4 if start < 12 else 1, start, decay_masked=WD)
        _loop(net, sched, opt, 4 if start < 12 else 1, start)
        for a, b in zip(sched.layers, dsched.layers, strict=True):
            assert torch.equal(a.idx, b.idx)
            for key in ("exp_avg", "exp_avg_sq"):  # the (K,) moments are the dense ones at the mask
                torch.testing.assert_close(opt.state[a.weight][key],
                                           dopt.state[b.weight][key].view(-1)[b.flat], atol=1e-7, rtol=1e-5)
    for (name, p), q in zip(net.named_parameters(), dense.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-6, msg=name)
    # the masks moved, and kept part of themselves: both branches of the remap ran
    for old, layer in zip(masks, sched.layers, strict=True):
        kept = torch.isin(layer.idx, old).sum().item()
        assert 0 < kept < layer.idx.numel()
    # only entries that were ever in a mask moved
    base = Net()
    for layer, w0 in zip(sched.layers, (base.fc.weight, base.proj.weight), strict=True):
        moved = (layer.weight.detach() != w0.detach()).view(-1).nonzero().view(-1)
        ever = storage_indices(sched._geometries[layer.name], layer.touched)
        assert moved.numel() and set(moved.tolist()) <= set(ever.tolist())


def test_fast_and_reference_paths_agree():
    a, sa, oa = _sparse(foreach=True)
    b, sb, ob = _sparse(foreach=False)
    _loop(a, sa, oa, 9)
    _loop(b, sb, ob, 9)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-6)


def test_state_is_two_k_floats_per_target_weight():
    net, sched, opt = _sparse()
    _loop(net, sched, opt, 5)  # past a refresh
    for layer in sched.layers:
        st = opt.state[layer.weight]
        assert st["exp_avg"].shape == st["exp_avg_sq"].shape == (layer.idx.numel(),) == (sum(layer.weight.shape),)
        assert st["exp_avg"].dtype == torch.float32 and isinstance(st["step"], int) and st["step"] == 5
    k = sum(layer.idx.numel() for layer in sched.layers)
    head = sum(p.numel() for p in net.head.parameters())
    assert rankwise.optim.state_bytes(opt) == 2 * 4 * (k + head)
    assert sched.trainable_count() == k + head


def test_resume_across_a_refresh_is_bit_exact():
    net, sched, opt = _sparse()
    _loop(net, sched, opt, 6)  # refresh after step 3
    buf = io.BytesIO()
    torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
    _loop(net, sched, opt, 7, start=6)  # refreshes after steps 7 and 11
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    net2, sched2, opt2 = _sparse()
    net2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])  # the training loop's order: optimizer, then schedule
    sched2.load_state_dict(saved["sched"])
    _loop(net2, sched2, opt2, 7, start=6)
    for p, q in zip(net.parameters(), net2.parameters(), strict=True):
        assert torch.equal(p, q)
    trained = [(p, q) for p, q in zip(net.parameters(), net2.parameters(), strict=True) if p.requires_grad]
    assert len(trained) == 4  # fc and proj weights (sparse state), head weight and bias (dense)
    for p, q in trained:
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(torch.as_tensor(opt.state[p][key]), torch.as_tensor(opt2.state[q][key]))


def test_remap_keeps_shared_entries_and_zeroes_new_ones():
    old, new = torch.tensor([1, 4, 7, 9]), torch.tensor([0, 4, 8, 9])
    values = torch.tensor([10.0, 40.0, 70.0, 90.0])
    assert remap_entries(values, old, new).tolist() == [0.0, 40.0, 0.0, 90.0]


def test_misuse_is_refused_before_anything_moves():
    net, sched, opt = _sparse()
    _loop(net, sched, opt, 1)
    sched.refresh()  # without the optimizer: its moments no longer match the masks
    before = [p.detach().clone() for p in net.parameters()]
    with pytest.raises(rankwise.ConfigError, match="refreshed without this optimizer"):
        _loop(net, sched, opt, 1, start=1)
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before, strict=True))
    with pytest.raises(rankwise.ConfigError, match="not among the optimizer's params"):
        LIFTAdamW(list(net.head.parameters()), sched, lr=LR)
    other_net, other_sched, _ = _sparse()
    with pytest.raises(rankwise.ConfigError, match="another LIFTSchedule"):
        _loop(other_net, other_sched, LIFTAdamW(rankwise.trainable_parameters(net), sched, lr=LR), 1)
