"""``rankwise pretrain``: train a model from scratch with full AdamW, a low-rank optimizer, a
reparameterisation, or an adapter (the GaLore paper's Table 2 setting)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..train.config import setting
from .common import Run, run_method, start
from .settings import RunSettings, check_method

HELP = "pretrain a preset from scratch (AdamW, GaLore/Fira/APOLLO, low-rank reparameterisations, adapters)"
# adapters in pretraining keep embeddings, output head and norms trainable (as ReLoRA/GaLore's LoRA baselines do)
PRETRAIN_SAVED = ["embed_tokens", "lm_head", "norm", "input_layernorm", "post_attention_layernorm"]


@dataclass
class PretrainConfig(RunSettings):
    """``rankwise pretrain`` settings (aliases: --preset for model, --optim for method)."""

    model: str = setting("llama-tiny", "a preset (llama-tiny, llama-small, llama-60m, llama-130m) or a Hugging "
                         "Face causal-LM folder (its weights are the start)")
    method: str = setting("adamw", "'adamw' (full), an optimizer (galore, fira, apollo, …), a reparam method "
                          "(low-rank, relora, …) or an adapter")
    steps: int = setting(600, "optimizer steps", min=1)
    lr: float = setting(1e-3, "peak learning rate", gt=0)
    modules_to_save: list[str] = setting(PRETRAIN_SAVED, "adapter methods: modules trained in full too")
    out: str = setting("runs/pretrain", "output folder: config.yaml, metrics, checkpoint, tokenizer")


    def validate(self) -> None:
        super().validate()
        check_method(self.method)


ALIASES = {"preset": "model", "optim": "method"}


def run(cfg: PretrainConfig, resume: bool = False) -> Run:
    """Run ``rankwise pretrain``."""
    out = Path(cfg.out)
    setup = start(cfg, out)
    return run_method(cfg, cfg.method, out, setup, resume=resume)
CONFIG = PretrainConfig
