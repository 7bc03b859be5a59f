"""Every training method in the catalogue runs through the shared loop by name, and what it saves reloads.

The path is the one ``rankwise pretrain/finetune --method NAME`` takes (``rankwise.cli.common.run_method``),
on a tiny Llama for 4 steps: a method that cannot be selected by name, or whose saved result does not
reproduce the trained model, fails here.
"""

from pathlib import Path

import pytest
import torch

import rankwise
from rankwise.cli.common import run_method, start
from rankwise.cli.pretrain import PretrainConfig

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
SRC = Path(rankwise.__file__).parent
TRAINING = [m.name for fam in ("adapter", "optimizer", "reparam") for m in rankwise.methods(fam)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """One tokenizer, data and model builder shared by every method (4 steps of batch 4 × 32 tokens)."""
    out = tmp_path_factory.mktemp("setup")
    data = out / "corpus.txt"
    data.write_text("\n\n".join(p.read_text() for p in sorted((SRC / "core").glob("*.py"))))
    cfg = PretrainConfig(data=str(data), steps=4, vocab_size=300, max_length=32, batch_size=4, eval_every=0,
                         eval_batches=1, progress=False, rank=2, out=str(out))
    return cfg, start(cfg, out)


@pytest.mark.parametrize("name", TRAINING)
def test_method_trains_by_name_and_its_saved_result_reloads(name, setup, tmp_path):
    cfg, s = setup
    cfg = type(cfg)(**{**cfg.__dict__, "method": name, "out": str(tmp_path)})
    run = run_method(cfg, name, tmp_path, s)
    assert run.result.steps == 4
    assert torch.isfinite(torch.tensor(run.result.train_loss))
    model = run.model.eval()
    ids = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        trained = model(input_ids=ids).logits
    method = rankwise.get_method(name)
    if method.family == "adapter":  # what it saved, loaded onto a fresh base, gives the trained model's outputs
        torch.manual_seed(cfg.seed)
        fresh = (method.load or rankwise.load_adapter)(s.make_model(), tmp_path / "adapter").eval()
        with torch.no_grad():
            torch.testing.assert_close(fresh(input_ids=ids).logits, trained, atol=1e-4, rtol=1e-4)
