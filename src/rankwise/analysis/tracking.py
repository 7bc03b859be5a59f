"""Record rank measures of selected layers during training, every N steps.

    tracker = analysis.Tracker(model, every=50)             # records step 0 at construction
    for batch in loader:
        loss.backward(); opt.step(); opt.zero_grad()
        tracker.step()                                      # records when step % every == 0
    tracker.to_csv("out/tracking.csv"); analysis.plot(tracker.report(), "out/")

    trainer = transformers.Trainer(..., callbacks=[tracker.callback()])

The survey's trajectory view ("An Overview of Low-Rank Structures in the Training and Adaptation
of Large Models", arXiv 2503.19859, §3) watches σᵢ(t), the rank of the accumulated update
W(t) − W(0), and how far the top singular vectors turn from their initial directions. Per
recorded layer and step the tracker stores (measures to choose from):

* ``singular_values``: the top-k σᵢ(t) of W(t), columns ``sigma_0 … sigma_{k-1}``;
* ``effective_rank``: Roy & Vetterli effective rank of W(t);
* ``update_rank``: ``update_rank90``, ``update_rank99`` (energy ranks) and ``update_norm`` of W(t) − W(0);
* ``angles``: ``angle_u_i`` / ``angle_v_i`` (degrees) between the i-th left/right singular vector of
  W(t) and of W(0), i < ``angle_k``. This one needs a full SVD (the others only singular values),
  so it is off by default.

Cost: one batched ``svdvals`` per group of equal-shape layers per record (two with ``update_rank``:
W(t) and ΔW(t) go in one batch), and a copy of W(0) of each tracked layer. Layers carrying
rankwise adapters are read with the adapters folded in (the weight the model computes with).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ConfigError
from ..io.files import atomic_write_bytes
from .batched import batched_singular_values
from .measures import effective_rank, energy_rank
from .sources import _layer_matrix, _module_layers

MEASURES = ("singular_values", "effective_rank", "update_rank", "angles")
DEFAULT_MEASURES = ("singular_values", "effective_rank", "update_rank")


@dataclass
class TrackingReport:
    """Recorded rows ``{"step", "layer", <measure columns>}`` in recording order."""

    rows: list[dict] = field(default_factory=list)
    measures: tuple[str, ...] = DEFAULT_MEASURES

    @property
    def layers(self) -> list[str]:
        return list(dict.fromkeys(r["layer"] for r in self.rows))

    def series(self, layer: str, column: str) -> tuple[list[int], list[float]]:
        """(steps, values) of one column for one layer."""
        pts = [(r["step"], r[column]) for r in self.rows if r["layer"] == layer and column in r]
        return [p[0] for p in pts], [p[1] for p in pts]

    def columns(self) -> list[str]:
        return list(dict.fromkeys(c for r in self.rows for c in r))

    def to_dict(self) -> dict:
        return {"type": "tracking", "measures": list(self.measures), "rows": self.rows}

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.columns(), lineterminator="\n")
        w.writeheader()
        w.writerows(self.rows)
        return buf.getvalue()

    def to_markdown(self) -> str:
        from .report import markdown_table

        last: dict[str, dict] = {}
        for r in self.rows:
            last[r["layer"]] = r
        wanted = ("effective_rank", "update_rank99", "update_norm", "sigma_0")
        cols = [c for c in wanted if any(c in r for r in self.rows)]
        rows = [[r["layer"], r["step"]] + [r.get(c, math.nan) for c in cols] for r in last.values()]
        return markdown_table(["layer", "last step"] + cols, rows)


class Tracker:
    """Records rank measures of a model's selected layers every ``every`` steps.

    Args:
        model: the model being trained (read only; weights are copied at construction).
        every: record when the step counter is a multiple of this.
        measures: a subset of ``MEASURES``.
        targets, exclude, include_embeddings: layer selection as in :func:`rankwise.analysis.spectra`.
        k: singular values kept per record (``singular_values``).
        angle_k: singular vectors followed (``angles``).
    """

    def __init__(self, model: nn.Module, every: int = 10, measures: Sequence[str] = DEFAULT_MEASURES,
                 targets=None, exclude: Sequence[str] = (), include_embeddings: bool = False, k: int = 8,
                 angle_k: int = 4):
        if not isinstance(every, int) or every < 1:
            raise ConfigError(f"every={every!r} must be a positive integer (record every N steps)")
        bad = [m for m in measures if m not in MEASURES]
        if bad or not measures:
            raise ConfigError(f"unknown measures {bad}; choose from {list(MEASURES)}")
        if k < 1 or angle_k < 1:
            raise ConfigError(f"k={k} and angle_k={angle_k} must be ≥ 1")
        self.model = model
        self.every = every
        self.measures = tuple(measures)
        self.k = k
        self.angle_k = angle_k
        self.layers = _module_layers(model, targets, exclude, include_embeddings)
        self.initial = {n: _layer_matrix(m, "tuned") for n, m in self.layers}
        self.initial_vectors = {}
        if "angles" in self.measures:
            for n, w in self.initial.items():
                U, _, Vh = torch.linalg.svd(w, full_matrices=False)
                self.initial_vectors[n] = (U[:, :angle_k], Vh[:angle_k].t())
        self.rows: list[dict] = []
        self.steps_seen = 0
        self.record(0)

    def step(self) -> None:
        """Advance the step counter by one and record when it is a multiple of ``every``."""
        self.steps_seen += 1
        if self.steps_seen % self.every == 0:
            self.record(self.steps_seen)

    @torch.no_grad()
    def record(self, step: int) -> None:
        """Measure every tracked layer now and append one row per layer for ``step``."""
        cur = {n: _layer_matrix(m, "tuned") for n, m in self.layers}
        need_full = "effective_rank" in self.measures
        mats = {}
        if "singular_values" in self.measures or need_full:
            mats.update({f"w:{n}": w for n, w in cur.items()})
        if "update_rank" in self.measures:
            mats.update({f"d:{n}": w - self.initial[n] for n, w in cur.items()})
        sv = batched_singular_values(mats) if mats else {}
        for n, w in cur.items():
            row: dict = {"step": int(step), "layer": n}
            if f"w:{n}" in sv:
                s = sv[f"w:{n}"]
                if "singular_values" in self.measures:
                    row.update({f"sigma_{i}": float(v) for i, v in enumerate(s[: self.k])})
                if need_full:
                    row["effective_rank"] = effective_rank(s)
            if f"d:{n}" in sv:
                d = sv[f"d:{n}"]
                row["update_rank90"] = energy_rank(d, 0.9)
                row["update_rank99"] = energy_rank(d, 0.99)
                row["update_norm"] = float(torch.linalg.vector_norm(d))
            if "angles" in self.measures:
                U0, V0 = self.initial_vectors[n]
                U, _, Vh = torch.linalg.svd(w, full_matrices=False)
                cu = (U[:, : self.angle_k] * U0).sum(0).abs().clamp(max=1.0)
                cv = (Vh[: self.angle_k].t() * V0).sum(0).abs().clamp(max=1.0)
                row.update({f"angle_u_{i}": math.degrees(math.acos(float(c))) for i, c in enumerate(cu)})
                row.update({f"angle_v_{i}": math.degrees(math.acos(float(c))) for i, c in enumerate(cv)})
            self.rows.append(row)

    def report(self) -> TrackingReport:
        """The rows recorded so far (a copy of the list; rows are shared)."""
        return TrackingReport(list(self.rows), self.measures)

    def to_dict(self) -> dict:
        return self.report().to_dict()

    def to_csv(self, path) -> None:
        """Write the rows as CSV (atomically)."""
        atomic_write_bytes(path, self.report().to_csv().encode())

    def callback(self):
        """A ``transformers.TrainerCallback`` recording at ``state.global_step`` multiples of ``every``."""
        try:
            from transformers import TrainerCallback
        except ImportError as e:  # pragma: no cover - transformers is a dev dependency
            raise ConfigError("Tracker.callback() needs transformers (pip install 'rankwise[transformers]'); "
                              "in a plain loop call tracker.step() instead") from e
        tracker = self

        class RankTrackerCallback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                tracker.steps_seen = state.global_step
                if state.global_step % tracker.every == 0:
                    tracker.record(state.global_step)

        return RankTrackerCallback()
