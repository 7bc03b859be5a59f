"""Shared pieces of the reparam tests: a tiny Llama, a training loop that calls the schedule, state round trips."""

from __future__ import annotations

import io

import torch

import rankwise
from tests.helpers import ids, tiny_llama

ALL = ("low-rank", "relora", "switchlora", "sltrain", "lost", "cola", "sst")


def build(method: str, **kw):
    """A tiny Llama (seed 0) reparameterised with ``method``; returns (model, schedule)."""
    model = tiny_llama().train()
    kw.setdefault("rank", 4)
    schedule = rankwise.reparameterize(model, rankwise.method_config(method, **kw))
    return model, schedule


def batch(step: int) -> torch.Tensor:
    return torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(100 + step))


def optimizer(model, lr: float = 1e-2):
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)


def train(model, schedule, opt, start: int, stop: int, lr: float = 1e-2) -> None:
    """Steps [start, stop) of the contract loop in rankwise/schedule.py."""
    for step in range(start, stop):
        x = batch(step)
        loss = model(input_ids=x, labels=x).loss + schedule.loss_term()
        loss.backward()
        schedule.before_step(step)
        for g in opt.param_groups:
            g["lr"] = lr * schedule.lr_factor(step)
        opt.step()
        schedule.after_step(step, opt)
        opt.zero_grad(set_to_none=True)


def roundtrip(obj):
    """torch.save then torch.load(weights_only=True): what a checkpoint file gives back."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def logits(model, x=None):
    model.eval()
    with torch.no_grad():
        out = model(input_ids=ids() if x is None else x).logits
    model.train()
    return out
