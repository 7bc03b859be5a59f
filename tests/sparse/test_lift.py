"""LIFT: principal-weight masks against a plain SVD; the sparse delta against its dense reference and against
torch AdamW on W's masked entries across refreshes; no dense weight gradient; refresh, save/load, resume,
modules_to_save, merge_and_unload and refusals."""

import copy
import io
import json

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import rankwise
from rankwise.core.geometry import LayerGeometry
from rankwise.sparse import LIFTConfig, lift, load_lift, principal_mask_indices, save_lift
from rankwise.sparse.lift import DELTA_ATTR, remap_entries

LR, EPS = 2e-2, 1e-4  # an ε large enough that its place in the formula shows


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


def _loop(net, sched, opt, steps, start=0):
    x, y = _data()
    for step in range(start, start + steps):
        ((net(x) - y) ** 2).mean().backward()
        sched.before_step(step)
        opt.step()
        sched.after_step(step, opt)
        opt.zero_grad()


def _lifted(wd=0.0, **cfg):
    net = Net()
    sched = lift(net, LIFTConfig(**{**CFG, **cfg}))
    return net, sched, torch.optim.AdamW(rankwise.trainable_parameters(net), lr=LR, eps=EPS, weight_decay=wd)


def _effective(net, sched):
    """W + S of every target layer, (m, n) matrix views, from the dense reference form of S."""
    out = []
    for layer in sched.layers:
        geo = LayerGeometry.of(layer.module)
        out.append(geo.matrix(layer.weight.detach()) + layer.delta.dense().detach())
    return out


class _DenseReference:
    """The plain path: torch AdamW on the whole target weights, gradients zeroed outside the mask, moments
    zeroed outside the new mask at each refresh, masks recomputed from W by principal_mask_indices."""

    def __init__(self, net, every):
        self.net, self.every = net, every
        self.layers = [(net.fc, LayerGeometry.of(net.fc)), (net.proj, LayerGeometry.of(net.proj))]
        for p in net.parameters():
            p.requires_grad_(False)
        for m in (net.fc, net.proj):
            m.weight.requires_grad_(True)
        for p in net.head.parameters():
            p.requires_grad_(True)
        self.masks = [self._mask(m, g) for m, g in self.layers]
        self.opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=LR, eps=EPS,
                                     weight_decay=0.0)

    @staticmethod
    def _mask(module, geo):
        idx = principal_mask_indices(geo.matrix(module.weight), 2, geo.out_features + geo.in_features)
        mask = torch.zeros(geo.out_features * geo.in_features, dtype=torch.bool)
        mask[idx] = True
        return idx, geo.to_weight(mask.view(geo.out_features, geo.in_features))

    def run(self, steps, start):
        x, y = _data()
        for step in range(start, start + steps):
            ((self.net(x) - y) ** 2).mean().backward()
            for (m, _), (_, mask) in zip(self.layers, self.masks, strict=True):
                m.weight.grad.mul_(mask)
            self.opt.step()
            self.opt.zero_grad()
            if (step + 1) % self.every == 0:
                self.masks = [self._mask(m, g) for m, g in self.layers]
                for (m, _), (_, mask) in zip(self.layers, self.masks, strict=True):
                    for v in self.opt.state[m.weight].values():
                        if v.shape == m.weight.shape:
                            v.mul_(mask)


def test_mask_is_top_entries_of_the_rank_k_approximation():
    w = torch.randn(9, 7, generator=torch.Generator().manual_seed(1))
    u, s, vh = torch.linalg.svd(w)
    wk = u[:, :3] @ torch.diag(s[:3]) @ vh[:3]
    expected = set(wk.abs().flatten().argsort(descending=True)[:10].tolist())
    assert set(principal_mask_indices(w, 3, 10).tolist()) == expected


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_and_reference_paths_agree_on_linear_and_conv1d(dtype):
    net = Net().to(dtype)
    sched = lift(net, LIFTConfig(**CFG))
    g = torch.Generator().manual_seed(3)
    for layer in sched.layers:  # nonzero deltas
        layer.values.data.copy_(torch.randn(layer.values.shape, generator=g, dtype=dtype))
    x = torch.randn(3, 5, 12, generator=g, dtype=dtype)  # a leading batch and sequence dimension
    results = []
    for reference in (False, True):
        for layer in sched.layers:
            layer.delta.reference = reference
        xi = x.clone().requires_grad_(True)
        out = net(xi)
        out.pow(2).sum().backward()
        results.append((out.detach(), xi.grad, [layer.values.grad.clone() for layer in sched.layers]))
        net.zero_grad()
    (a, ax, av), (b, bx, bv) = results
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(a, b, **tol)
    torch.testing.assert_close(ax, bx, **tol)
    for p, q in zip(av, bv, strict=True):
        torch.testing.assert_close(p, q, **tol)
    # and both are the layer with W + S in place of W
    plain = Net().to(dtype)
    with torch.no_grad():
        for layer, (name, geo) in zip(sched.layers, [("fc", LayerGeometry.of(plain.fc)),
                                                     ("proj", LayerGeometry.of(plain.proj))], strict=True):
            geo.matrix(getattr(plain, name).weight).add_(layer.delta.dense())
        torch.testing.assert_close(plain(x), a, **tol)


def test_half_precision_weights_get_fp32_values_and_keep_the_output_dtype():
    net = Net().to(torch.bfloat16)
    sched = lift(net, LIFTConfig(**CFG))
    assert all(layer.values.dtype == torch.float32 for layer in sched.layers)
    x, y = _data()
    x = x.bfloat16()
    opt = torch.optim.AdamW(rankwise.trainable_parameters(net), lr=LR)
    losses = []
    for step in range(6):  # across a refresh after step 3: S folded into the bf16 W
        loss = ((net(x).float() - y) ** 2).mean()
        losses.append(loss.item())
        loss.backward()
        assert all(layer.weight.grad is None and layer.values.grad.dtype == torch.float32 for layer in sched.layers)
        opt.step()
        sched.after_step(step, opt)
        opt.zero_grad()
    assert net(x).dtype == torch.bfloat16 and losses[-1] < losses[0]


class _DenseOutputs(TorchDispatchMode):
    """Records the shapes of dense (strided) op outputs that do not alias an existing weight."""

    def __init__(self, weights):
        super().__init__()
        self.storages = {w.untyped_storage().data_ptr() for w in weights}
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.layout == torch.strided and \
                    t.untyped_storage().data_ptr() not in self.storages:
                self.shapes.append(tuple(t.shape))
        return out


@pytest.mark.parametrize("reference", [False, True])
def test_no_target_weight_gradient_and_no_dense_matrix_in_a_step(reference):
    net, sched, opt = _lifted()
    for layer in sched.layers:
        layer.delta.reference = reference
    weights = [layer.weight for layer in sched.layers]
    dense = {(16, 12), (12, 16), (10, 16), (16, 10)}  # fc's and proj's m×n in either layout
    x, y = _data()
    with _DenseOutputs(weights) as seen:
        ((net(x) - y) ** 2).mean().backward()
        opt.step()
    opt.zero_grad()
    if reference:  # the check sees a dense S when one is formed
        assert dense & set(seen.shapes)
        return
    assert not dense & set(seen.shapes), sorted(dense & set(seen.shapes))
    assert all(not w.requires_grad and w.grad is None for w in weights)
    _loop(net, sched, opt, 5, start=1)  # past a refresh
    k = 0
    for layer in sched.layers:
        st = opt.state[layer.values]
        assert st["exp_avg"].shape == st["exp_avg_sq"].shape == (layer.idx.numel(),) == (sum(layer.weight.shape),)
        assert st["exp_avg"].dtype == torch.float32
        k += layer.idx.numel()
    head = sum(p.numel() for p in net.head.parameters())
    moments = sum(v.numel() * v.element_size() for st in opt.state.values() for key, v in st.items() if key != "step")
    assert moments == 2 * 4 * (k + head)
    assert sched.trainable_count() == k + head == sum(p.numel() for p in rankwise.trainable_parameters(net))


def test_matches_torch_adamw_on_the_masked_dense_weights_across_refreshes():
    ref = _DenseReference(Net(), every=4)
    net, sched, opt = _lifted()
    first = [layer.idx.clone() for layer in sched.layers]
    for start in range(0, 13, 4):  # refreshes after steps 3, 7, 11
        steps = 4 if start < 12 else 1
        ref.run(steps, start)
        _loop(net, sched, opt, steps, start)
        for layer, (m, _), (idx, _) in zip(sched.layers, ref.layers, ref.masks, strict=True):
            assert torch.equal(layer.idx, idx)
            geo = LayerGeometry.of(m)
            for key in ("exp_avg", "exp_avg_sq"):  # the (K,) moments are the dense ones at the mask
                dense = geo.matrix(ref.opt.state[m.weight][key]).reshape(-1)[idx]
                torch.testing.assert_close(opt.state[layer.values][key], dense, atol=1e-7, rtol=1e-5)
    for got, (m, geo) in zip(_effective(net, sched), ref.layers, strict=True):
        torch.testing.assert_close(got, geo.matrix(m.weight.detach()), atol=1e-6, rtol=1e-6)
    for p, q in zip(net.head.parameters(), ref.net.head.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-6)
    # the masks moved and kept part of themselves: both branches of the moment remap ran
    for old, layer in zip(first, sched.layers, strict=True):
        kept = torch.isin(layer.idx, old).sum().item()
        assert 0 < kept < layer.idx.numel()


def test_only_entries_ever_masked_move_loss_drops_with_weight_decay_and_save_load(tmp_path):
    base = Net()
    net, sched, opt = _lifted(wd=0.1)  # decoupled decay acts on the delta's values
    x, y = _data()
    start = ((net(x) - y) ** 2).mean().item()
    _loop(net, sched, opt, 12)
    assert ((net(x) - y) ** 2).mean().item() < 0.9 * start
    for layer, w_eff, m in zip(sched.layers, _effective(net, sched), (base.fc, base.proj), strict=True):
        moved = (w_eff != LayerGeometry.of(m).matrix(m.weight.detach())).reshape(-1).nonzero().view(-1)
        assert moved.numel() and set(moved.tolist()) <= set(layer.touched.tolist())
        assert layer.touched.numel() > layer.idx.numel()  # the refreshes brought in new entries
    save_lift(sched, tmp_path)
    fresh = load_lift(Net(), tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), net(x), atol=1e-6, rtol=1e-6)
    assert json.loads((tmp_path / "lift.json").read_text())["config"]["modules_to_save"] == ["head"]
    torch.testing.assert_close(fresh.head.weight, net.head.weight, atol=0, rtol=0)


def test_refresh_folds_s_into_w_and_keeps_moments_only_on_the_overlap():
    net, sched, opt = _lifted(refresh_every=0)
    _loop(net, sched, opt, 3)
    x, _ = _data()
    with torch.no_grad():
        before = net(x)
    olds = [(layer.idx.clone(), {k: opt.state[layer.values][k].clone() for k in ("exp_avg", "exp_avg_sq")})
            for layer in sched.layers]
    sched.refresh(opt)
    with torch.no_grad():
        torch.testing.assert_close(net(x), before, atol=1e-6, rtol=1e-6)  # folding S into W keeps the function
    for layer, (old, moments) in zip(sched.layers, olds, strict=True):
        assert torch.all(layer.values == 0)
        assert not torch.equal(layer.idx, old)
        for key, v in moments.items():
            for j, i in enumerate(layer.idx.tolist()):
                hit = (old == i).nonzero()
                want = v[hit.item()] if hit.numel() else torch.tensor(0.0)
                assert opt.state[layer.values][key][j] == want


def test_remap_keeps_shared_entries_and_zeroes_new_ones():
    old, new = torch.tensor([1, 4, 7, 9]), torch.tensor([0, 4, 8, 9])
    values = torch.tensor([10.0, 40.0, 70.0, 90.0])
    assert remap_entries(values, old, new).tolist() == [0.0, 40.0, 0.0, 90.0]


def test_resume_across_a_refresh_is_bit_exact():
    net, sched, opt = _lifted(wd=0.05)
    _loop(net, sched, opt, 6)  # refresh after step 3
    buf = io.BytesIO()
    torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
    _loop(net, sched, opt, 7, start=6)  # refreshes after steps 7 and 11
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    net2, sched2, opt2 = _lifted(wd=0.05)
    net2.load_state_dict(saved["model"])  # W, the values and their masks
    opt2.load_state_dict(saved["opt"])
    sched2.load_state_dict(saved["sched"])
    _loop(net2, sched2, opt2, 7, start=6)
    for (n, p), q in zip(net.state_dict().items(), net2.state_dict().values(), strict=True):
        assert torch.equal(p, q), n
    trained = [(p, q) for p, q in zip(net.parameters(), net2.parameters(), strict=True) if p.requires_grad]
    assert len(trained) == 4  # fc's and proj's values, head weight and bias
    for p, q in trained:
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt.state[p][key], opt2.state[q][key])


def test_merge_and_unload_leaves_a_plain_model_with_the_same_outputs(tmp_path):
    net, sched, opt = _lifted()
    _loop(net, sched, opt, 6)
    x, _ = _data()
    with torch.no_grad():
        before = net(x)
    save_lift(sched, tmp_path / "a")
    sched.merge_and_unload()
    assert set(net.state_dict()) == set(Net().state_dict())
    assert not net.fc._forward_hooks and not net.proj._forward_hooks
    with torch.no_grad():
        torch.testing.assert_close(net(x), before, atol=1e-6, rtol=1e-6)
    save_lift(sched, tmp_path / "b")  # the same update, now read from W alone
    with torch.no_grad():
        torch.testing.assert_close(load_lift(Net(), tmp_path / "b")(x), before, atol=1e-6, rtol=1e-6)
    with pytest.raises(rankwise.ConfigError, match="merged and unloaded"):
        sched.refresh(opt)


def test_deepcopy_keeps_the_delta_working():
    net, sched, opt = _lifted()
    _loop(net, sched, opt, 2)
    x, _ = _data()
    twin = copy.deepcopy(net)
    with torch.no_grad():
        assert torch.equal(twin(x), net(x))
        twin.fc.rankwise_lift.values.zero_()
        assert not torch.equal(twin(x), net(x))  # the copy's hook reads the copy's values


def test_load_refuses_a_model_whose_saved_module_differs_and_changes_nothing(tmp_path):
    net, sched, opt = _lifted()
    _loop(net, sched, opt, 2)
    save_lift(sched, tmp_path)
    other = Net()
    other.head = nn.Linear(10, 3)  # same targets, another head
    before = copy.deepcopy(other.state_dict())
    with pytest.raises(rankwise.AdapterFileError, match=r"'head\.(weight|bias)' has shape"):
        load_lift(other, tmp_path)
    for k, v in other.state_dict().items():
        assert torch.equal(v, before[k]), k


def _unchanged(net, before):
    assert all(p.requires_grad for p in net.parameters())
    assert not any(DELTA_ATTR in m._modules or m._forward_hooks for m in net.modules())
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_misuse_is_refused_before_any_change():
    net = Net()
    before = copy.deepcopy(net.state_dict())
    with pytest.raises(rankwise.TargetError, match="modules_to_save and also adapted"):
        lift(net, LIFTConfig(rank=1, targets=["fc", "head"], modules_to_save=["head"]))
    _unchanged(net, before)
    emb = nn.Sequential(nn.Embedding(10, 12), nn.Linear(12, 4))
    with pytest.raises(rankwise.TargetError, match="Embedding"):
        lift(emb, LIFTConfig(rank=1, targets=["0", "1"]))
    _unchanged(emb, copy.deepcopy(emb.state_dict()))
    tied = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    tied[1].weight = tied[0].weight
    before = copy.deepcopy(tied.state_dict())
    with pytest.raises(rankwise.ConfigError, match="tied"):
        lift(tied, LIFTConfig(rank=1, targets=["1"]))
    _unchanged(tied, before)
    lift(net, LIFTConfig(**CFG))
    with pytest.raises(rankwise.ConfigError, match="already carries a LIFT delta"):
        lift(net, LIFTConfig(**CFG))
    with pytest.raises(rankwise.ConfigError, match="modules_to_save"):
        LIFTConfig(modules_to_save=[""])
