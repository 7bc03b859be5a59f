"""LIFT: sparse fine-tuning of the principal weights, those largest in a low-rank approximation of W.

"LIFT the Veil for the Truth: Principal Weights Emerge after Rank Reduction for Reasoning-Focused
Supervised Fine-Tuning", Liu et al., arXiv 2506.00772 (ICML 2025).

For every target weight W (m × n), with W_k its best rank-k approximation (top-k SVD):

    mask = the K entries of largest |W_k|,   K = r·(m + n)  (the parameter count of rank-r LoRA)

Only those entries of W are trained; every ``refresh_every`` steps the mask is recomputed from the
current W. At a refresh the optimizer's moments (any state tensor shaped like W: Adam's exp_avg,
exp_avg_sq) are kept where the old and new masks overlap and zeroed elsewhere, so an entry leaving
the mask gets no further update (zero gradient and zero moments give Adam a zero step).

Not an adapter: the update lives in W itself (nothing to merge). To save it, the schedule records
the original value of every entry it has ever let train, and :func:`save_lift` writes the sparse
difference (indices + values) that :func:`load_lift` adds back onto the base model.

Memory: this implementation keeps W's dense gradient and dense optimizer state for target layers
(the paper's sparse optimizer state is not implemented). Decoupled weight decay would move
entries outside the mask, so it must be 0 for target weights (checked at the first step).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.geometry import acc_dtype
from ..core.targeting import resolve_targets
from ..errors import AdapterFileError, ConfigError
from ..io.files import read_json, read_tensors, write_json, write_tensors
from ..schedule import TrainingSchedule

FORMAT = "rankwise.lift"


@dataclass
class LIFTConfig:
    """Principal-weight sparse fine-tuning.

    Args:
        rank: the LoRA rank whose budget each layer gets: K = rank·(m + n) trainable entries.
        approx_rank: k of the low-rank approximation that picks the entries (capped at min(m, n)).
        refresh_every: steps between mask refreshes (0: never).
        targets, exclude: which layers, as in ``LoRAConfig`` (default every Linear/Conv1D but the head).
        niter: randomized-SVD power iterations (None: exact SVD).
    """

    rank: int = 8
    approx_rank: int = 128
    refresh_every: int = 100
    targets: Any = "all-linear"
    exclude: Sequence[str] = ()
    niter: int | None = None

    def __post_init__(self) -> None:
        for name in ("rank", "approx_rank"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigError(f"LIFTConfig.{name} must be a positive int, got {v!r}")
        if isinstance(self.refresh_every, bool) or not isinstance(self.refresh_every, int) or self.refresh_every < 0:
            raise ConfigError(f"LIFTConfig.refresh_every must be an int ≥ 0, got {self.refresh_every!r}")
        self.exclude = (self.exclude,) if isinstance(self.exclude, str) else tuple(self.exclude)


def principal_mask_indices(w: torch.Tensor, approx_rank: int, budget: int, niter: int | None = None) -> torch.Tensor:
    """Flat indices (sorted) of the ``budget`` largest entries of |W_k|; w is the (m, n) matrix view."""
    w = w.detach().to(acc_dtype(w.dtype))
    k = min(approx_rank, *w.shape)
    if niter is None:
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        u, s, vh = u[:, :k], s[:k], vh[:k]
    else:
        u, s, v = torch.svd_lowrank(w, q=min(k + 8, *w.shape), niter=niter)
        u, s, vh = u[:, :k], s[:k], v[:, :k].t()
    wk = (u * s) @ vh                                          # (m, n), once per refresh, not per step
    budget = min(budget, wk.numel())
    return torch.topk(wk.abs().reshape(-1), budget, sorted=False).indices.sort().values


@dataclass
class _Layer:
    name: str
    weight: nn.Parameter
    kind: str
    budget: int
    idx: torch.Tensor                 # flat indices into the matrix view (m·n)
    touched: torch.Tensor             # every index ever trained (sorted)
    original: torch.Tensor            # W's original values at ``touched``


class LIFTSchedule(TrainingSchedule):
    """Masks gradients (``before_step``) and refreshes masks and optimizer moments (``after_step``)."""

    def __init__(self, model: nn.Module, config: LIFTConfig):
        self.config = config
        self.layers: list[_Layer] = []
        matches = resolve_targets(model, config.targets, config.exclude)
        for p in model.parameters():
            p.requires_grad_(False)
        for mt in matches:
            g, w = mt.geometry, mt.module.weight
            budget = config.rank * (g.out_features + g.in_features)
            idx = principal_mask_indices(g.matrix(w), config.approx_rank, budget, config.niter)
            w.requires_grad_(True)
            self.layers.append(_Layer(mt.name, w, g.kind, budget, idx, idx.clone(), self._flat(g, w)[idx].clone()))
        self._geometries = {mt.name: mt.geometry for mt in matches}
        self._checked = False

    @staticmethod
    def _flat(geometry, w: torch.Tensor) -> torch.Tensor:
        return geometry.matrix(w.detach()).reshape(-1)

    @torch.no_grad()
    def before_step(self, step: int) -> None:
        for layer in self.layers:
            grad = layer.weight.grad
            if grad is None:
                continue
            g = self._geometries[layer.name].matrix(grad)          # (m, n) view of the stored grad
            rows, cols = layer.idx // g.shape[1], layer.idx % g.shape[1]
            keep = g[rows, cols]                                     # (K,) gathered copy
            g.zero_()
            g[rows, cols] = keep

    def after_step(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        if not self._checked:
            self._check_optimizer(optimizer)
        every = self.config.refresh_every
        if every and (step + 1) % every == 0:
            self.refresh(optimizer)

    def _check_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        ids = {id(layer.weight) for layer in self.layers}
        for group in optimizer.param_groups:
            if group.get("weight_decay", 0) and any(id(p) in ids for p in group["params"]):
                raise ConfigError("LIFT trains a sparse subset of W: set weight_decay=0 for the target weights "
                                  "(decoupled decay would move every entry)")
        self._checked = True

    @torch.no_grad()
    def refresh(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Recompute every mask from the current W; keep optimizer moments only on the new mask."""
        for layer in self.layers:
            geo = self._geometries[layer.name]
            new = principal_mask_indices(geo.matrix(layer.weight), self.config.approx_rank, layer.budget,
                                         self.config.niter)
            fresh = new[~torch.isin(new, layer.touched)]
            if fresh.numel():  # untouched entries still hold their original values
                values = self._flat(geo, layer.weight)[fresh]
                touched = torch.cat([layer.touched, fresh])
                order = touched.argsort()
                layer.touched, layer.original = touched[order], torch.cat([layer.original, values])[order]
            layer.idx = new
            if optimizer is not None:
                mask = torch.zeros(geo.out_features * geo.in_features, dtype=torch.bool, device=new.device)
                mask[new] = True
                weight_mask = geo.to_weight(mask.view(geo.out_features, geo.in_features))
                for v in optimizer.state.get(layer.weight, {}).values():
                    if isinstance(v, torch.Tensor) and v.shape == layer.weight.shape:
                        v.mul_(weight_mask.to(v.dtype))

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for layer in self.layers:
            state[f"{layer.name}.idx"] = layer.idx.clone()
            state[f"{layer.name}.touched"] = layer.touched.clone()
            state[f"{layer.name}.original"] = layer.original.clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for layer in self.layers:
            layer.idx = state[f"{layer.name}.idx"].clone()
            layer.touched = state[f"{layer.name}.touched"].clone()
            layer.original = state[f"{layer.name}.original"].clone()

    def sparse_delta(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{layer: (flat indices into the (m, n) view, W − W_original there)} over every entry ever trained."""
        out = {}
        for layer in self.layers:
            now = self._flat(self._geometries[layer.name], layer.weight)[layer.touched]
            out[layer.name] = (layer.touched.clone(), (now - layer.original).clone())
        return out


def lift(model: nn.Module, config: LIFTConfig) -> LIFTSchedule:
    """Freeze ``model`` except the target weights, pick their principal entries, return the schedule.

    Train every parameter that requires grad (``rankwise.trainable_parameters(model)``) with
    weight decay 0, calling the schedule's points around each optimizer step.
    """
    if not isinstance(config, LIFTConfig):
        raise ConfigError(f"config must be a rankwise.sparse.LIFTConfig, got {type(config).__name__}")
    return LIFTSchedule(model, config)


def save_lift(schedule: LIFTSchedule, folder: str | Path) -> Path:
    """Write the trained sparse update (``lift.safetensors`` + ``lift.json``, atomically)."""
    folder = Path(folder)
    tensors, layers = {}, {}
    for name, (idx, delta) in schedule.sparse_delta().items():
        tensors[f"{name}.indices"], tensors[f"{name}.values"] = idx, delta
        layers[name] = list(schedule._geometries[name].weight_shape)
    write_tensors(folder / "lift.safetensors", tensors, metadata={"format": FORMAT})
    write_json(folder / "lift.json", {"format": FORMAT, "config": {**asdict(schedule.config), "targets": None},
                                      "layers": layers})
    return folder


@torch.no_grad()
def load_lift(model: nn.Module, folder: str | Path) -> nn.Module:
    """Add a saved LIFT update onto the base weights of ``model`` (checked fully before any change)."""
    from ..core.geometry import LayerGeometry

    folder = Path(folder)
    meta = read_json(folder / "lift.json")
    if meta.get("format") != FORMAT:
        raise AdapterFileError(f"{folder / 'lift.json'} is not a LIFT file")
    tensors = read_tensors(folder / "lift.safetensors")
    modules = dict(model.named_modules())
    plan = []
    for name, shape in meta.get("layers", {}).items():
        module = modules.get(name)
        if module is None or tuple(module.weight.shape) != tuple(shape):
            raise AdapterFileError(f"{folder}: layer {name!r} (weight {tuple(shape)}) does not fit this model")
        idx, values = tensors.get(f"{name}.indices"), tensors.get(f"{name}.values")
        geo = LayerGeometry.of(module)
        if idx is None or values is None or idx.shape != values.shape or (
                idx.numel() and (idx.min() < 0 or idx.max() >= geo.out_features * geo.in_features)):
            raise AdapterFileError(f"{folder}: tensors of layer {name!r} are missing or malformed")
        if not torch.isfinite(values).all():
            raise AdapterFileError(f"{folder}: values of layer {name!r} contain NaN or inf")
        plan.append((module, geo, idx, values))
    for module, geo, idx, values in plan:
        w = geo.matrix(module.weight)
        n = geo.in_features
        w[idx // n, idx % n] += values.to(w.dtype)
    return model
