"""``rankwise bench``: several methods on the same model, data and token budget; a table and a report.

With no arguments it pretrains the ``llama-tiny`` preset on this Python's standard-library sources
(byte-level BPE trained on them) with full AdamW, LoRA, DoRA, PiSSA, GaLore, Fira and APOLLO, and
writes ``runs/bench/``: ``summary.md`` (the table, the settings, the machine), ``results.json``,
``loss_curves.png`` and ``config.yaml``. ``--sweep-lr`` runs each method over a small log-spaced
grid around its base learning rate and keeps the best (by validation loss, or accuracy) — methods
differ in their best learning rate, so one shared rate would misrank them.

Peak memory is what each run adds on top of the process (sampled resident memory on CPU, allocated
memory on CUDA); by default (``isolate``) each method runs in a fresh process, so that number is its own.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..train.config import check_fields, setting
from ..train.method import FULL, family_of
from .common import result_dict, run_method, start
from .memory import PeakMemory
from .pretrain import PRETRAIN_SAVED
from .report import format_table, write_report
from .settings import RunSettings, check_method
from .setup import build_setup

HELP = "compare methods on one model, data and token budget; print a table and write a report"
DEFAULT_METHODS = ["adamw", "lora", "dora", "pissa", "galore", "fira", "apollo"]
# base learning rates per family for the default (pretraining-from-scratch) setting; --sweep-lr searches around them
DEFAULT_LR = {"adamw": 2e-3, "adapter": 4e-3, "optimizer": 4e-3, "reparam": 2e-3}
ALIASES: dict[str, str] = {"preset": "model"}


@dataclass
class BenchConfig(RunSettings):
    """``rankwise bench`` settings."""

    methods: list[str] = setting(DEFAULT_METHODS, "methods to compare (catalogue names, or adamw); defaults that "
                                 "this install lacks are listed as unavailable")
    lr: float = setting(0.0, "base learning rate for every method (0: per family: " + ", ".join(
        f"{k} {v:g}" for k, v in DEFAULT_LR.items()) + ")", min=0)
    lrs: dict = setting({}, "per-method base learning rates, e.g. \"{lora: 1e-3}\"")
    sweep_lr: bool = setting(False, "try each method at base·m for m in lr_grid and keep its best")
    lr_grid: list[float] = setting([0.25, 1.0, 4.0], "learning-rate multipliers tried with sweep_lr")
    steps: int = setting(200, "optimizer steps per run (the token budget is steps·batch_size·max_length)", min=1)
    batch_size: int = setting(8, "sequences per micro-batch", min=1)
    eval_every: int = setting(100, "evaluate every N steps (0: only at the end)", min=0)
    eval_batches: int = setting(10, "validation batches per evaluation", min=1)
    rank: int | None = setting(16, "rank for every method that has one", min=1)
    modules_to_save: list[str] = setting(PRETRAIN_SAVED, "adapter methods: modules trained in full too")
    isolate: bool = setting(True, "run each method in a fresh process, so its peak memory is its own (false: "
                            "faster, but later runs reuse memory freed by earlier ones and report less)")
    out: str = setting("runs/bench", "report folder")

    def validate(self) -> None:
        super().validate()
        check_fields(self)
        if not self.methods:
            raise ConfigError("methods is empty; name at least one, e.g. methods=adamw,lora")
        if any(not (isinstance(m, int | float) and m > 0) for m in self.lr_grid):
            raise ConfigError(f"lr_grid must hold positive multipliers, got {self.lr_grid}")
        for name in self.methods:
            if name in FULL or name not in DEFAULT_METHODS:
                self.check_method(name)
        for name, value in self.lrs.items():
            if name not in self.methods:
                raise ConfigError(f"lrs names {name!r}, which is not in methods {self.methods}")
            if not (isinstance(value, int | float) and value > 0):
                raise ConfigError(f"lrs[{name!r}]={value!r} must be a positive number")

    check_method = staticmethod(check_method)

    def base_lr(self, method: str) -> float:
        if method in self.lrs:
            return float(self.lrs[method])
        return self.lr or DEFAULT_LR[family_of(method)]


def available(name: str) -> str | None:
    """None if ``name`` can run in this install, else why not."""
    try:
        BenchConfig.check_method(name)
        family = family_of(name)
    except ConfigError:
        return "not in this install's method catalogue"
    import rankwise

    if family == "optimizer" and not hasattr(rankwise.optim, "build_optimizer"):
        return "rankwise.optim.build_optimizer missing"
    if family == "reparam" and not hasattr(rankwise, "reparameterize"):
        return "rankwise.reparameterize missing"
    return None


def measure(cfg_dict: dict[str, Any], method: str, lr: float, out: str, setup=None) -> dict[str, Any]:
    """One run of ``method`` at ``lr``; its result.json fields plus peak memory (in a child process if isolated)."""
    cfg = BenchConfig(**cfg_dict)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if setup is None:
        setup = build_setup(cfg, Path(cfg.out))  # the tokenizer is cached in the report folder
    with PeakMemory() as mem:
        run = run_method(dataclasses.replace(cfg, progress=False), method, Path(out), setup, lr=lr)
    row = result_dict(method, lr, run.prepared, run.result, setup)
    row["peak_mb"] = mem.mb
    return row


def _measure_isolated(cfg_dict: dict[str, Any], method: str, lr: float, out: str) -> dict[str, Any]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure, cfg_dict, method, lr, out).result()


def run(cfg: BenchConfig) -> list[dict[str, Any]]:
    """Run the comparison, print the table, write the report; returns one row per method."""
    out = Path(cfg.out)
    t0 = time.perf_counter()
    setup = start(cfg, out)  # prepares (and caches) the tokenizer and checks model and data once
    cfg_dict = dataclasses.asdict(cfg)
    rows = []
    for method in cfg.methods:
        why = available(method)
        if why is not None:
            rows.append({"method": method, "unavailable": why})
            print(f"bench: skipping {method}: {why}")
            continue
        base = cfg.base_lr(method)
        grid = [base * m for m in cfg.lr_grid] if cfg.sweep_lr else [base]
        tried = []
        for lr in grid:
            run_out = out / "runs" / (f"{method}-lr{lr:.3g}" if cfg.sweep_lr else method)
            print(f"bench: {method} lr={lr:.3g} ({len(tried) + 1}/{len(grid)}) …", flush=True)
            if cfg.isolate:
                row = _measure_isolated(cfg_dict, method, lr, str(run_out))
            else:
                row = measure(cfg_dict, method, lr, str(run_out), setup)
            row["run"] = str(run_out.relative_to(out))
            tried.append(row)
        best = min(tried, key=lambda r: _score(r, setup.kind))
        best["sweep"] = [{"lr": r["lr"], **r["final_eval"]} for r in tried] if cfg.sweep_lr else []
        rows.append(best)
    wall = time.perf_counter() - t0
    table = format_table(rows, setup.kind)
    print(table)
    write_report(cfg, rows, table, setup, out, wall)
    print(f"bench: report in {out / 'summary.md'} ({wall:.0f}s)")
    return rows


def _score(row: dict[str, Any], kind: str) -> float:
    ev = row["final_eval"]
    if kind == "classification":
        return -ev["val_accuracy"]
    return ev["val_loss"] if math.isfinite(ev["val_loss"]) else math.inf


CONFIG = BenchConfig
