"""Saving and loading adapters: rankwise's own format and Hugging Face PEFT's, both ways."""

from . import peft_adalora  # noqa: F401  (registers PEFT AdaLoRA reading/writing)
from .api import load_adapter, save_adapter

__all__ = ["save_adapter", "load_adapter"]
