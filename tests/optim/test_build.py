import pytest
import torch

import rankwise
from rankwise.errors import ConfigError, TargetError
from rankwise.optim import (
    APOLLO,
    Fira,
    GaLoreAdamW,
    LowRankConfig,
    adam_foreach,
    adam_reference,
    build_optimizer,
    low_rank_groups,
    state_bytes,
)
from rankwise.optim.apollo import APOLLOMini
from rankwise.optim.projectors import dct_matrix, get_projector
from rankwise.optim.projectors.rsvd import randomized_basis
from rankwise.optim.projectors.svd import svd_basis
from tests.helpers import ids, tiny_llama


def test_catalogue_lists_the_optimizer_family():
    names = [m.name for m in rankwise.methods("optimizer")]
    assert names == ["adamw", "galore", "fira", "apollo", "apollo-mini"]
    cfg = rankwise.method_config("galore", rank=8, projector="rsvd")
    assert isinstance(cfg, LowRankConfig) and cfg.optimizer == "galore" and cfg.rank == 8
    assert rankwise.method_config("apollo-mini").rank == 1
    with pytest.raises(ConfigError, match="projector"):
        rankwise.method_config("galore", projector="qr")
    with pytest.raises(ConfigError, match="moments"):
        rankwise.method_config("fira", moments="zero")


def test_default_groups_are_block_matrices_without_embeddings_head_or_norms():
    model = tiny_llama()
    groups = low_rank_groups(model, rank=4)
    names = {id(p): n for n, p in model.named_parameters()}
    low = [names[id(p)] for p in groups[-1]["params"]]
    assert len(low) == 2 * 7 and all(n.startswith("model.layers.") and n.endswith("proj.weight") for n in low)
    plain = [names[id(p)] for p in groups[0]["params"]]
    assert "model.embed_tokens.weight" in plain and "lm_head.weight" in plain
    assert any("norm" in n for n in plain)
    assert len(low) + len(plain) == len(list(model.parameters()))


def test_groups_take_adapt_style_targets():
    model = tiny_llama()
    groups = low_rank_groups(model, rank=4, targets=r".*\.(q|v)_proj", exclude=["layers.1.self_attn.v_proj"])
    assert len(groups[-1]["params"]) == 3
    with pytest.raises(TargetError, match="close names"):
        low_rank_groups(model, rank=4, targets="q_prj")


@pytest.mark.parametrize("name,cls", [("galore", GaLoreAdamW), ("fira", Fira), ("apollo", APOLLO),
                                      ("apollo-mini", APOLLOMini)])
def test_build_optimizer_and_state_bytes_match_the_formula(name, cls):
    model = tiny_llama()
    rank = 1 if name == "apollo-mini" else 4
    opt = build_optimizer(model, rankwise.method_config(name, rank=rank), lr=1e-3)
    assert type(opt) is cls
    out = model(input_ids=ids(), labels=ids())
    out.loss.backward()
    opt.step()
    low = {id(p) for p in opt.param_groups[-1]["params"]}
    expected = 0
    for p in model.parameters():
        m, n = p.shape if p.dim() == 2 else (0, 0)
        if id(p) in low:  # two moments of r·max(m, n) plus the basis r·min(m, n), fp32
            expected += 4 * (2 * rank * max(m, n) + rank * min(m, n))
        else:
            expected += 4 * 2 * p.numel()
    assert state_bytes(opt) == expected


def test_adamw_config_builds_torch_adamw():
    model = tiny_llama()
    opt = build_optimizer(model, rankwise.method_config("adamw"), lr=1e-3, weight_decay=0.1)
    assert type(opt) is torch.optim.AdamW and opt.param_groups[0]["weight_decay"] == 0.1
    with pytest.raises(ConfigError, match="layerwise"):
        rankwise.method_config("adamw", layerwise=True)


def test_foreach_adam_matches_the_reference():
    g = torch.Generator().manual_seed(0)
    ps = [torch.randn(5, 3, generator=g), torch.randn(7, generator=g)]
    ref = [p.clone() for p in ps]
    ms, vs = [torch.zeros_like(p) for p in ps], [torch.zeros_like(p) for p in ps]
    mr, vr = [torch.zeros_like(p) for p in ps], [torch.zeros_like(p) for p in ps]
    for step in range(1, 4):
        grads = [torch.randn(p.shape, generator=g) for p in ps]
        adam_foreach(ps, grads, ms, vs, step, 1e-2, 0.9, 0.999, 1e-6, 0.1)
        for p, gr, m, v in zip(ref, grads, mr, vr, strict=True):
            adam_reference(p, gr, m, v, step, 1e-2, 0.9, 0.999, 1e-6, 0.1)
    for a, b in zip(ps, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_randomized_svd_finds_the_exact_subspace_of_a_low_rank_matrix():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(40, 3, generator=g) @ torch.randn(3, 30, generator=g)
    for side in ("right", "left"):
        exact, approx = svd_basis(a, 3, side), randomized_basis(a, 3, side, seed=1, niter=2)
        pe = exact.t() @ exact if side == "right" else exact @ exact.t()
        pa = approx.t() @ approx if side == "right" else approx @ approx.t()
        torch.testing.assert_close(pa, pe, atol=1e-4, rtol=0)


def test_dct_selects_the_columns_with_most_gradient_energy():
    d = dct_matrix(16)
    torch.testing.assert_close(d.t() @ d, torch.eye(16), atol=1e-5, rtol=0)
    g = torch.Generator().manual_seed(0)
    grad = torch.randn(20, 16, generator=g)
    entries = get_projector("dct").refresh(grad, 4, "right", 0, {})
    brute = sorted(range(16), key=lambda j: -(grad @ d[:, j]).norm().item())[:4]
    assert entries["proj_idx"].tolist() == brute


@pytest.mark.slow  # imports transformers' Trainer + accelerate
def test_works_with_the_transformers_trainer(tmp_path):
    transformers = pytest.importorskip("transformers")
    model = tiny_llama().train()
    opt = build_optimizer(model, rankwise.method_config("galore", rank=4, update_gap=2), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    data = [{"input_ids": ids()[0], "labels": ids()[0]} for _ in range(6)]
    args = transformers.TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=2, max_steps=3,
                                          report_to=[], save_strategy="no", logging_strategy="no",
                                          use_cpu=True, disable_tqdm=True)
    before = model.model.layers[0].self_attn.q_proj.weight.detach().clone()
    transformers.Trainer(model=model, args=args, train_dataset=data, optimizers=(opt, sched)).train()
    assert not torch.equal(before, model.model.layers[0].self_attn.q_proj.weight)
    assert opt.state[model.model.layers[0].self_attn.q_proj.weight]["step"] == 3


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="optimizer"):
        LowRankConfig(optimizer="sgd")
    with pytest.raises(ConfigError, match="scale_type"):
        LowRankConfig(optimizer="galore", scale_type="channel")
    with pytest.raises(ConfigError, match="update_gap"):
        LowRankConfig(update_gap=0)
