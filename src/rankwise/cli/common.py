"""One training run from settings: build, apply the method, train, save — shared by finetune, pretrain, bench."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..io.files import write_json
from ..train import Prepared, TrainResult, method_kwargs, prepare_method, train
from .config import write_config
from .settings import RunSettings
from .setup import Setup, build_setup

CALIBRATION_BATCHES = 4


@dataclass
class Run:
    """A finished run."""

    model: nn.Module
    prepared: Prepared
    result: TrainResult
    setup: Setup
    prepare_s: float = 0.0  # applying the method: decompositions, calibration pass, optimizer construction


def set_threads(n: int) -> None:
    if n > 0:
        torch.set_num_threads(n)


def run_method(cfg: RunSettings, method: str, out: Path, setup: Setup, resume: bool = False,
               lr: float | None = None) -> Run:
    """Train a fresh model from ``setup`` with ``method``; writes metrics, checkpoint, adapter and result.json.

    Adapter-family methods save their trained update in ``out/adapter`` (``rankwise.save_adapter``, or the
    method's ``save`` hook: LIFT writes a sparse update that ``rankwise.sparse.load_lift`` reads).
    """
    out = Path(out)
    if lr is not None:
        cfg = dataclasses.replace(cfg, lr=lr)
    torch.manual_seed(cfg.seed)
    model = setup.make_model()
    settings = {**cfg.method_settings(), "modules_to_save": list(dict.fromkeys([*cfg.modules_to_save, *setup.heads]))}
    kwargs = method_kwargs(method, settings)
    calibration = lambda: [setup.task.batch(i, 0) for i in range(CALIBRATION_BATCHES)]  # noqa: E731
    t0 = time.perf_counter()
    prepared = prepare_method(model, method, kwargs, lr=cfg.lr, total_steps=cfg.steps,
                              weight_decay=cfg.weight_decay, calibration=calibration)
    prepare_s = time.perf_counter() - t0
    result = train(model, setup.task, prepared, cfg, out, resume=resume)
    if prepared.family == "adapter":
        import rankwise

        save = rankwise.get_method(method).save  # a method's own format (LIFT: lift.json + lift.safetensors)
        if save is not None:
            save(model, prepared.schedule, out / "adapter")
        else:
            rankwise.save_adapter(model, out / "adapter")
    write_json(out / "result.json", {**result_dict(method, cfg.lr, prepared, result, setup), "prepare_s": prepare_s})
    return Run(model, prepared, result, setup, prepare_s)


def result_dict(method: str, lr: float, prepared: Prepared, result: TrainResult, setup: Setup) -> dict[str, Any]:
    return {"method": method, "family": prepared.family, "lr": lr, "steps": result.steps,
            "final_eval": result.final_eval, "train_loss": result.train_loss, "trainable": result.trainable,
            "optimizer_state_bytes": result.optimizer_state_bytes, "tokens": result.tokens,
            "tokens_per_s": result.tokens_per_s, "wall_s": result.wall_s, "data": setup.info}


def start(cfg: RunSettings, out: Path) -> Setup:
    """Common start of a command: threads, output folder, resolved config, model and data."""
    set_threads(cfg.threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_config(cfg, out / "config.yaml")
    return build_setup(cfg, out)
