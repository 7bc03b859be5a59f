"""EVA: PCA of layer inputs against references, rank redistribution, rank-0 layers left alone, PEFT interop."""

import copy
import warnings
from types import SimpleNamespace

import pytest
import torch

import rankwise
from rankwise.calibration import collect_inputs
from rankwise.core.geometry import LayerGeometry
from rankwise.init.eva import pca, redistribute
from tests.helpers import ids, tiny_llama


def lm_batches(n=3):
    return [{"input_ids": ids(4, 16).roll(i, 1)} for i in range(n)]


def test_pca_matches_sklearn_and_peft_incremental_pca():
    sklearn = pytest.importorskip("sklearn.decomposition")
    from peft.utils.incremental_pca import IncrementalPCA

    torch.manual_seed(0)
    lin = torch.nn.Linear(12, 3)
    scales = torch.logspace(0, -2, 12)
    xs = [torch.randn(2, 40, 12) * scales for _ in range(3)]
    stats = collect_inputs(torch.nn.Sequential(lin), {"0": (lin, LayerGeometry.of(lin))}, xs)["0"]
    comps, ratio, sv = pca(stats)
    data = torch.cat([x.reshape(-1, 12) for x in xs]).double()
    ref = sklearn.PCA().fit(data.numpy())
    torch.testing.assert_close(ratio, torch.tensor(ref.explained_variance_ratio_, dtype=torch.float32),
                               atol=1e-5, rtol=1e-4)
    dots = (comps.double() * torch.tensor(ref.components_)).sum(1).abs()  # unit vectors, up to sign
    torch.testing.assert_close(dots[:6], torch.ones(6, dtype=torch.float64), atol=1e-4, rtol=0)
    ipca = IncrementalPCA(n_components=12)  # untruncated, PEFT's incremental PCA is exact: the same numbers
    for x in xs:
        ipca.partial_fit(x.reshape(-1, 12).double())
    torch.testing.assert_close(ratio.double(), ipca.explained_variance_ratio_, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(sv.double(), ipca.singular_values_, atol=1e-4, rtol=1e-4)


class FakeStats:
    def __init__(self, ratios):
        lam = torch.tensor(ratios, dtype=torch.float64)
        self.cov = torch.diag(lam)
        self.tokens = 10

    def covariance(self, centred=True):
        return self.cov


def test_redistribution_takes_the_largest_ratios_globally():
    plans = [SimpleNamespace(name=n, rank=2, alpha=4.0, geometry=SimpleNamespace(max_rank=6)) for n in "abc"]
    stats = {"a": FakeStats([5, 4, 3, 2, 1, 0.0]), "b": FakeStats([9, 0.5, 0.4, 0.3, 0.2, 0.1]),
             "c": FakeStats([1, 1, 1, 1, 1, 1.0])}
    cfg = rankwise.LoRAConfig(init="eva")
    kept = redistribute(plans, stats, cfg)
    # ratios: a = [1/3, 4/15, 1/5, 2/15], b = [6/7, 1/21, ...], c = [1/6]*4 (ρ=2: 4 offered each); budget 6 →
    # 6/7 (b), 1/3, 4/15, 1/5 (a), 1/6, 1/6 (c)
    assert {p.name: p.rank for p in kept} == {"a": 3, "b": 1, "c": 2}
    assert {p.name: p.alpha for p in kept} == {"a": 6.0, "b": 2.0, "c": 4.0}  # s = α/r unchanged


class TwoInputs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(16, 4), torch.nn.Linear(16, 4)

    def forward(self, x, y):
        return self.fc1(x) + self.fc2(y)


def test_layer_with_rank_zero_gets_no_adapter_and_peft_agrees(tmp_path):
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    base = TwoInputs()
    basis = torch.randn(2, 16)
    batches = [(torch.randn(32, 2) @ basis * 5, torch.randn(32, 16)) for _ in range(2)]  # fc1: 2-dim inputs
    model = copy.deepcopy(base)
    rankwise.adapt(model, rankwise.method_config("eva", rank=1, targets=["fc1", "fc2"]), calibration=batches)
    assert not hasattr(model.fc2, "rankwise")  # its inputs explain less variance per direction: rank 0
    assert model.fc1.rankwise["default"].delta.rank == 2
    with torch.no_grad():
        model.fc1.rankwise["default"].delta.lora_B.normal_()
    out = model(*batches[0])
    rankwise.save_adapter(model, tmp_path, format="peft")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path)(*batches[0])
    assert (theirs - out).abs().max() <= 1e-5


def test_ranks_sum_to_the_budget_and_round_trip_through_peft(tmp_path):
    peft = pytest.importorskip("peft")
    base = tiny_llama()
    model = copy.deepcopy(base)
    cfg = rankwise.method_config("eva", rank=2, alpha=4, options={"eva_rho": 4.0})
    rankwise.adapt(model, cfg, calibration=lm_batches())
    adapted = {n: m.rankwise["default"].delta.rank for n, m in model.named_modules() if hasattr(m, "rankwise")}
    assert sum(adapted.values()) == 2 * 14 and len(set(adapted.values())) > 1
    for m in model.modules():
        if hasattr(m, "rankwise"):
            d = m.rankwise["default"].delta
            assert d.scale == pytest.approx(2.0) and torch.count_nonzero(d.lora_B) == 0
            a = d.lora_A.detach()
            torch.testing.assert_close(a @ a.t(), torch.eye(d.rank), atol=1e-5, rtol=0)
    x = ids()
    assert torch.equal(model(x).logits, base(x).logits)
    with torch.no_grad():
        for p in rankwise.trainable_parameters(model):
            p.add_(0.05 * torch.randn_like(p))
    out = model(x).logits
    rankwise.save_adapter(model, tmp_path / "p", format="peft")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "p")(x).logits
    assert (theirs - out).abs().max() <= 1e-5
    rankwise.save_adapter(model, tmp_path / "n")
    back = rankwise.load_adapter(copy.deepcopy(base), tmp_path / "n")
    assert (back(x).logits - out).abs().max() <= 1e-5


def test_first_component_is_the_dominant_input_direction():
    torch.manual_seed(0)
    lin = torch.nn.Linear(8, 8)
    direction = torch.nn.functional.normalize(torch.randn(8), dim=0)
    batches = [torch.randn(64, 1) * 10 * direction + 0.1 * torch.randn(64, 8) for _ in range(2)]
    model = torch.nn.Sequential(lin)
    rankwise.adapt(model, rankwise.method_config("eva", rank=1, targets=torch.nn.Linear, options={"eva_rho": 1.0}),
                   calibration=batches)
    a = lin.rankwise["default"].delta.lora_A.detach()[0]
    assert abs(float(a @ direction)) > 0.999
