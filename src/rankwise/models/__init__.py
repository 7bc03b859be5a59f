"""Model presets built from configs, the packaged MiniLM classifier, Hugging Face folders (no downloads)."""

from .classification import MeanPoolClassifier, build_minilm_classifier, load_hf_model, minilm_path
from .presets import LLAMA_PRESETS, build_causal_lm, llama_config, lm_loss

__all__ = ["LLAMA_PRESETS", "build_causal_lm", "llama_config", "lm_loss", "MeanPoolClassifier",
           "build_minilm_classifier", "load_hf_model", "minilm_path"]
