"""The one training loop every rankwise command runs.

    prepared = prepare_method(model, "galore", {"rank": 64}, lr=cfg.lr, total_steps=cfg.steps)
    result = train(model, task, prepared, cfg, out="runs/x")          # resume=True continues a run

Per optimizer step: ``grad_accum`` micro-batches (loss + the method's ``loss_term``, scaled by
1/grad_accum), ``schedule.before_step``, gradient clipping, ``optimizer.step``,
``schedule.after_step``; the learning rate is ``base_lr · warmup_decay(step) · schedule.lr_factor(step)``.
A non-finite loss stops the run before the step is taken (``TrainingDiverged``), leaving the last
good checkpoint in place; Ctrl-C finishes the current step, saves a checkpoint and raises
``TrainingInterrupted``. Resuming restores weights, optimizer and method state and RNG states, and
the task's batches depend only on the step, so the resumed run ends with the same weights.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, RankwiseError
from .checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .lr import warmup_decay
from .method import Prepared, optimizer_state_bytes
from .metrics import MetricsLog, Progress
from .tasks import Task


class TrainingDiverged(RankwiseError, RuntimeError):
    """The loss became NaN or infinite; the run stopped and kept its last good checkpoint."""


class TrainingInterrupted(RankwiseError, KeyboardInterrupt):
    """Ctrl-C: the run stopped after saving a checkpoint."""


@dataclass
class TrainResult:
    """What a finished run reports."""

    steps: int
    final_eval: dict[str, float]
    evals: list[dict[str, Any]] = field(default_factory=list)
    train_loss: float = math.nan
    tokens: int = 0
    tokens_per_s: float = 0.0
    wall_s: float = 0.0
    trainable: int = 0
    optimizer_state_bytes: int = 0


class _StopFlag:
    """Turns the first SIGINT into a flag read at the next step boundary; a second one interrupts at once."""

    def __init__(self):
        self.set, self.previous = False, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.set:
            raise KeyboardInterrupt
        self.set = True

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def train(model: nn.Module, task: Task, prepared: Prepared, cfg: TrainConfig, out: str | Path,
          resume: bool = False) -> TrainResult:
    """Train ``model`` (already prepared by a method) on ``task`` for ``cfg.steps`` steps; outputs in ``out``.

    Args:
        resume: continue from ``out/checkpoint`` (an error if there is none); the run then ends with
            the same weights as an uninterrupted run with the same settings.

    Raises:
        TrainingDiverged: the loss became NaN/inf (the message names the step and the checkpoint kept).
        TrainingInterrupted: Ctrl-C (a checkpoint of the last finished step was saved).
    """
    cfg.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    opt, schedule = prepared.optimizer, prepared.schedule
    start, last_saved = 0, None
    if resume:
        ckpt = find_checkpoint(out)
        if ckpt is None:
            raise ConfigError(f"--resume: no checkpoint in {out}; start a new run without --resume")
        start, sched_state, _ = load_checkpoint(ckpt, model, opt)
        schedule.load_state_dict(sched_state)
        last_saved = start
    log = MetricsLog(out, resume_step=start if resume else None)
    elapsed0 = log.elapsed if resume else 0.0
    evals = [r for r in log.rows if r["kind"] == "eval"]
    save_every = cfg.save_every or cfg.eval_every
    params = [p for g in opt.param_groups for p in g["params"]]
    progress = Progress(cfg.steps, start, cfg.progress)
    t0 = time.perf_counter()
    tokens_total, tok_window, t_window = 0, 0, time.perf_counter()
    last_loss = math.nan
    model.train()

    def checkpoint(step: int) -> None:
        nonlocal last_saved
        bad = next((n for n, p in model.named_parameters() if not torch.isfinite(p).all()), None)
        if bad is not None:  # never replace a good checkpoint with a broken one
            raise TrainingDiverged(f"parameter {bad!r} became NaN/inf by step {step}; the run stopped and the last "
                                   f"good checkpoint (step {last_saved}) is kept in {out / 'checkpoint'}. Lower lr "
                                   f"(now {cfg.lr:g}) or keep gradient clipping on")
        save_checkpoint(out, step, model, opt, schedule.state_dict(), {"method": prepared.name})
        last_saved = step

    try:
        with _StopFlag() as stop:
            for step in range(start, cfg.steps):
                factor = warmup_decay(step, cfg.steps, cfg.warmup, cfg.lr_schedule, cfg.min_lr_ratio)
                factor *= schedule.lr_factor(step)
                for g in opt.param_groups:
                    g["lr"] = g["base_lr"] * factor
                step_loss = 0.0
                for micro in range(cfg.grad_accum):
                    batch = task.batch(step, micro)
                    loss = task.loss(model, batch)
                    value = loss.item()
                    if not math.isfinite(value):
                        opt.zero_grad(set_to_none=True)
                        where = (f"the last good checkpoint (step {last_saved}) is kept in {out / 'checkpoint'}"
                                 if last_saved is not None else "no checkpoint had been saved yet")
                        raise TrainingDiverged(
                            f"the training loss became {value} at step {step + 1} (micro-batch {micro}); the run "
                            f"stopped before that update and {where}. Lower lr (now {cfg.lr:g}), keep gradient "
                            f"clipping on (clip={cfg.clip:g}) or lengthen the warmup")
                    (loss + schedule.loss_term()).div(cfg.grad_accum).backward()
                    step_loss += value / cfg.grad_accum
                    n = task.tokens(batch)
                    tokens_total, tok_window = tokens_total + n, tok_window + n
                schedule.before_step(step)
                if cfg.clip > 0:
                    torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], cfg.clip)
                opt.step()
                schedule.after_step(step, opt)
                opt.zero_grad(set_to_none=True)
                params = [p for g in opt.param_groups for p in g["params"]]  # restarts may swap parameters
                last_loss = step_loss
                now = time.perf_counter()
                rate = tokens_total / max(now - t0, 1e-9)
                progress.update(step, step_loss, rate)
                done = step + 1
                if done % cfg.log_every == 0 or done == cfg.steps:
                    log.add({"step": done, "kind": "train", "loss": step_loss, "lr": opt.param_groups[0]["lr"],
                             "tokens": tok_window, "tokens_per_s": tok_window / max(now - t_window, 1e-9),
                             "elapsed_s": elapsed0 + now - t0})
                    tok_window, t_window = 0, time.perf_counter()
                if (cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.steps:
                    row = {"step": done, "kind": "eval", **task.evaluate(model, cfg.eval_batches),
                           "elapsed_s": elapsed0 + time.perf_counter() - t0}
                    log.add(row)
                    evals.append(row)
                if (save_every and done % save_every == 0) or done == cfg.steps:
                    checkpoint(done)
                if stop.set:
                    if last_saved != done:
                        checkpoint(done)
                    raise TrainingInterrupted(f"interrupted after step {done}; checkpoint saved in "
                                              f"{out / 'checkpoint'} (continue with --resume)")
    finally:
        progress.close()
        log.close()
    wall = time.perf_counter() - t0
    final = {k: v for k, v in evals[-1].items() if k.startswith("val_")} if evals else {}
    return TrainResult(steps=cfg.steps, final_eval=final, evals=evals, train_loss=last_loss, tokens=tokens_total,
                       tokens_per_s=tokens_total / max(wall, 1e-9), wall_s=elapsed0 + wall,
                       trainable=prepared.trainable(model), optimizer_state_bytes=optimizer_state_bytes(opt))


