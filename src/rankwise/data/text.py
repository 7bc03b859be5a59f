"""Plain text → token ids → fixed-length windows, for causal language modelling.

    text = read_text("corpus/")                          # a file, or every text file under a folder
    tok = train_bpe(text, vocab_size=2048)               # byte-level BPE (the `tokenizers` package)
    split = split_tokens(tokenize(text, tok), val_fraction=0.1)
    for x in train_windows(split.train, batch_size=16, seq_len=128, steps=500, seed=0):
        loss = model(input_ids=x, labels=x).loss         # x: (batch, seq_len) int64

The split is contiguous (validation is the end of the corpus), so no validation text leaks into
training windows; training windows are sampled from a seeded generator, so a run is reproducible and
a resumed run can skip to where it stopped (``start_step``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ConfigError

TEXT_SUFFIXES = (".txt", ".md", ".rst", ".py", ".text")


def shared_data_dir() -> Path | None:
    """The project's shared real-data folder (``<repo>/../shared/data``), or None on a user's machine."""
    path = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
    return path.resolve() if path.is_dir() else None


def read_text(path: str | Path, suffixes: tuple[str, ...] = TEXT_SUFFIXES) -> str:
    """The text of a file, or of every file with one of ``suffixes`` under a folder (sorted, joined)."""
    path = Path(path)
    if path.is_file():
        return path.read_text(encoding="utf-8", errors="replace")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in suffixes)
        if not files:
            raise ConfigError(f"no text files ({', '.join(suffixes)}) under {str(path)!r}")
        return "\n\n".join(p.read_text(encoding="utf-8", errors="replace") for p in files)
    raise ConfigError(f"data path {str(path)!r} does not exist; pass a text file or a folder of text files")


def train_bpe(text: str, vocab_size: int = 2048, save_to: str | Path | None = None):
    """A byte-level BPE tokenizer trained on ``text`` (GPT-2's pre-tokenisation), optionally saved as JSON.

    Byte-level means every string is encodable (no unknown token). The end-of-text token is id 0.
    """
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("training a tokenizer needs the `tokenizers` package: pip install 'rankwise[text]'") from e
    if vocab_size < 260:
        raise ConfigError(f"vocab_size must be ≥ 260 (256 bytes + special tokens), got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_chunks(text), trainer=trainer)
    if save_to is not None:
        from ..io.files import atomic_write_bytes

        atomic_write_bytes(Path(save_to), tok.to_str().encode("utf-8"))
    return tok


def load_tokenizer(path: str | Path):
    """A tokenizer saved by :func:`train_bpe` (a ``tokenizer.json``) or a Hugging Face tokenizer folder."""
    path = Path(path)
    if path.is_file():
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(path))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def tokenize(text: str, tokenizer) -> torch.Tensor:
    """Token ids of ``text`` as a 1-D int64 tensor (``tokenizers.Tokenizer`` or a transformers tokenizer)."""
    ids: list[int] = []
    for chunk in _chunks(text):
        if hasattr(tokenizer, "encode_batch") and not hasattr(tokenizer, "pad_token"):
            ids.extend(tokenizer.encode(chunk).ids)  # tokenizers.Tokenizer
        else:
            ids.extend(tokenizer(chunk, add_special_tokens=False)["input_ids"])
    return torch.tensor(ids, dtype=torch.long)


@dataclass
class TokenSplit:
    """A contiguous train/validation split of one token stream."""

    train: torch.Tensor  # (n_train,) int64
    val: torch.Tensor  # (n_val,) int64


def split_tokens(tokens: torch.Tensor, val_fraction: float = 0.1) -> TokenSplit:
    """Split off the last ``val_fraction`` of the tokens for validation (deterministic, contiguous)."""
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    cut = int(len(tokens) * (1 - val_fraction))
    return TokenSplit(tokens[:cut], tokens[cut:])


def train_windows(tokens: torch.Tensor, batch_size: int, seq_len: int, steps: int, seed: int = 0,
                  start_step: int = 0) -> Iterator[torch.Tensor]:
    """``steps`` batches of random windows, (batch_size, seq_len) each, from a seeded generator.

    Batch ``i`` depends only on (seed, i), so resuming at ``start_step`` yields the same batches an
    uninterrupted run would have seen from there.
    """
    _check_length(tokens, seq_len, "training")
    high = len(tokens) - seq_len + 1
    offsets = torch.arange(seq_len)
    for step in range(start_step, steps):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        starts = torch.randint(0, high, (batch_size,), generator=gen)
        yield tokens[starts[:, None] + offsets]


def eval_windows(tokens: torch.Tensor, batch_size: int, seq_len: int,
                 max_batches: int | None = None) -> Iterator[torch.Tensor]:
    """Consecutive non-overlapping windows covering the stream (the tail shorter than a window is dropped)."""
    _check_length(tokens, seq_len, "validation")
    n = len(tokens) // seq_len
    windows = tokens[: n * seq_len].view(n, seq_len)
    for i, start in enumerate(range(0, n, batch_size)):
        if max_batches is not None and i >= max_batches:
            return
        yield windows[start:start + batch_size]


def _check_length(tokens: torch.Tensor, seq_len: int, what: str) -> None:
    if len(tokens) < seq_len + 1:
        raise ConfigError(f"the {what} split has {len(tokens)} tokens, fewer than seq_len={seq_len} + 1; "
                          "use more text, a shorter seq_len or a different val_fraction")


def _chunks(text: str, size: int = 1 << 16) -> Iterator[str]:
    # Encode in slices cut at line ends: tokenizers is fast on many medium strings, slow on one huge one.
    start = 0
    while start < len(text):
        end = text.find("\n", start + size)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end
