"""Calibration batches: how they are iterated, fed to the model, and turned into a loss.

A calibration source is any iterable of batches (a list, a ``DataLoader``, a generator). A batch is

* a ``dict`` (or other mapping) — called as ``model(**batch)`` (Hugging Face style);
* a ``tuple`` / ``list`` — called as ``model(*batch)``;
* a ``torch.Tensor`` — called as ``model(batch)``.

Gradient-based inits need a scalar loss: the output's ``.loss`` (Hugging Face models given
``labels``) if present, else ``loss_fn(output, batch)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError

LossFn = Callable[[Any, Any], torch.Tensor]


def iter_batches(calibration: Iterable, limit: int | None = None) -> Iterator[tuple[int, Any]]:
    """``(index, batch)`` for the first ``limit`` batches (all when None); an empty source raises ConfigError."""
    if calibration is None:
        raise ConfigError("no calibration batches given")
    if isinstance(calibration, torch.Tensor | Mapping) or not isinstance(calibration, Iterable):
        raise ConfigError(f"calibration must be an iterable of batches (a list or a DataLoader), got "
                          f"{type(calibration).__name__}; wrap a single batch in a list: calibration=[batch]")
    n = 0
    for i, batch in enumerate(calibration):
        if limit is not None and i >= limit:
            break
        n += 1
        yield i, batch
    if n == 0:
        raise ConfigError("the calibration source is empty; pass at least one batch, e.g. calibration=[batch]")


def call_model(model: nn.Module, batch: Any, index: int) -> Any:
    """Run ``model`` on one batch (dict → ``**batch``, tuple/list → ``*batch``, tensor → ``(batch)``)."""
    if isinstance(batch, Mapping):
        args, kwargs = (), dict(batch)
    elif isinstance(batch, tuple | list):
        args, kwargs = tuple(batch), {}
    elif isinstance(batch, torch.Tensor):
        args, kwargs = (batch,), {}
    else:
        raise ConfigError(f"calibration batch {index} is a {type(batch).__name__}; a batch must be a dict "
                          "(model(**batch)), a tuple/list (model(*batch)) or a tensor (model(batch))")
    try:
        return model(*args, **kwargs)
    except (TypeError, ValueError, RuntimeError, IndexError) as e:
        raise ConfigError(f"the model failed on calibration batch {index} ({type(e).__name__}: {e}); batches are "
                          "passed as model(**batch) for dicts and model(*batch) for tuples") from e


def batch_loss(output: Any, batch: Any, index: int, loss_fn: LossFn | None) -> torch.Tensor:
    """The scalar loss of one batch: ``loss_fn(output, batch)`` if given, else ``output.loss``."""
    if loss_fn is not None:
        loss = loss_fn(output, batch)
    else:
        loss = getattr(output, "loss", None)
        if loss is None and isinstance(output, Mapping):
            loss = output.get("loss")
        if loss is None:
            raise ConfigError(f"calibration batch {index}: the model output has no .loss (pass labels in the batch) "
                              "and no loss_fn was given; call rankwise.adapt(..., loss_fn=lambda output, batch: ...)")
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.requires_grad:
        raise ConfigError(f"calibration batch {index}: the loss must be a scalar tensor that depends on the model's "
                          f"weights, got {type(loss).__name__}"
                          + (f" of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else ""))
    if not torch.isfinite(loss):
        raise ConfigError(f"calibration batch {index}: the loss is {loss.item()}; check the batch and the model")
    return loss.reshape(())


def token_mask(batch: Any) -> torch.Tensor | None:
    """The tokens whose activations count: ``attention_mask`` (and ``labels != -100``) of a dict batch, else None."""
    if not isinstance(batch, Mapping):
        return None
    mask = batch.get("attention_mask")
    labels = batch.get("labels")
    if mask is None and labels is None:
        return None
    mask = torch.ones_like(labels, dtype=torch.bool) if mask is None else mask.bool()
    if isinstance(labels, torch.Tensor) and labels.shape == mask.shape:
        mask = mask & (labels != -100)
    return mask
