"""LIFT: sparse fine-tuning of the principal weights, those largest in a low-rank approximation of W.

"LIFT the Veil for the Truth: Principal Weights Emerge after Rank Reduction for Reasoning-Focused
Supervised Fine-Tuning", Liu et al., arXiv 2506.00772 (ICML 2025).

For every target weight W (m × n), with W_k its best rank-k approximation (top-k SVD):

    mask = the K entries of largest |W_k|,   K = r·(m + n)  (the parameter count of rank-r LoRA)

Only those entries of W train; every ``refresh_every`` steps the mask is recomputed from the current
weight. At a refresh the optimizer's moments are kept where the old and new masks overlap and start at
zero for entries new to the mask, so an entry leaving the mask gets no further update.

How it trains here: W stays frozen and the trained entries live in a sparse delta on the mask,

    y = W·x + S·x + b,   S = scatter(values) (m × n, nonzero only at the mask),   values ∈ R^K trained,

which is the same function as training W's masked entries (W_eff = W + S). S·x and its gradients run as
sparse CSR products (:mod:`rankwise.core.sparse_matmul`: S·xᵀ, Sᵀ·∂yᵀ, and ∂values as the sampled dense
product ∂yᵀ·x on the mask), so no m × n gradient or matrix exists in the training step: memory and
compute are LoRA-like (K values, their gradient and 2·K Adam moments per layer, plus the CSR index
arrays of the mask: 3 int64 per entry, built once per refresh). Any torch optimizer trains
``rankwise.trainable_parameters(model)`` (the values and the ``modules_to_save`` modules); decoupled
weight decay (AdamW) then decays the trained delta S toward zero, as it decays LoRA's factors, not W.
A refresh (:meth:`LIFTSchedule.refresh`) folds S into W (W ← W + S, once per refresh, the only m × n
write), recomputes the mask from that W (one SVD per layer), sets the values of the new mask to zero,
and remaps every optimizer state tensor shaped like ``values`` (AdamW's moments) onto the new mask.
The plain reference path (``SparseDelta.reference = True``) forms S densely and adds x·Sᵀ; tests
check that both agree, and that training the values follows torch's AdamW on W's masked entries
(dense W, gradients masked) to 1e-6 across refreshes.

Whole modules named in ``modules_to_save`` (a new classifier head) train in full beside the values.

To save the update, the schedule records the original value of every entry it has ever let train, and
:func:`save_lift` writes the sparse difference W + S − W_original there (indices + values), which
:func:`load_lift` adds back onto the base model, together with the ``modules_to_save`` weights it copies
in. :meth:`LIFTSchedule.merge_and_unload` folds S into W and removes the deltas, leaving a plain model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.geometry import LayerGeometry, acc_dtype
from ..core.registry import adapter_dtype
from ..core.saved_modules import check_disjoint, check_saved_tensors, saved_parameters, unfreeze
from ..core.sparse_matmul import CSRLayout, SparseMatmul
from ..core.targeting import resolve_targets
from ..errors import AdapterFileError, ConfigError, TargetError
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


def remap_entries(values: torch.Tensor, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Values at sorted indices ``old`` → values at sorted indices ``new``: kept where both hold the index, else 0."""
    out = values.new_zeros(new.shape)
    if old.numel() == 0 or new.numel() == 0:
        return out
    pos = torch.searchsorted(old, new).clamp_(max=old.numel() - 1)
    hit = old[pos] == new
    out[hit] = values[pos[hit]]
    return out


DELTA_ATTR = "rankwise_lift"  # the child holding S on each target layer ("rankwise" names are never targets)


class SparseDelta(nn.Module):
    """S (m × n) of one target layer: trainable ``values`` (K,) at the mask ``idx``; adds S·x to the layer output.

    ``idx`` holds sorted flat indices into the (m, n) matrix view (row-major: entry (i, j) is i·n + j), so
    rows = idx // n, cols = idx % n is the row-major support :class:`~rankwise.core.sparse_matmul.CSRLayout`
    needs. It is a persistent buffer: ``model.state_dict()`` carries the values together with their positions.
    The values are fp32 over a half-precision weight (as LoRA's factors), else W's dtype.

    Attributes:
        reference: use the plain dense path, out + x·scatter(values)ᵀ (forms S each call; for tests and checks).
    """

    def __init__(self, geometry: LayerGeometry, idx: torch.Tensor, dtype: torch.dtype, device: torch.device):
        super().__init__()
        self.geometry = geometry
        self.values = nn.Parameter(torch.zeros(idx.numel(), dtype=dtype, device=device))
        self.register_buffer("idx", idx.to(device=device, dtype=torch.long).clone())
        self.reference = False

    def layout(self) -> CSRLayout:
        """The CSR index arrays of the mask, rebuilt only when ``idx`` changes (refresh, load, device move)."""
        idx = self.idx
        key = (idx.device, idx.data_ptr(), idx._version)
        cached = self.__dict__.get("_layout")
        if cached is None or cached[0] != key:
            n = self.geometry.in_features
            cached = (key, CSRLayout(idx // n, idx % n, (self.geometry.out_features, n)))
            self.__dict__["_layout"] = cached
        return cached[1]

    def dense(self) -> torch.Tensor:
        """S as a dense (m, n) matrix, differentiable in ``values``; reference path and checks only."""
        g = self.geometry
        return self.values.new_zeros(g.out_features * g.in_features).index_put(
            (self.idx,), self.values).view(g.out_features, g.in_features)

    def add(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out + S·x`` for x (..., n), out (..., m); computed in the values' dtype, returned in out's."""
        v = self.values
        if x.dtype != v.dtype:
            x = x.to(v.dtype)
        if self.reference:
            y = x @ self.dense().t()
        else:
            n, m = self.geometry.in_features, self.geometry.out_features
            y = SparseMatmul.apply(x.reshape(-1, n), v, self.layout()).reshape(*x.shape[:-1], m)
        return out + y.to(out.dtype)

    @torch.no_grad()
    def fold(self, weight: torch.Tensor) -> None:
        """W ← W + S at the mask (in fp32 for half weights, cast once), then values ← 0: the output is unchanged."""
        w = self.geometry.matrix(weight)                                      # (m, n) view of the stored weight
        n = self.geometry.in_features
        rows, cols = self.idx // n, self.idx % n
        acc = acc_dtype(w.dtype)
        w[rows, cols] = (w[rows, cols].to(acc) + self.values.to(acc)).to(w.dtype)
        self.values.zero_()

    def extra_repr(self) -> str:
        return f"out={self.geometry.out_features}, in={self.geometry.in_features}, nnz={self.values.numel()}"


def _add_sparse_delta(module: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor) -> torch.Tensor:
    """Forward hook of a LIFT target layer: its output plus S·x (module-level, so deepcopy and pickle work)."""
    x = args[0] if args else next(iter(kwargs.values()))
    return module._modules[DELTA_ATTR].add(x, output)


def _remove_hook(module: nn.Module) -> None:
    """Drop :func:`_add_sparse_delta` from ``module``'s forward hooks (and torch's per-hook flags)."""
    for key, hook in list(module._forward_hooks.items()):
        if hook is _add_sparse_delta:
            del module._forward_hooks[key]
            for flags in ("_forward_hooks_with_kwargs", "_forward_hooks_always_called"):
                getattr(module, flags, {}).pop(key, None)


@dataclass
class _Layer:
    name: str
    module: nn.Module
    weight: nn.Parameter              # W, frozen; S is folded into it at every refresh
    delta: SparseDelta                # S: trainable values at the current mask
    budget: int
    touched: torch.Tensor             # every index ever trained (sorted)
    original: torch.Tensor            # W's original values at ``touched``

    @property
    def idx(self) -> torch.Tensor:
        """The current mask: sorted flat indices into the (m, n) matrix view."""
        return self.delta.idx

    @property
    def values(self) -> nn.Parameter:
        return self.delta.values


class LIFTSchedule(TrainingSchedule):
    """Refreshes the masks (``after_step``: fold S into W, new mask from W, optimizer state remapped).

    Attributes:
        layers: one entry per target weight (``idx``: its current mask; ``values``: the trained entries of S).
        saved: ``{parameter name: parameter}`` of the ``modules_to_save`` modules, trained in full.
        refreshes: how many refreshes have run.
    """

    def __init__(self, model: nn.Module, config: LIFTConfig):
        self.config = config
        self.layers: list[_Layer] = []
        matches = resolve_targets(model, config.targets, config.exclude)
        if config.modules_to_save:  # every check before anything changes
            check_disjoint(model, config.modules_to_save, [mt.name for mt in matches])
        self.saved = saved_parameters(model, config.modules_to_save)
        owners: dict[int, list[str]] = {}
        for pname, p in model.named_parameters(remove_duplicate=False):
            owners.setdefault(id(p), []).append(pname.rsplit(".", 1)[0])
        for mt in matches:
            w = mt.module.weight
            if mt.geometry.kind not in ("linear", "conv1d"):
                raise TargetError(f"LIFT adds a sparse S·x to Linear/Conv1D outputs; {mt.name!r} is a "
                                  f"{type(mt.module).__name__}: exclude it (exclude=[{mt.name!r}]) or target linears")
            if not w.is_floating_point():
                raise ConfigError(f"layer {mt.name!r} has a {w.dtype} weight; LIFT trains floating-point weights "
                                  "(dequantize it first)")
            if DELTA_ATTR in mt.module._modules:
                raise ConfigError(f"layer {mt.name!r} already carries a LIFT delta; apply lift() once per model "
                                  "(schedule.merge_and_unload() removes the previous one)")
            tied = [o for o in owners.get(id(w), []) if o != mt.name]
            if tied:
                raise ConfigError(f"the weight of {mt.name!r} is tied to {tied}; LIFT folds its update into W at "
                                  "every refresh, which would change those layers too. Exclude it or untie the weights")
        picked = []
        for mt in matches:  # every SVD before anything changes
            g, w = mt.geometry, mt.module.weight
            budget = config.rank * (g.out_features + g.in_features)
            picked.append((mt, budget, principal_mask_indices(g.matrix(w), config.approx_rank, budget, config.niter)))
        for p in model.parameters():
            p.requires_grad_(False)
        for mt, budget, idx in picked:
            g, w = mt.geometry, mt.module.weight
            delta = SparseDelta(g, idx, adapter_dtype(w.dtype), w.device)
            mt.module.add_module(DELTA_ATTR, delta)
            mt.module.register_forward_hook(_add_sparse_delta, with_kwargs=True)
            n = g.in_features
            original = g.matrix(w.detach())[idx // n, idx % n].clone()
            self.layers.append(_Layer(mt.name, mt.module, w, delta, budget, delta.idx.clone(), original))
        unfreeze(model, config.modules_to_save)
        self._geometries = {mt.name: mt.geometry for mt in matches}
        self.refreshes = 0
        self.unloaded = False

    def trainable_count(self) -> int:
        """Entries that train: K per target weight plus every ``modules_to_save`` parameter."""
        return sum(layer.values.numel() for layer in self.layers) + sum(p.numel() for p in self.saved.values())

    def after_step(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        every = self.config.refresh_every
        if every and (step + 1) % every == 0:
            self.refresh(optimizer)

    @torch.no_grad()
    def refresh(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Fold S into W, recompute every mask from that W, zero the values, remap ``optimizer``'s state.

        Every state tensor of ``optimizer`` shaped like a layer's ``values`` (AdamW's exp_avg and exp_avg_sq)
        is remapped in place: kept for entries in both the old and the new mask, zero for entries new to it.
        Pass the optimizer that trains the values; without it their moments stay where they were, on
        entries that now mean other positions of W.
        """
        if self.unloaded:
            raise ConfigError("this LIFT schedule was merged and unloaded (merge_and_unload); its model has no "
                              "sparse deltas left to refresh")
        self.refreshes += 1
        for layer in self.layers:
            geo = self._geometries[layer.name]
            old = layer.idx.clone()
            layer.delta.fold(layer.weight)
            w = geo.matrix(layer.weight.detach())
            new = principal_mask_indices(w, self.config.approx_rank, layer.budget, self.config.niter)
            if layer.touched.device != new.device:  # the model moved after lift()
                layer.touched, layer.original = layer.touched.to(new.device), layer.original.to(new.device)
            fresh = new[~torch.isin(new, layer.touched)]
            if fresh.numel():  # untouched entries still hold their original values
                n = geo.in_features
                touched = torch.cat([layer.touched, fresh])
                order = touched.argsort()
                layer.touched = touched[order]
                layer.original = torch.cat([layer.original, w[fresh // n, fresh % n]])[order]
            layer.delta.idx.copy_(new)
            if optimizer is not None:
                for v in optimizer.state.get(layer.values, {}).values():
                    if isinstance(v, torch.Tensor) and v.shape == layer.values.shape:
                        v.copy_(remap_entries(v, old, new))

    @torch.no_grad()
    def merge_and_unload(self) -> None:
        """Fold every S into its W and remove the deltas and their hooks: the model is plain again, same outputs.

        :func:`save_lift` still works afterwards (the bookkeeping of original values is kept); training and
        refreshing do not.
        """
        if self.unloaded:
            return
        for layer in self.layers:
            layer.delta.fold(layer.weight)
            _remove_hook(layer.module)
            delattr(layer.module, DELTA_ATTR)
        self.unloaded = True

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"refreshes": self.refreshes}
        for layer in self.layers:
            state[f"{layer.name}.idx"] = layer.idx.clone()
            state[f"{layer.name}.touched"] = layer.touched.clone()
            state[f"{layer.name}.original"] = layer.original.clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore masks and bookkeeping; the mask is also in the model's state_dict (the deltas' ``idx``)."""
        missing = [f"{layer.name}.{k}" for layer in self.layers for k in ("idx", "touched", "original")
                   if f"{layer.name}.{k}" not in state]
        if missing:
            raise ConfigError(f"LIFT state does not fit this schedule: missing {missing[:3]}; load the state of a "
                              "schedule built with the same model and targets")
        for layer in self.layers:
            idx, touched, original = (state[f"{layer.name}.{k}"] for k in ("idx", "touched", "original"))
            if idx.shape != layer.idx.shape or touched.shape != original.shape:
                raise ConfigError(f"LIFT state of {layer.name!r} does not fit: mask of {tuple(idx.shape)} entries "
                                  f"(this schedule's: {tuple(layer.idx.shape)}), {tuple(touched.shape)} touched "
                                  f"indices for {tuple(original.shape)} original values; load the state of a "
                                  "schedule built with the same model, targets and rank")
        with torch.no_grad():
            for layer in self.layers:
                layer.delta.idx.copy_(state[f"{layer.name}.idx"])
                layer.touched = state[f"{layer.name}.touched"].clone()
                layer.original = state[f"{layer.name}.original"].clone()
        self.refreshes = int(state.get("refreshes", 0))

    @torch.no_grad()
    def sparse_delta(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{layer: (flat indices into the (m, n) view, W + S − W_original there)} over every entry ever trained.

        The differences are fp32 for half-precision weights (fp64 for fp64).
        """
        out = {}
        for layer in self.layers:
            geo = self._geometries[layer.name]
            w = geo.matrix(layer.weight.detach())
            n, t = geo.in_features, layer.touched.to(w.device)
            acc = acc_dtype(w.dtype)
            now = w[t // n, t % n].to(acc)
            if not self.unloaded:  # the mask is a subset of the touched entries
                now[torch.searchsorted(t, layer.idx)] += layer.values.detach().to(acc)
            out[layer.name] = (t.clone(), now - layer.original.to(device=w.device, dtype=acc))
        return out


def lift(model: nn.Module, config: LIFTConfig) -> LIFTSchedule:
    """Freeze ``model``, give every target layer a trainable sparse delta on its principal entries.

    Each target Linear/Conv1D gets a child ``rankwise_lift`` (:class:`SparseDelta`: ``values`` and the mask
    ``idx``) and a forward hook adding S·x; ``modules_to_save`` stay trainable. Returns the schedule. Train
    ``rankwise.trainable_parameters(model)`` with any torch optimizer (e.g. ``torch.optim.AdamW``) and call
    ``schedule.after_step(step, optimizer)`` after each optimizer step (it refreshes the masks and remaps the
    optimizer's state). :func:`save_lift` writes the update; ``schedule.merge_and_unload()`` folds it into W.

    Raises:
        TargetError, ConfigError: before anything is modified (non-linear targets, tied weights, applied twice).
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
    names = meta.get("saved_parameters", [])
    missing = [n for n in names if SAVED_PREFIX + n not in tensors]
    if missing:
        raise AdapterFileError(f"{folder}: the weights of saved module parameter {missing[0]!r} are missing")
    copies = check_saved_tensors(model, {n: tensors[SAVED_PREFIX + n] for n in names}, folder)
    for module, geo, idx, values in plan:
        w = geo.matrix(module.weight)
        n = geo.in_features
        w[idx // n, idx % n] += values.to(w.dtype)
    for p, t in copies:
        p.copy_(t)
    return model
