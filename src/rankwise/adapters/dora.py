"""DoRA: weight-decomposed low-rank adaptation, as a wrapper over any parameterisation.

"DoRA: Weight-Decomposed Low-Rank Adaptation", Liu et al., arXiv 2402.09353.

    W = m ⊙ (W0 + ΔW) / ‖W0 + ΔW‖_row

with a trainable magnitude vector m (length = out features, initialised to the row norms of W0).
As in DoRA §4.3 (and PEFT), the norm is treated as a constant: detached from the graph. So

    y = g ⊙ (W0·x + ΔW·x) + bias,   g = m / ‖W0 + ΔW‖   (a per-output-channel vector)

The row norms come from the parameterisation's ``row_norms_with`` (factored for LoRA), so the
(m, n) matrix W0 + ΔW is never formed in training. When dropout is active the W0·x term uses the
dropped-out input, as PEFT does.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.contract import Parameterisation, Wrapper


class DoRA(Wrapper):
    """Magnitude/direction wrapper. ``magnitude``: (m,) trainable."""

    def __init__(self, out_features: int, dtype: torch.dtype, device=None):
        super().__init__()
        self.magnitude = nn.Parameter(torch.ones(out_features, dtype=dtype, device=device))

    def reset_magnitude(self, delta: Parameterisation, w0: torch.Tensor) -> None:
        """m ← ‖W0 + ΔW‖ per row, so that the adapted layer starts equal to the base layer."""
        with torch.no_grad():
            self.magnitude.copy_(delta.row_norms_with(w0))

    def _gain(self, delta: Parameterisation, w0: torch.Tensor) -> torch.Tensor:
        norms = delta.row_norms_with(w0)  # no grad: detached, DoRA §4.3
        return self.magnitude / norms.to(self.magnitude.dtype)

    def forward(self, delta, base, x, x_drop, out, base_out):
        geo = delta.geometry
        w0 = geo.matrix(base.weight)
        gain = self._gain(delta, w0).to(out.dtype)                      # (m,)
        g = geo.channel(gain)
        bias = getattr(base, "bias", None)
        if out is base_out and x_drop is x:
            # Fast path: y = base(x) + ΔW·x includes the bias once; out = g ⊙ (y − b) + b.
            y = delta.add_delta(base, x_drop, base_out)
            if bias is None:
                return y * g
            b = geo.channel(bias)
            return torch.addcmul(b - g * b, y, g)
        # General path (earlier adapters in `out`, or dropout): out + (g − 1)·W0·x_d + g·ΔW·x_d
        #   = (out − W0·x_d) + g ⊙ (W0·x_d + ΔW·x_d), with ΔW·x_d accumulated onto W0·x_d by add_delta.
        w0x = geo.base_no_bias(base, x_drop) if x_drop is not x else (
            base_out if bias is None else base_out - geo.channel(bias))
        return torch.addcmul(out - w0x, delta.add_delta(base, x_drop, w0x), g)

    def fused_forward(self, delta, base, x):
        return delta.fused_forward(base, x, magnitude=self.magnitude)

    def merged_matrix(self, delta, w0, remember=False):
        w = w0 + delta.delta_matrix().to(w0.dtype)
        gain = self.magnitude.detach().to(w0.dtype) / torch.linalg.vector_norm(w, dim=1)
        if remember:
            self._merge_gain = gain  # the merge cannot be inverted without it: W0 = W/γ − ΔW
        return gain[:, None] * w

    def unmerged_matrix(self, delta, w):
        gain = getattr(self, "_merge_gain", None)
        if gain is None:
            raise RuntimeError("DoRA unmerge called without a matching merge")
        del self._merge_gain
        return w / gain[:, None] - delta.delta_matrix().to(w.dtype)
