"""What the loop trains on: a task gives the batch of every (step, micro-batch) and evaluates.

Batches depend only on (seed, step, micro-batch), never on iteration history, so a resumed run
sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..data import eval_windows, train_windows
from ..models import lm_loss


class Task:
    """The interface the loop uses. Batches are dicts of model keyword inputs, labels included."""

    def batch(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch).loss

    def tokens(self, batch: dict[str, torch.Tensor]) -> int:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, max_batches: int) -> dict[str, float]:
        raise NotImplementedError


@dataclass
class LMTask(Task):
    """Causal language modelling on a token stream: random training windows, fixed validation windows."""

    train_tokens: torch.Tensor  # (n_train,) int64
    val_tokens: torch.Tensor  # (n_val,) int64
    batch_size: int
    seq_len: int
    seed: int = 0
    grad_accum: int = 1

    def batch(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        i = step * self.grad_accum + micro
        x = next(train_windows(self.train_tokens, self.batch_size, self.seq_len, i + 1, self.seed, start_step=i))
        return {"input_ids": x, "labels": x}  # x: (batch, seq_len)

    def tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return batch["input_ids"].numel()

    def evaluate(self, model: nn.Module, max_batches: int) -> dict[str, float]:
        loss = lm_loss(model, eval_windows(self.val_tokens, self.batch_size, self.seq_len, max_batches=max_batches))
        return {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0))}


@dataclass
class ClassificationTask(Task):
    """Sequence classification: token-id lists with labels; each epoch a seeded permutation of the rows."""

    train_ids: list[list[int]]
    train_labels: list[int]
    val_ids: list[list[int]]
    val_labels: list[int]
    batch_size: int
    pad_id: int = 0
    seed: int = 0
    grad_accum: int = 1
    shuffle: bool = True

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.train_ids) / self.batch_size)

    def batch(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        i = step * self.grad_accum + micro
        epoch, j = divmod(i, self.batches_per_epoch)
        n = len(self.train_ids)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch))
        else:
            order = torch.arange(n)
        rows = order[j * self.batch_size:(j + 1) * self.batch_size].tolist()
        return self._collate([self.train_ids[r] for r in rows], [self.train_labels[r] for r in rows])

    def _collate(self, ids: list[list[int]], labels: list[int]) -> dict[str, torch.Tensor]:
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for r, x in enumerate(ids):
            input_ids[r, :len(x)] = torch.tensor(x, dtype=torch.long)
            mask[r, :len(x)] = 1
        return {"input_ids": input_ids, "attention_mask": mask, "labels": torch.tensor(labels, dtype=torch.long)}

    def tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["attention_mask"].sum())

    @torch.no_grad()
    def evaluate(self, model: nn.Module, max_batches: int | None = None) -> dict[str, float]:
        """Accuracy and mean cross-entropy over the whole validation set (``max_batches`` is ignored)."""
        was = model.training
        model.eval()
        correct, loss, n = 0, 0.0, 0
        try:
            for s in range(0, len(self.val_ids), self.batch_size):
                b = self._collate(self.val_ids[s:s + self.batch_size], self.val_labels[s:s + self.batch_size])
                labels = b.pop("labels")
                logits = model(**b).logits.float()  # (batch, classes)
                loss += torch.nn.functional.cross_entropy(logits, labels, reduction="sum").item()
                correct += int((logits.argmax(-1) == labels).sum())
                n += len(labels)
        finally:
            model.train(was)
        return {"val_loss": loss / n, "val_accuracy": correct / n}
