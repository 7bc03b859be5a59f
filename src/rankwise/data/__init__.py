"""Data for training and evaluation: text corpora for language modelling and labelled text for classification."""

from .classification import LabelledRows, is_labelled_file, label_ids, read_labelled, split_rows, subset
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
           "tokenize", "train_bpe", "train_windows",
           "LabelledRows", "is_labelled_file", "label_ids", "read_labelled", "split_rows", "subset"]
