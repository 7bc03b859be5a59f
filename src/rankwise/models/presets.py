"""Llama-style causal LMs built from ``transformers.LlamaConfig`` — the shapes used by the
low-rank pretraining papers, plus tiny ones for CPU.

``llama-60m`` / ``llama-130m`` follow the GaLore paper's Table 2 models (arXiv 2403.03507):
hidden 512 / 768, intermediate 1376 / 2048, 8 / 12 heads, 8 / 12 layers, context 256.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError

# name -> (hidden, intermediate, heads, layers, max context)
LLAMA_PRESETS: dict[str, tuple[int, int, int, int, int]] = {
    "llama-tiny": (128, 352, 4, 4, 256),
    "llama-small": (256, 688, 4, 6, 256),
    "llama-60m": (512, 1376, 8, 8, 256),
    "llama-130m": (768, 2048, 12, 12, 256),
}


def llama_config(preset: str, vocab_size: int):
    """The ``transformers.LlamaConfig`` of ``preset`` with ``vocab_size`` tokens."""
    from transformers import LlamaConfig

    if preset not in LLAMA_PRESETS:
        raise ConfigError(f"unknown model preset {preset!r}; choose one of {sorted(LLAMA_PRESETS)}")
    hidden, inter, heads, layers, ctx = LLAMA_PRESETS[preset]
    return LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=inter, num_attention_heads=heads,
                       num_key_value_heads=heads, num_hidden_layers=layers, max_position_embeddings=ctx,
                       tie_word_embeddings=False, bos_token_id=0, eos_token_id=0, pad_token_id=0)


def build_causal_lm(preset: str, vocab_size: int, seed: int = 0) -> nn.Module:
    """A freshly initialised ``LlamaForCausalLM`` of ``preset`` (weights depend only on ``seed``)."""
    from transformers import LlamaForCausalLM

    config = llama_config(preset, vocab_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model


@torch.no_grad()
def lm_loss(model: nn.Module, windows) -> float:
    """Mean next-token cross-entropy of ``model`` over an iterable of (batch, seq) id windows.

    Weighted by predicted tokens, so the result does not depend on how windows are batched.
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for x in windows:
            logits = model(input_ids=x).logits[:, :-1]  # (b, t-1, vocab)
            target = x[:, 1:]
            total += torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), target.flatten(),
                                                       reduction="sum").item()
            count += target.numel()
    finally:
        model.train(was_training)
    if count == 0:
        raise ConfigError("lm_loss got no windows to evaluate")
    return total / count
