"""The machinery GaLore, Fira and APOLLO share: param groups, projector refreshes, moments, state, hooks.

A subclass only says how the Adam output becomes a full-size update (:meth:`LowRankAdam._apply_update`).
Everything else is here, once:

* groups with a ``rank`` project their 2-D parameters; every other parameter gets plain Adam
  (:mod:`rankwise.optim.adam_core`, the same math);
* refresh every ``update_gap`` steps (at steps 0, T, 2T, … of each matrix, as galore-torch), or lazily
  (``lazy_refresh``: Q-GaLore, arXiv 2407.08296: when the mean |cosine| between successive leading basis
  vectors over the last ``lazy_window`` refreshes is ≥ ``lazy_threshold``, that matrix's gap doubles);
* on a refresh the moments are kept (GaLore), reset to zero (with bias correction restarted), or
  re-projected into the new subspace (``moments="reproject"``: m ← m·C, v ← v·(C∘C) with
  C = B_old·B_newᵀ for the right side, and the transposed forms for the left; exact for m when both
  bases are orthonormal and B_new spans B_old, and for v under the usual diagonal approximation);
* state holds only plain tensors and numbers (moments, step counts, the basis or its seed/indices),
  so ``state_dict()`` round-trips through ``torch.load(weights_only=True)`` and a resumed run
  continues bit-identically;
* layer-wise mode (:mod:`rankwise.optim.layerwise`).

Group options (defaults in brackets): ``rank`` [None: no projection], ``update_gap`` [200] (galore-torch's
``update_proj_gap`` is accepted too), ``scale`` [per optimizer], ``projector`` ["svd"|"rsvd"|"dct"|
"random"], ``niter`` [2, for rsvd], ``random_dist`` ["gaussian"|"orthonormal"], ``lazy_refresh`` [False],
``lazy_threshold`` [0.4], ``lazy_window`` [5], ``moments`` ["keep"|"reset"|"reproject"], ``seed`` [0].
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from .adam_core import adam_direction, adam_foreach, decay_, step_size
from .layerwise import LayerwiseHooks
from .projectors import DISTRIBUTIONS, PROJECTORS, effective_rank, get_projector, project, side_for
from .projectors.base import leading_vector, to_right_layout
from .projectors.svd import SVDProjector

MOMENTS = ("keep", "reset", "reproject")
_SEED_STRIDE = 1_000_003


class LowRankAdam(torch.optim.Optimizer):
    """Base class: Adam on low-rank projections of 2-D gradients, full Adam elsewhere.

    Args:
        params: parameters or param groups (e.g. from :func:`rankwise.optim.low_rank_groups`); groups
            with ``rank`` set project their 2-D tensors.
        lr, betas, eps, weight_decay, correct_bias: Adam's (see :mod:`rankwise.optim.adam_core`).
        rank, update_gap, scale, projector, niter, random_dist, lazy_refresh, lazy_threshold, lazy_window,
            moments, seed: defaults for the groups' low-rank options (module docstring).
        layerwise: update each parameter in its post-accumulate-grad hook (:mod:`rankwise.optim.layerwise`).
    """

    default_scale: float = 0.25
    default_projector: str = "svd"
    extra_options: tuple[str, ...] = ()  # subclass-specific group options

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.0, correct_bias: bool = True, *, rank: int | None = None,
                 update_gap: int = 200, scale: float | None = None, projector: str | None = None, niter: int = 2,
                 random_dist: str = "gaussian", lazy_refresh: bool = False, lazy_threshold: float = 0.4,
                 lazy_window: int = 5, moments: str = "keep", seed: int = 0, layerwise: bool = False,
                 **extra: Any):
        unknown = sorted(set(extra) - set(self.extra_options))
        if unknown:
            raise ConfigError(f"{type(self).__name__} got unknown options {unknown}; known low-rank options: rank, "
                              "update_gap, scale, projector, niter, random_dist, lazy_refresh, lazy_threshold, "
                              f"lazy_window, moments, seed, layerwise{''.join(', ' + o for o in self.extra_options)}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, correct_bias=correct_bias,
                        rank=rank, update_gap=update_gap,
                        scale=self.default_scale if scale is None else scale,
                        projector=self.default_projector if projector is None else projector, niter=niter,
                        random_dist=random_dist, lazy_refresh=lazy_refresh, lazy_threshold=lazy_threshold,
                        lazy_window=lazy_window, moments=moments, seed=seed, **extra)
        self._check_hyper(defaults, "defaults")
        super().__init__(params, defaults)
        self._bases: dict[Tensor, Tensor] = {}  # rebuilt bases of projectors that save seeds/indices only
        self._index = {p: i for i, p in enumerate(p for g in self.param_groups for p in g["params"])}
        self.layerwise = bool(layerwise)
        self._hooks = LayerwiseHooks(self) if self.layerwise else None

    # ------------------------------------------------------------------ groups and validation
    def add_param_group(self, group: dict[str, Any]) -> None:
        if getattr(self, "_hooks", None) is not None:
            raise ConfigError("add_param_group after construction is not supported in layer-wise mode; "
                              "pass every group to the constructor")
        group = dict(group)
        if "update_proj_gap" in group:  # galore-torch's name
            group.setdefault("update_gap", group.pop("update_proj_gap"))
        if group.get("proj_type", "std") != "std":
            raise ConfigError(f"proj_type={group['proj_type']!r} is not supported: rankwise chooses the side by "
                              "shape as galore-torch's 'std' does (right when m ≥ n, left otherwise)")
        group.pop("proj_type", None)
        super().add_param_group(group)
        try:
            self._check_hyper(self.param_groups[-1], f"param group {len(self.param_groups) - 1}")
        except ConfigError:
            self.param_groups.pop()  # leave the optimizer as it was
            raise
        if hasattr(self, "_index"):  # a group added after construction: its matrices get fresh seed offsets
            for p in self.param_groups[-1]["params"]:
                self._index.setdefault(p, len(self._index))

    def _check_hyper(self, g: dict[str, Any], where: str) -> None:
        def bad(field: str, value: Any, want: str) -> ConfigError:
            return ConfigError(f"{type(self).__name__} {where}: {field}={value!r} is invalid; {want}")

        if g["lr"] < 0:
            raise bad("lr", g["lr"], "use lr ≥ 0")
        if not all(0.0 <= b < 1.0 for b in g["betas"]):
            raise bad("betas", g["betas"], "each beta must be in [0, 1)")
        if g["eps"] < 0:
            raise bad("eps", g["eps"], "use eps ≥ 0")
        if g["weight_decay"] < 0:
            raise bad("weight_decay", g["weight_decay"], "use weight_decay ≥ 0")
        if g["rank"] is not None and (not isinstance(g["rank"], int) or isinstance(g["rank"], bool) or g["rank"] < 1):
            raise bad("rank", g["rank"], "use a positive integer (or None for a plain Adam group)")
        if not isinstance(g["update_gap"], int) or g["update_gap"] < 1:
            raise bad("update_gap", g["update_gap"], "use a positive integer number of steps")
        if g["projector"] not in PROJECTORS:
            raise bad("projector", g["projector"], f"choose one of {sorted(PROJECTORS)}")
        if g["moments"] not in MOMENTS:
            raise bad("moments", g["moments"], f"choose one of {MOMENTS}")
        if g["random_dist"] not in DISTRIBUTIONS:
            raise bad("random_dist", g["random_dist"], f"choose one of {DISTRIBUTIONS}")
        if not isinstance(g["niter"], int) or g["niter"] < 0:
            raise bad("niter", g["niter"], "use an integer ≥ 0")
        if not isinstance(g["lazy_window"], int) or g["lazy_window"] < 1:
            raise bad("lazy_window", g["lazy_window"], "use a positive integer")
        if not 0.0 <= g["lazy_threshold"] <= 1.0:
            raise bad("lazy_threshold", g["lazy_threshold"], "use a cosine in [0, 1]")
        self._check_extra(g, bad)

    def _check_extra(self, g: dict[str, Any], bad) -> None:
        """Subclass hook for its own group options."""

    @staticmethod
    def is_low_rank(p: Tensor, group: dict[str, Any]) -> bool:
        """Whether ``p`` is projected: its group has a rank and it is a matrix."""
        return group["rank"] is not None and p.dim() == 2

    # ------------------------------------------------------------------ stepping
    @torch.no_grad()
    def step(self, closure=None):
        """One optimizer step (in layer-wise mode: bookkeeping only; the hooks already updated the parameters)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._hooks is not None:
            self._hooks.tick()
            return loss
        for group in self.param_groups:
            plain = []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise ConfigError(f"{type(self).__name__} does not support sparse gradients")
                if self.is_low_rank(p, group):
                    self._low_rank_step(p, p.grad, group)
                else:
                    plain.append(p)
            self._plain_step(plain, [p.grad for p in plain], group)
        return loss

    def _step_one(self, p: Tensor, grad: Tensor, group: dict[str, Any]) -> None:
        """Update one parameter (the layer-wise hooks call this)."""
        if self.is_low_rank(p, group):
            self._low_rank_step(p, grad, group)
        else:
            self._plain_step([p], [grad], group)

    def _plain_step(self, params: list[Tensor], grads: list[Tensor], group: dict[str, Any]) -> None:
        by_step: dict[int, list[int]] = {}
        for i, p in enumerate(params):
            st = self.state[p]
            if "exp_avg" not in st:
                st["step"] = 0
                st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            st["step"] += 1
            by_step.setdefault(st["step"], []).append(i)
        beta1, beta2 = group["betas"]
        for step, idx in by_step.items():
            ps = [params[i] for i in idx]
            adam_foreach(ps, [grads[i] for i in idx], [self.state[p]["exp_avg"] for p in ps],
                         [self.state[p]["exp_avg_sq"] for p in ps], step, group["lr"], beta1, beta2, group["eps"],
                         group["weight_decay"], group["correct_bias"])

    def _low_rank_step(self, p: Tensor, grad: Tensor, group: dict[str, Any]) -> None:
        state = self.state[p]
        if "next_refresh" not in state:
            state.update(step=0, mstep=0, refreshes=0, next_refresh=0, gap=int(group["update_gap"]),
                         seed=int(group["seed"]) + self._index.get(p, 0), lazy_sims=[])
        side, rank = side_for(p.shape), effective_rank(group["rank"], p.shape)
        if state["step"] >= state["next_refresh"]:
            self._refresh(p, grad, group, state, side, rank)
        basis = self.basis(p, group)
        low = project(grad, basis, side)  # (m×r) right, (r×n) left
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(low)
            state["exp_avg_sq"] = torch.zeros_like(low)
        state["step"] += 1
        state["mstep"] += 1
        beta1, beta2 = group["betas"]
        direction = adam_direction(low, state["exp_avg"], state["exp_avg_sq"], beta1, beta2, group["eps"])
        size = step_size(group["lr"], beta1, beta2, state["mstep"], group["correct_bias"])
        self._apply_update(p, grad, low, direction, basis, side, size, state, group)
        decay_([p], group["lr"], group["weight_decay"])

    def _apply_update(self, p: Tensor, grad: Tensor, low: Tensor, direction: Tensor, basis: Tensor, side: str,
                      size: float, state: dict[str, Any], group: dict[str, Any]) -> None:
        """Turn Adam's low-rank output N (``direction``) into the parameter update (subclasses)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ projections
    def basis(self, p: Tensor, group: dict[str, Any] | None = None) -> Tensor:
        """The current basis of ``p`` (r×n for right, m×r for left); rebuilt and cached for seed/index projectors."""
        state = self.state[p]
        if "proj" in state:
            return state["proj"]
        if p not in self._bases:
            group = self._group_of(p) if group is None else group
            rank = effective_rank(group["rank"], p.shape)
            self._bases[p] = get_projector(group["projector"]).basis(state, tuple(p.shape), rank, side_for(p.shape),
                                                                     p.device, p.dtype, group)
        return self._bases[p]

    def _group_of(self, p: Tensor) -> dict[str, Any]:
        for g in self.param_groups:
            if any(q is p for q in g["params"]):
                return g
        raise KeyError("parameter not in this optimizer")

    def _refresh(self, p: Tensor, grad: Tensor, group: dict[str, Any], state: dict[str, Any], side: str,
                 rank: int) -> None:
        old = self.basis(p, group) if state["refreshes"] > 0 else None
        seed = (state["seed"] * _SEED_STRIDE + state["refreshes"]) % (1 << 62)
        entries = get_projector(group["projector"]).refresh(grad, rank, side, seed, group)
        if not entries:  # the SVD failed and said so: keep the previous basis if there is one
            if old is not None:
                state["next_refresh"] = state["step"] + state["gap"]
                return
            entries = SVDProjector.emergency(grad, rank, side, seed)
        for key in ("proj", "proj_idx", "proj_seed"):
            state.pop(key, None)
        state.update(entries)
        self._bases.pop(p, None)
        state["refreshes"] += 1
        if old is not None:
            new = self.basis(p, group)
            self._move_moments(state, group, old, new, side)
            if group["lazy_refresh"]:
                self._lazy_update(state, group, old, new, side)
        state["next_refresh"] = state["step"] + state["gap"]

    @staticmethod
    def _move_moments(state: dict[str, Any], group: dict[str, Any], old: Tensor, new: Tensor, side: str) -> None:
        mode = group["moments"]
        if mode == "keep" or "exp_avg" not in state:
            return
        if mode == "reset":
            state["exp_avg"].zero_()
            state["exp_avg_sq"].zero_()
            state["mstep"] = 0
            return
        # reproject: coordinates in the old basis → coordinates in the new one, C = B_old·B_newᵀ (r×r)
        c = to_right_layout(old, side).float() @ to_right_layout(new, side).float().t()
        m, v = state["exp_avg"], state["exp_avg_sq"]
        if side == "right":  # moments m×r: rows are coordinates
            m.copy_(m.float() @ c)
            v.copy_(v.float() @ (c * c))
        else:  # moments r×n
            m.copy_(c.t() @ m.float())
            v.copy_((c * c).t() @ v.float())

    @staticmethod
    def _lazy_update(state: dict[str, Any], group: dict[str, Any], old: Tensor, new: Tensor, side: str) -> None:
        sim = float(torch.dot(leading_vector(old, side), leading_vector(new, side)).abs())
        sims = (list(state["lazy_sims"]) + [sim])[-int(group["lazy_window"]):]
        if len(sims) == group["lazy_window"] and sum(sims) / len(sims) >= group["lazy_threshold"]:
            state["gap"] = int(state["gap"]) * 2
            sims = []
        state["lazy_sims"] = sims

    # ------------------------------------------------------------------ state
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a :meth:`state_dict` (plain tensors and numbers); cached bases are rebuilt from it."""
        super().load_state_dict(state_dict)
        self._bases.clear()
        for st in self.state.values():
            if "proj_idx" in st:  # Optimizer.load_state_dict casts tensors to the param's float dtype
                st["proj_idx"] = st["proj_idx"].to(torch.int64)

    def projector_cache_bytes(self) -> int:
        """Bytes of bases rebuilt from seeds/indices and cached (not part of state_dict)."""
        return sum(t.numel() * t.element_size() for t in self._bases.values())

    def remove_hooks(self) -> None:
        """Leave layer-wise mode (unregister the gradient hooks)."""
        if self._hooks is not None:
            self._hooks.remove()
            self._hooks = None
            self.layerwise = False
