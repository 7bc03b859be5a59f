"""Text data: BPE round trip, deterministic split and windows, resume-able sampling."""

import pytest
import torch

from rankwise.data import eval_windows, read_text, split_tokens, tokenize, train_bpe, train_windows
from rankwise.errors import ConfigError

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog {i % 7}.\n" for i in range(400))


def test_bpe_round_trips_text(tmp_path):
    tok = train_bpe(TEXT, vocab_size=300, save_to=tmp_path / "tokenizer.json")
    ids = tokenize(TEXT, tok)
    assert ids.dtype == torch.long and ids.max() < 300
    assert tok.decode(ids.tolist()) == TEXT
    from rankwise.data import load_tokenizer

    assert load_tokenizer(tmp_path / "tokenizer.json").encode("fox").ids == tok.encode("fox").ids


def test_split_and_windows_are_deterministic():
    tokens = torch.arange(1000)
    split = split_tokens(tokens, 0.1)
    assert len(split.train) == 900 and split.val[0] == 900
    a = list(train_windows(split.train, 4, 16, steps=5, seed=3))
    b = list(train_windows(split.train, 4, 16, steps=5, seed=3, start_step=2))
    assert all(torch.equal(x, y) for x, y in zip(a[2:], b, strict=True))
    assert all(((w[:, 1:] - w[:, :-1]) == 1).all() for w in a)  # windows are contiguous slices
    ev = list(eval_windows(split.val, 3, 16))
    assert torch.equal(torch.cat(ev).flatten(), split.val[:96])


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_text(tmp_path / "missing")
    with pytest.raises(ConfigError, match="seq_len"):
        next(train_windows(torch.arange(10), 2, 16, steps=1))
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "b.md").write_text("world")
    assert read_text(tmp_path) == "hello\n\nworld"
