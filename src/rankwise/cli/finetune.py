"""``rankwise finetune``: adapt a pretrained model (or a preset) to a text or labelled-text file with one method."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..train.config import setting
from .common import Run, run_method, start
from .settings import RunSettings, check_method

HELP = "fine-tune a model with one method (any adapter, low-rank optimizer, or full AdamW)"


@dataclass
class FinetuneConfig(RunSettings):
    """``rankwise finetune`` settings."""

    model: str = setting("minilm", "a preset (minilm, llama-tiny, …) or a Hugging Face model folder")
    data: str = setting("", "text file/folder (causal LM) or .tsv/.csv/.jsonl with text and label columns")
    method: str = setting("lora", "method name from rankwise.methods() (adapter, optimizer or reparam), or 'adamw'")
    epochs: float = setting(0.0, "if > 0: train this many epochs over the training rows (sets steps)", min=0)
    steps: int = setting(200, "optimizer steps (ignored when epochs > 0)", min=1)
    lr: float = setting(5e-4, "peak learning rate", gt=0)
    batch_size: int = setting(32, "sequences per micro-batch", min=1)
    warmup: float = setting(0.06, "fraction of the steps spent in linear warmup", min=0, lt=1)
    lr_schedule: str = setting("linear", "learning-rate decay after warmup", choices=("cosine", "linear", "constant"))
    min_lr_ratio: float = setting(0.0, "final learning rate as a fraction of the peak", min=0)
    out: str = setting("runs/finetune", "output folder: config.yaml, metrics, checkpoint, adapter")


    def validate(self) -> None:
        super().validate()
        check_method(self.method)


ALIASES: dict[str, str] = {}


def run(cfg: FinetuneConfig, resume: bool = False) -> Run:
    """Run ``rankwise finetune``; returns the trained model and its results."""
    out = Path(cfg.out)
    setup = start(cfg, out)
    if cfg.epochs > 0:
        per_epoch = getattr(setup.task, "batches_per_epoch", None)
        if per_epoch is None:
            from ..errors import ConfigError

            raise ConfigError("epochs applies to classification data; for text set steps instead")
        cfg.steps = max(1, math.ceil(cfg.epochs * per_epoch / cfg.grad_accum))
        from .config import write_config

        write_config(cfg, out / "config.yaml")
    return run_method(cfg, cfg.method, out, setup, resume=resume)
CONFIG = FinetuneConfig
