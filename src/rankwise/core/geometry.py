"""How each supported layer type looks as a matrix.

Every adapter works on the *matrix view* of a layer's weight, W0 of shape (m, n) = (out, in):

| layer            | stored weight         | matrix view W0 (m × n)                     |
|------------------|-----------------------|--------------------------------------------|
| ``nn.Linear``    | (out, in)             | the weight itself                          |
| HF ``Conv1D``    | (in, out)             | weightᵀ                                    |
| ``nn.Embedding`` | (num_embeddings, dim) | weightᵀ: m = dim, n = num_embeddings       |
| ``nn.Conv2d``    | (out, in, kh, kw)     | weight.reshape(out, in·kh·kw)              |

These are the conventions Hugging Face PEFT uses for ``lora_A`` (r × n) and ``lora_B`` (m × r), so
factors map one-to-one onto PEFT's files. A geometry also knows how to run the first factor
(x ↦ A·x in the layer's own sense: a matmul, an embedding lookup, a convolution) and the second
(h ↦ B·h), so an adapter never has to form the m × n product in its forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("linear", "conv1d", "embedding", "conv2d")


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype merges and norms are computed in: fp32 for half types, fp64 stays fp64."""
    return torch.promote_types(dtype, torch.float32)


def is_hf_conv1d(module: nn.Module) -> bool:
    """True for transformers' ``Conv1D`` (GPT-2 style: a Linear whose weight is stored (in, out))."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and getattr(module, "weight", None) is not None


def layer_kind(module: nn.Module) -> str | None:
    """The kind of a supported layer (one of ``KINDS``), or None when rankwise cannot adapt it."""
    if isinstance(module, nn.Linear):
        return "linear"
    if is_hf_conv1d(module):
        return "conv1d"
    if isinstance(module, nn.Embedding):
        return "embedding"
    if isinstance(module, nn.Conv2d) and module.groups == 1:
        return "conv2d"
    return None


@dataclass(frozen=True)
class LayerGeometry:
    """Shapes and conventions of one supported layer.

    Attributes:
        kind: one of ``KINDS``.
        out_features: m, rows of the matrix view (and length of DoRA's magnitude vector).
        in_features: n, columns of the matrix view.
        weight_shape: the stored weight's shape.
    """

    kind: str
    out_features: int
    in_features: int
    weight_shape: tuple[int, ...]

    @staticmethod
    def of(module: nn.Module) -> LayerGeometry:
        """The geometry of a supported layer; TypeError for any other module."""
        kind = layer_kind(module)
        if kind is None:
            raise TypeError(f"{type(module).__name__} is not a supported layer type")
        shape = tuple(module.weight.shape)
        if kind == "linear":
            m, n = shape
        elif kind == "conv1d":
            n, m = shape
        elif kind == "embedding":
            n, m = shape
        else:  # conv2d
            m = shape[0]
            n = shape[1] * shape[2] * shape[3]
        return LayerGeometry(kind, m, n, shape)

    @property
    def max_rank(self) -> int:
        """min(m, n): the largest rank a ΔW of this layer can have."""
        return min(self.out_features, self.in_features)

    # ---- weight <-> matrix view -------------------------------------------------------------
    def matrix(self, weight: torch.Tensor) -> torch.Tensor:
        """The (m, n) matrix view of a stored weight (a view, no copy)."""
        if self.kind == "linear":
            return weight
        if self.kind in ("conv1d", "embedding"):
            return weight.t()
        return weight.reshape(self.out_features, self.in_features)

    def to_weight(self, matrix: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`matrix`: an (m, n) matrix laid out like the stored weight."""
        if self.kind == "linear":
            return matrix
        if self.kind in ("conv1d", "embedding"):
            return matrix.t()
        return matrix.reshape(self.weight_shape)

    def channel(self, vector: torch.Tensor) -> torch.Tensor:
        """Shape an (m,) per-output vector to broadcast against the layer's output."""
        return vector.view(1, -1, 1, 1) if self.kind == "conv2d" else vector

    # ---- factored forward -------------------------------------------------------------------
    def first(self, base: nn.Module, x: torch.Tensor, lora_a: torch.Tensor) -> torch.Tensor:
        """h = A·x in the layer's sense. lora_a: (r, n). Returns (..., r), or (N, r, H', W') for conv2d."""
        if self.kind in ("linear", "conv1d"):
            return x @ lora_a.t()  # (..., n) @ (n, r) -> (..., r)
        if self.kind == "embedding":
            # rows of Aᵀ (n, r) looked up by token id, honouring the base layer's options
            return F.embedding(x, lora_a.t(), base.padding_idx, base.max_norm, base.norm_type,
                               base.scale_grad_by_freq, base.sparse)
        kernel = lora_a.view(lora_a.shape[0], *self.weight_shape[1:])  # (r, in, kh, kw)
        return base._conv_forward(x, kernel, None)  # same stride/padding/dilation/padding_mode as base

    def second_add(self, out: torch.Tensor, h: torch.Tensor, lora_b: torch.Tensor, scale: float) -> torch.Tensor:
        """out + scale · B·h, fused into one matmul-accumulate where the layout allows it."""
        if self.kind == "conv2d":
            return out + scale * torch.einsum("nrhw,mr->nmhw", h, lora_b)
        if h.dtype != out.dtype:  # adapter kept in fp32 over a half-precision base
            return out + (scale * (h @ lora_b.t())).to(out.dtype)
        m = lora_b.shape[0]
        # addmm writes out + scale·(h @ Bᵀ) in one kernel: no separate scale or add pass over (T, m)
        return torch.addmm(out.reshape(-1, m), h.reshape(-1, h.shape[-1]), lora_b.t(), alpha=scale).view(out.shape)

    def base_no_bias(self, base: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """W0·x without the bias (DoRA recomputes this when dropout is active)."""
        if self.kind == "linear":
            return F.linear(x, base.weight)
        if self.kind == "conv1d":
            return x @ base.weight
        if self.kind == "embedding":
            return base(x)
        return base._conv_forward(x, base.weight, None)
