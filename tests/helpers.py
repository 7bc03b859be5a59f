"""Test helpers: tiny models built from configs (no downloads), fixed seeds."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def tiny_llama(layers: int = 2, vocab: int = 97):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=layers,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).eval()


def tiny_gpt2(layers: int = 2, vocab: int = 97):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(vocab_size=vocab, n_embd=32, n_layer=layers, n_head=4, n_positions=64)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(cfg).eval()


class ToyNet(nn.Module):
    """Every supported layer type in one small model: Embedding, Conv2d, Linear (with and without bias)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 12)
        self.conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(12 + 8, 16)
        self.fc2 = nn.Linear(16, 10, bias=False)
        self.norm = nn.LayerNorm(16)

    def forward(self, tokens: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        e = self.embed(tokens).mean(1)                      # (B, 12)
        c = self.conv(image).mean((2, 3))                    # (B, 8)
        h = torch.relu(self.norm(self.fc1(torch.cat([e, c], -1))))
        return self.fc2(h)


def toy_inputs(batch: int = 4):
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 20, (batch, 5), generator=g), torch.randn(batch, 3, 6, 6, generator=g)


def perturb(model: nn.Module, std: float = 0.1) -> None:
    """Move every trainable tensor off its init so that adapters change the output."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(std * torch.randn(p.shape, generator=g, dtype=p.dtype))


def ids(batch: int = 2, length: int = 9, vocab: int = 97):
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(3))


def fit(model, x: torch.Tensor, target: torch.Tensor, steps: int = 15, lr: float = 3e-2) -> list[float]:
    """Adam on the adapter's parameters against an MSE target; the loss after each step's forward."""
    import rankwise

    opt = torch.optim.Adam(rankwise.trainable_parameters(model), lr=lr)
    losses = []
    for _ in range(steps):
        loss = (model(x) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
