"""From settings to a model factory and a task: presets or Hugging Face folders; text or labelled files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ..core.targeting import output_head_names
from ..data import (
    is_labelled_file,
    label_ids,
    load_tokenizer,
    read_labelled,
    read_text,
    split_rows,
    split_tokens,
    subset,
    tokenize,
    train_bpe,
)
from ..errors import ConfigError
from ..models import LLAMA_PRESETS, build_causal_lm, build_minilm_classifier, load_hf_model
from ..train.tasks import ClassificationTask, LMTask, Task
from .corpus import STDLIB, stdlib_corpus
from .settings import RunSettings


@dataclass
class Setup:
    """A fresh model on demand (same weights every call), the task, and what describes them."""

    make_model: Callable[[], nn.Module]
    task: Task
    kind: str  # "causal-lm" or "classification"
    heads: list[str] = field(default_factory=list)  # new heads, trained in full alongside adapters
    info: dict = field(default_factory=dict)


def build_setup(cfg: RunSettings, out: Path) -> Setup:
    """The model factory and task that ``cfg`` describes; a trained tokenizer is saved as ``out/tokenizer.json``."""
    if cfg.data != STDLIB and is_labelled_file(cfg.data):
        return _classification(cfg)
    return _language_model(cfg, Path(out))


def _language_model(cfg: RunSettings, out: Path) -> Setup:
    text = stdlib_corpus() if cfg.data == STDLIB else read_text(cfg.data)
    cut = int(len(text) * (1 - cfg.val_fraction))  # the tokenizer sees the training part only
    hf_model = None
    if cfg.model in LLAMA_PRESETS:
        vocab = cfg.vocab_size
    elif cfg.model == "minilm":
        raise ConfigError("model 'minilm' is an encoder for classification; give a .tsv/.csv/.jsonl data file, or "
                          f"a causal LM ({sorted(LLAMA_PRESETS)} or a folder) for text")
    else:
        hf_model, hf_tok = load_hf_model(cfg.model, "causal-lm", seed=cfg.seed)
        vocab = hf_model.config.vocab_size
    if cfg.tokenizer:
        tok = load_tokenizer(cfg.tokenizer)
    elif hf_model is not None and hf_tok is not None:
        tok = hf_tok
    else:
        cached = out / "tokenizer.json"
        tok = load_tokenizer(cached) if cached.exists() else train_bpe(text[:cut], vocab, save_to=cached)
    size = tok.get_vocab_size() if hasattr(tok, "get_vocab_size") else len(tok)
    if size > vocab:
        raise ConfigError(f"the tokenizer has {size} tokens but the model's vocabulary is {vocab}")
    split = split_tokens(tokenize(text, tok), cfg.val_fraction)
    task = LMTask(split.train, split.val, cfg.batch_size, cfg.max_length, cfg.seed, cfg.grad_accum)
    if hf_model is not None:
        folder, seed = cfg.model, cfg.seed
        first = [hf_model]

        def make() -> nn.Module:  # the already-loaded model first, fresh copies after
            return first.pop() if first else load_hf_model(folder, "causal-lm", seed=seed)[0]
    else:
        preset, seed = cfg.model, cfg.seed

        def make() -> nn.Module:
            return build_causal_lm(preset, vocab, seed)
    info = {"task": "causal-lm", "train_tokens": len(split.train), "val_tokens": len(split.val), "vocab": vocab}
    return Setup(make, task, "causal-lm", [], info)


def _classification(cfg: RunSettings) -> Setup:
    rows = read_labelled(cfg.data, cfg.text_column, cfg.label_column)
    if cfg.val_data:
        train, val = subset(rows, cfg.max_train_rows, cfg.seed), read_labelled(cfg.val_data, cfg.text_column,
                                                                               cfg.label_column)
    else:
        train, val = split_rows(subset(rows, cfg.max_train_rows, cfg.seed), cfg.val_fraction, cfg.seed)
    ids = label_ids(train.labels, val.labels)
    num_labels = max(ids.values()) + 1
    if cfg.model == "minilm":
        model, tok = build_minilm_classifier(num_labels, cfg.seed)

        def make() -> nn.Module:
            return build_minilm_classifier(num_labels, seed)[0]
    elif cfg.model in LLAMA_PRESETS:
        raise ConfigError(f"model {cfg.model!r} is a causal-LM preset; classification needs 'minilm' or a Hugging "
                          "Face model folder")
    else:
        model, tok = load_hf_model(cfg.model, "classification", num_labels, cfg.seed)
        if cfg.tokenizer:
            tok = load_tokenizer(cfg.tokenizer)
        if tok is None:
            raise ConfigError(f"model folder {cfg.model!r} has no tokenizer; pass tokenizer=FOLDER")
        folder = cfg.model

        def make() -> nn.Module:
            return load_hf_model(folder, "classification", num_labels, seed)[0]
    seed = cfg.seed
    first = [model]

    def make_first() -> nn.Module:
        return first.pop() if first else make()

    encode = lambda texts: tok(texts, truncation=True, max_length=cfg.max_length)["input_ids"]  # noqa: E731
    task = ClassificationTask(encode(train.texts), [ids[y] for y in train.labels], encode(val.texts),
                              [ids[y] for y in val.labels], cfg.batch_size, pad_id=tok.pad_token_id or 0,
                              seed=cfg.seed, grad_accum=cfg.grad_accum)
    named = list(model.named_modules())
    heads = sorted(n for n in output_head_names(model, named) if any(True for _ in dict(named)[n].parameters()))
    info = {"task": "classification", "train_rows": len(train.texts), "val_rows": len(val.texts),
            "num_labels": num_labels}
    return Setup(make_first, task, "classification", heads, info)
