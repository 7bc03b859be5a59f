"""Model presets built from configs (nothing is downloaded)."""

from .presets import LLAMA_PRESETS, build_causal_lm, llama_config, lm_loss

__all__ = ["LLAMA_PRESETS", "build_causal_lm", "llama_config", "lm_loss"]
