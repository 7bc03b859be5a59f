"""Data for training and evaluation: text corpora for language modelling (and, in the CLI, labelled text)."""

from .text import (
    TokenSplit,
    eval_windows,
    load_tokenizer,
    read_text,
    shared_data_dir,
    split_tokens,
    tokenize,
    train_bpe,
    train_windows,
)

__all__ = ["TokenSplit", "eval_windows", "load_tokenizer", "read_text", "shared_data_dir", "split_tokens",
           "tokenize", "train_bpe", "train_windows"]
