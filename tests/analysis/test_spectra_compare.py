"""Model-level spectra and comparisons: against per-layer SVDs, planted updates and merged adapters."""

import copy
import json

import pytest
import torch
from safetensors.torch import save_file

import rankwise
from rankwise import analysis
from rankwise.analysis.batched import batched_singular_values, per_layer_singular_values
from rankwise.errors import ConfigError, TargetError
from tests.helpers import perturb, tiny_gpt2, tiny_llama


def test_spectra_of_a_transformers_model_match_per_layer_svd():
    model = tiny_llama()
    report = analysis.spectra(model)
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert [x.name for x in report.layers] == linears  # head included by default, model order
    mods = dict(model.named_modules())
    for x in report.layers:
        ref = torch.linalg.svdvals(mods[x.name].weight.detach().float())
        torch.testing.assert_close(torch.tensor(x.singular_values), ref, atol=1e-5, rtol=1e-5)
        assert 1.0 <= x.effective_rank <= x.max_rank
        assert x.rank90 <= x.rank99 <= x.max_rank
    json.dumps(report.to_dict())
    md = report.to_markdown()
    assert "model.layers.0.self_attn.q_proj" in md and md.count("\n") == len(report.layers) + 1


def test_batched_svd_agrees_with_per_layer_reference():
    g = torch.Generator().manual_seed(0)
    mats = {f"a{i}": torch.randn(12, 7, generator=g) for i in range(5)}
    mats |= {f"b{i}": torch.randn(7, 12, generator=g, dtype=torch.float64) for i in range(3)}
    mats["c"] = torch.randn(4, 4, generator=g)
    fast = batched_singular_values(mats, max_bytes=2 * 12 * 7 * 4)  # forces several chunks per shape
    ref = per_layer_singular_values(mats)
    assert list(fast) == list(mats)
    for n in mats:
        assert fast[n].dtype == ref[n].dtype
        torch.testing.assert_close(fast[n], ref[n], atol=1e-6, rtol=1e-6)


def test_gpt2_conv1d_tied_head_and_embeddings():
    model = tiny_gpt2()
    report = analysis.spectra(model)
    names = [x.name for x in report.layers]
    assert "transformer.h.0.attn.c_attn" in names and "transformer.wte" not in names
    c_attn = report["transformer.h.0.attn.c_attn"]
    assert c_attn.shape == (96, 32)  # matrix view (out, in) of a Conv1D stored (in, out)
    with_emb = analysis.spectra(model, include_embeddings=True)
    emb_names = [x.name for x in with_emb.layers]
    assert "transformer.wte" in emb_names and "lm_head" not in emb_names  # tied to wte: analysed once
    only = analysis.spectra(model, targets=["c_fc"])
    assert [x.name for x in only.layers] == ["transformer.h.0.mlp.c_fc", "transformer.h.1.mlp.c_fc"]
    with pytest.raises(TargetError, match="close names"):
        analysis.spectra(model, targets=["c_fcc"])


def test_state_dict_and_safetensors_file_give_the_model_spectra(tmp_path):
    model = tiny_llama()
    ref = analysis.spectra(model)
    sd = {k: v for k, v in model.state_dict().items()}
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items() if "lm_head" not in k}, str(path))
    from_file = analysis.spectra(path)
    names = [x.name for x in from_file.layers]
    assert "model.embed_tokens" not in names  # embeddings left out by default, by name
    for x in from_file.layers:
        torch.testing.assert_close(torch.tensor(x.singular_values), torch.tensor(ref[x.name].singular_values),
                                   atol=1e-5, rtol=1e-5)
    assert len(from_file.layers) == len(ref.layers) - 1


def test_randomized_spectra_close_to_exact():
    torch.manual_seed(0)
    model = tiny_llama(layers=1)
    exact = analysis.spectra(model, k=4)
    fast = analysis.spectra(model, k=4, niter=6)
    for a, b in zip(exact.layers, fast.layers, strict=True):
        torch.testing.assert_close(torch.tensor(b.singular_values), torch.tensor(a.singular_values),
                                   atol=5e-3, rtol=5e-3)


def test_compare_finds_a_planted_low_rank_update():
    base = tiny_llama()
    tuned = copy.deepcopy(base)
    g = torch.Generator().manual_seed(1)
    q = tuned.model.layers[0].self_attn.q_proj.weight
    with torch.no_grad():
        q.add_(0.5 * torch.randn(32, 3, generator=g) @ torch.randn(3, 32, generator=g))
    diff = analysis.compare(base, tuned)
    d = diff["model.layers.0.self_attn.q_proj"]
    assert d.delta_rank99 <= 3 and d.delta_rank90 >= 1
    assert d.relative_change > 0.1
    assert all(x.delta_rank99 == 0 and x.relative_change == 0 for x in diff.layers if x is not d)
    assert all(x.intruder_count == 0 for x in diff.layers if x is not d)
    json.dumps(diff.to_dict())
    assert "Total intruder dimensions" in diff.to_markdown()


def _adapter_reference(model):
    """Base and tuned weights the slow way: disable the adapters, or merge them into a copy."""
    with rankwise.disabled(model):
        base = {n: m.weight.detach().clone() for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
        # a moved W0 (PiSSA) is restored by the hosts in forward; recover the public weight explicitly
    merged = rankwise.merge_and_unload(copy.deepcopy(model))
    tuned = {n: m.weight.detach().clone() for n, m in merged.named_modules() if isinstance(m, torch.nn.Linear)}
    return base, tuned


@pytest.mark.parametrize("init", ["default", "pissa"])
def test_compare_a_model_carrying_adapters(init):
    model = tiny_llama()
    original = {n: m.weight.detach().clone() for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    rankwise.adapt(model, rankwise.LoRAConfig(rank=4, alpha=8, targets=["q_proj", "v_proj"], init=init))
    perturb(model, 0.05)
    diff = analysis.compare(model)
    _, tuned = _adapter_reference(model)
    assert {x.name for x in diff.layers} == {n for n in original if n.endswith(("q_proj", "v_proj"))}
    for x in diff.layers:
        ref = torch.linalg.svdvals(tuned[x.name].float() - original[x.name].float())
        torch.testing.assert_close(torch.tensor(x.delta_singular_values), ref, atol=1e-5, rtol=1e-4)
        assert x.delta_rank99 <= 8  # LoRA update (rank 4), or rank 2r relative to the public base for PiSSA
    # the same from two models: the public base and the adapted model (adapters folded in)
    base_model = tiny_llama()
    two = analysis.compare(base_model, model, targets=["q_proj", "v_proj"])
    for a, b in zip(diff.layers, two.layers, strict=True):
        torch.testing.assert_close(torch.tensor(a.delta_singular_values), torch.tensor(b.delta_singular_values),
                                   atol=1e-5, rtol=1e-4)
    # merged adapters are read the same way
    rankwise.merge(model)
    merged = analysis.compare(model)
    for a, b in zip(diff.layers, merged.layers, strict=True):
        torch.testing.assert_close(torch.tensor(a.delta_singular_values), torch.tensor(b.delta_singular_values),
                                   atol=1e-5, rtol=1e-4)


def test_compare_errors():
    with pytest.raises(ConfigError, match="needs rankwise adapters"):
        analysis.compare(tiny_llama())
    with pytest.raises(ConfigError, match="shape"):
        analysis.compare(tiny_llama(), tiny_llama(vocab=50), targets=["lm_head"])
    with pytest.raises(ConfigError, match="eps"):
        analysis.compare(tiny_llama(), tiny_llama(), eps=0)
