"""Labelled text for classification: TSV, CSV or JSONL files with a text column and a label column.

    rows = read_labelled("sst2/train.tsv")                  # text column found by name: sentence / text
    rows = subset(rows, 8000, seed=0)                       # random.seed(0); random.shuffle; first 8000
    train, val = split_rows(rows, val_fraction=0.1, seed=0) # when there is no separate validation file

Labels may be integers or strings; :func:`label_ids` maps them to 0..k-1 (integers keep their
value when they already are 0..k-1, strings are sorted).
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

SUFFIXES = (".tsv", ".csv", ".jsonl")
TEXT_COLUMNS = ("sentence", "text", "content", "review")


@dataclass
class LabelledRows:
    """Texts and their (raw) labels, in file order."""

    texts: list[str]
    labels: list[str | int]


def is_labelled_file(path: str | Path) -> bool:
    """Whether ``path`` is a classification file (by suffix)."""
    return Path(path).suffix.lower() in SUFFIXES


def read_labelled(path: str | Path, text_column: str = "", label_column: str = "label") -> LabelledRows:
    """Read a TSV/CSV (with a header row) or JSONL file of labelled text.

    Args:
        text_column: the text column; empty: the first of ``sentence``, ``text``, ``content``, ``review``.
        label_column: the label column.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        columns = list(records[0]) if records else []
    elif suffix in (".tsv", ".csv"):
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",", quoting=csv.QUOTE_NONE
                                    if suffix == ".tsv" else csv.QUOTE_MINIMAL)
            records = list(reader)
            columns = list(reader.fieldnames or [])
    else:
        raise ConfigError(f"{str(path)!r}: classification data must be one of {SUFFIXES}, not {suffix!r}")
    if not records:
        raise ConfigError(f"{str(path)!r} holds no rows")
    text_column = text_column or next((c for c in TEXT_COLUMNS if c in columns), "")
    for what, col in (("text_column", text_column), ("label_column", label_column)):
        if not col or col not in columns:
            raise ConfigError(f"{str(path)!r} has no {what} {col!r}; its columns are {columns}; set {what}=NAME")
    labels = [_label(r[label_column]) for r in records]
    return LabelledRows([str(r[text_column]) for r in records], labels)


def _label(v) -> str | int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    s = str(v).strip()
    return int(s) if s.lstrip("-").isdigit() else s


def label_ids(*label_lists: list) -> dict:
    """Raw label → class id over all given lists: integers 0..k-1 keep their value, others are sorted."""
    values = sorted({v for labels in label_lists for v in labels}, key=lambda v: (isinstance(v, str), v))
    if all(isinstance(v, int) for v in values) and min(values) >= 0:
        return {v: v for v in values}
    return {v: i for i, v in enumerate(values)}


def subset(rows: LabelledRows, n: int, seed: int = 0) -> LabelledRows:
    """The first ``n`` rows after ``random.seed(seed); random.shuffle(rows)`` (all of them if n ≤ 0).

    This is the SST-2 protocol of ../shared/data/README.md (first 8,000 rows after a seed-0 shuffle).
    """
    if n <= 0:
        return rows
    pairs = list(zip(rows.texts, rows.labels, strict=True))
    state = random.getstate()
    random.seed(seed)
    random.shuffle(pairs)
    random.setstate(state)  # leave the caller's Python RNG as it was
    pairs = pairs[:n]
    return LabelledRows([t for t, _ in pairs], [y for _, y in pairs])


def split_rows(rows: LabelledRows, val_fraction: float = 0.1, seed: int = 0) -> tuple[LabelledRows, LabelledRows]:
    """A deterministic random split: a seeded permutation, the last ``val_fraction`` for validation."""
    import torch

    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n = len(rows.texts)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    cut = n - max(1, int(round(n * val_fraction)))
    if cut < 1:
        raise ConfigError(f"{n} rows are too few to split off a validation set")
    pick = lambda idx: LabelledRows([rows.texts[i] for i in idx], [rows.labels[i] for i in idx])  # noqa: E731
    return pick(order[:cut]), pick(order[cut:])
