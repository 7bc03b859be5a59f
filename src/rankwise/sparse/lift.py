"""LIFT: sparse fine-tuning of the principal weights, those largest in a low-rank approximation of W.

"LIFT the Veil for the Truth: Principal Weights Emerge after Rank Reduction for Reasoning-Focused
Supervised Fine-Tuning", Liu et al., arXiv 2506.00772 (ICML 2025).

For every target weight W (m × n), with W_k its best rank-k approximation (top-k SVD):

    mask = the K entries of largest |W_k|,   K = r·(m + n)  (the parameter count of rank-r LoRA)

Only those entries of W are trained; every ``refresh_every`` steps the mask is recomputed from the
current W. At a refresh the optimizer's moments are kept where the old and new masks overlap and
start at zero for entries new to the mask, so an entry leaving the mask gets no further update.

Two ways to train, with the same trajectory (tested to 1e-6):

* :class:`~rankwise.sparse.LIFTAdamW` (the paper's memory): Adam moments of shape (K,) per target,
  gathered at the mask, so the state is 2·K floats per layer instead of 2·m·n; only masked entries
  move, weight decay included. At a refresh the schedule remaps those (K,) vectors.
* the plain reference path, any torch optimizer: ``before_step`` zeroes W's gradient outside the
  mask and a refresh zeroes the optimizer's W-shaped moments outside the new mask. Its state is
  dense (2·m·n floats for Adam), and decoupled weight decay would move every entry, so it must be 0
  for target weights (checked at the first step).

Either way autograd computes W's gradient in full (m·n per target, freed at ``zero_grad``), and
``before_step`` masks it, so gradient clipping sees the trained entries only. Whole modules named in
``modules_to_save`` (a new classifier head) train in full beside the sparse entries.

Not an adapter: the update lives in W itself (nothing to merge). To save it, the schedule records
the original value of every entry it has ever let train, and :func:`save_lift` writes the sparse
difference (indices + values) that :func:`load_lift` adds back onto the base model, together with
the ``modules_to_save`` weights it copies in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.geometry import LayerGeometry, acc_dtype
from ..core.saved_modules import check_disjoint, saved_parameters, unfreeze
from ..core.targeting import resolve_targets
from ..errors import AdapterFileError, ConfigError
from ..io.files import read_json, read_tensors, write_json, write_tensors
from ..schedule import TrainingSchedule

FORMAT = "rankwise.lift"
SAVED_PREFIX = "__modules_to_save__."


@dataclass
class LIFTConfig:
    """Principal-weight sparse fine-tuning.

    Args:
        rank: the LoRA rank whose budget each layer gets: K = rank·(m + n) trainable entries.
        approx_rank: k of the low-rank approximation that picks the entries (capped at min(m, n)).
        refresh_every: steps between mask refreshes (0: never).
        targets, exclude: which layers, as in ``LoRAConfig`` (default every Linear/Conv1D but the head).
        niter: randomized-SVD power iterations (None: exact SVD).
        modules_to_save: names or name suffixes of whole modules trained in full beside the sparse
            entries (a new classifier head), as ``LoRAConfig.modules_to_save``; saved by :func:`save_lift`.
    """

    rank: int = 8
    approx_rank: int = 128
    refresh_every: int = 100
    targets: Any = "all-linear"
    exclude: Sequence[str] = ()
    niter: int | None = None
    modules_to_save: Sequence[str] = ()

    def __post_init__(self) -> None:
        for name in ("rank", "approx_rank"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigError(f"LIFTConfig.{name} must be a positive int, got {v!r}")
        if isinstance(self.refresh_every, bool) or not isinstance(self.refresh_every, int) or self.refresh_every < 0:
            raise ConfigError(f"LIFTConfig.refresh_every must be an int ≥ 0, got {self.refresh_every!r}")
        self.exclude = (self.exclude,) if isinstance(self.exclude, str) else tuple(self.exclude)
        if isinstance(self.modules_to_save, str):
            self.modules_to_save = (self.modules_to_save,)
        self.modules_to_save = tuple(self.modules_to_save or ())
        if not all(isinstance(m, str) and m for m in self.modules_to_save):
            raise ConfigError(f"LIFTConfig.modules_to_save must be a list of module names or suffixes, "
                              f"got {self.modules_to_save!r}")


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


def storage_indices(geometry: LayerGeometry, idx: torch.Tensor) -> torch.Tensor:
    """Positions in the stored weight (row-major, ``weight.view(-1)``) of flat indices into its (m, n) view.

    The matrix view of a contiguous weight has strides (s0, s1) (a Conv1D's is transposed: (1, m)),
    so entry (i, j) sits at i·s0 + j·s1.
    """
    s0, s1 = geometry.matrix(torch.empty(geometry.weight_shape, device="meta")).stride()
    n = geometry.in_features
    return (idx // n) * s0 + (idx % n) * s1


@dataclass
class _Layer:
    name: str
    weight: nn.Parameter
    kind: str
    budget: int
    idx: torch.Tensor                 # flat indices into the matrix view (m·n), sorted
    touched: torch.Tensor             # every index ever trained (sorted)
    original: torch.Tensor            # W's original values at ``touched``
    flat: torch.Tensor                # ``idx`` as positions in the stored weight (``weight.view(-1)``)


class LIFTSchedule(TrainingSchedule):
    """Masks gradients (``before_step``) and refreshes masks and optimizer moments (``after_step``).

    Attributes:
        layers: one entry per target weight (``idx``: its current mask).
        saved: ``{parameter name: parameter}`` of the ``modules_to_save`` modules, trained in full.
        refreshes: how many refreshes have run (a :class:`LIFTAdamW` checks its state is aligned to them).
    """

    def __init__(self, model: nn.Module, config: LIFTConfig):
        self.config = config
        self.layers: list[_Layer] = []
        matches = resolve_targets(model, config.targets, config.exclude)
        if config.modules_to_save:  # every check before anything changes
            check_disjoint(model, config.modules_to_save, [mt.name for mt in matches])
        self.saved = saved_parameters(model, config.modules_to_save)
        picked = []
        for mt in matches:
            g, w = mt.geometry, mt.module.weight
            budget = config.rank * (g.out_features + g.in_features)
            picked.append((mt, budget, principal_mask_indices(g.matrix(w), config.approx_rank, budget, config.niter)))
        for p in model.parameters():
            p.requires_grad_(False)
        for mt, budget, idx in picked:
            g, w = mt.geometry, mt.module.weight
            w.requires_grad_(True)
            self.layers.append(_Layer(mt.name, w, g.kind, budget, idx, idx.clone(), self._flat(g, w)[idx].clone(),
                                      storage_indices(g, idx)))
        unfreeze(model, config.modules_to_save)
        self._geometries = {mt.name: mt.geometry for mt in matches}
        self.refreshes = 0
        self._checked = False

    @staticmethod
    def _flat(geometry, w: torch.Tensor) -> torch.Tensor:
        return geometry.matrix(w.detach()).reshape(-1)

    def trainable_count(self) -> int:
        """Entries that train: K per target weight plus every ``modules_to_save`` parameter."""
        return sum(layer.idx.numel() for layer in self.layers) + sum(p.numel() for p in self.saved.values())

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

    def _sparse_optimizer(self, optimizer: torch.optim.Optimizer | None):
        """``optimizer`` if it is a LIFTAdamW (refused when built for another schedule), else None."""
        from .lift_adamw import LIFTAdamW

        if not isinstance(optimizer, LIFTAdamW):
            return None
        if optimizer.schedule is not self:
            raise ConfigError("this LIFTAdamW was built for another LIFTSchedule; build it with "
                              "LIFTAdamW(params, schedule) from the schedule that trains this model")
        return optimizer

    def _check_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        if self._sparse_optimizer(optimizer) is None:  # LIFTAdamW decays only the trained entries
            ids = {id(layer.weight) for layer in self.layers}
            for group in optimizer.param_groups:
                if group.get("weight_decay", 0) and any(id(p) in ids for p in group["params"]):
                    raise ConfigError("LIFT trains a sparse subset of W: set weight_decay=0 for the target weights "
                                      "(decoupled decay would move every entry), or train with "
                                      "rankwise.sparse.LIFTAdamW, which decays only the trained entries")
        self._checked = True

    @torch.no_grad()
    def refresh(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Recompute every mask from the current W; keep optimizer moments only on the new mask.

        With a :class:`LIFTAdamW`, its (K,) moments are remapped (kept where old and new masks
        overlap, zero for new entries); with any other optimizer, state tensors shaped like W are
        zeroed outside the new mask. Pass the optimizer that trains the model: a LIFTAdamW whose
        state was not remapped refuses its next step.
        """
        sparse = self._sparse_optimizer(optimizer)
        self.refreshes += 1
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
            old, layer.idx, layer.flat = layer.idx, new, storage_indices(geo, new)
            if sparse is not None:
                sparse.remap(layer.weight, old, new)
            elif optimizer is not None:
                mask = torch.zeros(geo.out_features * geo.in_features, dtype=torch.bool, device=new.device)
                mask[new] = True
                weight_mask = geo.to_weight(mask.view(geo.out_features, geo.in_features))
                for v in optimizer.state.get(layer.weight, {}).values():
                    if isinstance(v, torch.Tensor) and v.shape == layer.weight.shape:
                        v.mul_(weight_mask.to(v.dtype))

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"refreshes": self.refreshes}
        for layer in self.layers:
            state[f"{layer.name}.idx"] = layer.idx.clone()
            state[f"{layer.name}.touched"] = layer.touched.clone()
            state[f"{layer.name}.original"] = layer.original.clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = [f"{layer.name}.{k}" for layer in self.layers for k in ("idx", "touched", "original")
                   if f"{layer.name}.{k}" not in state]
        if missing:
            raise ConfigError(f"LIFT state does not fit this schedule: missing {missing[:3]}; load the state of a "
                              "schedule built with the same model and targets")
        for layer in self.layers:
            layer.idx = state[f"{layer.name}.idx"].clone()
            layer.touched = state[f"{layer.name}.touched"].clone()
            layer.original = state[f"{layer.name}.original"].clone()
            layer.flat = storage_indices(self._geometries[layer.name], layer.idx)
        self.refreshes = int(state.get("refreshes", 0))

    def sparse_delta(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{layer: (flat indices into the (m, n) view, W − W_original there)} over every entry ever trained."""
        out = {}
        for layer in self.layers:
            now = self._flat(self._geometries[layer.name], layer.weight)[layer.touched]
            out[layer.name] = (layer.touched.clone(), (now - layer.original).clone())
        return out


def lift(model: nn.Module, config: LIFTConfig) -> LIFTSchedule:
    """Freeze ``model`` except the target weights and ``modules_to_save``; pick the principal entries.

    Returns the schedule. Train every parameter that requires grad (``rankwise.trainable_parameters(model)``)
    with ``LIFTAdamW(params, schedule, lr=...)`` (sparse (K,) moments, any weight decay), or with any
    torch optimizer and weight decay 0 on the target weights (the dense reference path), calling the
    schedule's points around each optimizer step.
    """
    if not isinstance(config, LIFTConfig):
        raise ConfigError(f"config must be a rankwise.sparse.LIFTConfig, got {type(config).__name__}")
    return LIFTSchedule(model, config)


def _json_targets(targets: Any) -> Any:
    """The targets as JSON (names and regexes); None when they include module types."""
    items = [targets] if isinstance(targets, str) else list(targets) if isinstance(targets, Sequence) else [targets]
    if all(isinstance(t, str) for t in items):
        return targets if isinstance(targets, str) else items
    return None


def save_lift(schedule: LIFTSchedule, folder: str | Path) -> Path:
    """Write the trained sparse update and the ``modules_to_save`` weights (``lift.safetensors`` + ``lift.json``)."""
    if not isinstance(schedule, LIFTSchedule):
        raise ConfigError(f"save_lift needs the LIFTSchedule returned by lift(), got {type(schedule).__name__}")
    folder = Path(folder)
    tensors, layers = {}, {}
    for name, (idx, delta) in schedule.sparse_delta().items():
        tensors[f"{name}.indices"], tensors[f"{name}.values"] = idx, delta
        layers[name] = list(schedule._geometries[name].weight_shape)
    for pname, p in schedule.saved.items():
        tensors[SAVED_PREFIX + pname] = p.detach()
    config = {**asdict(schedule.config), "targets": _json_targets(schedule.config.targets),
              "exclude": list(schedule.config.exclude), "modules_to_save": list(schedule.config.modules_to_save)}
    write_tensors(folder / "lift.safetensors", tensors, metadata={"format": FORMAT})
    write_json(folder / "lift.json", {"format": FORMAT, "config": config, "layers": layers,
                                      "saved_parameters": sorted(schedule.saved)})
    return folder


@torch.no_grad()
def load_lift(model: nn.Module, folder: str | Path) -> nn.Module:
    """Add a saved LIFT update onto the base weights of ``model`` and copy in its ``modules_to_save`` weights.

    Every layer and tensor is checked before anything is changed.
    """
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
    params = dict(model.named_parameters())
    copies = []
    for pname in meta.get("saved_parameters", []):
        t = tensors.get(SAVED_PREFIX + pname)
        if t is None:
            raise AdapterFileError(f"{folder}: the weights of saved module parameter {pname!r} are missing")
        if pname not in params:
            raise AdapterFileError(f"{folder}: saved module parameter {pname!r} (modules_to_save) does not exist in "
                                   f"{type(model).__name__}")
        if tuple(params[pname].shape) != tuple(t.shape):
            raise AdapterFileError(f"{folder}: saved module parameter {pname!r} has shape {tuple(t.shape)}, the "
                                   f"model's is {tuple(params[pname].shape)}")
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise AdapterFileError(f"{folder}: saved module parameter {pname!r} contains NaN or inf")
        copies.append((params[pname], t))
    for module, geo, idx, values in plan:
        w = geo.matrix(module.weight)
        n = geo.in_features
        w[idx // n, idx % n] += values.to(w.dtype)
    for p, t in copies:
        p.copy_(t)
    return model
