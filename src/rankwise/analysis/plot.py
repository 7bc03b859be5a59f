"""PNG figures of the analysis reports. matplotlib is optional (``pip install 'rankwise[plot]'``).

Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas directly, never through
``pyplot``: this works headless and leaves the user's matplotlib backend alone.
"""

from __future__ import annotations

import io
from pathlib import Path

from ..errors import ConfigError
from ..io.files import atomic_write_bytes

MAX_PANELS = 6


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 3.6):
    """A Figure with an Agg canvas and its axes array (squeezed like ``plt.subplots``)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ConfigError("plots need matplotlib: pip install 'rankwise[plot]' (or matplotlib>=3.7)") from e
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def save(fig, path) -> Path:
    """Render ``fig`` to PNG and write it atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def _colors(n: int):
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def plot_spectra(report, out_dir: Path) -> list[Path]:
    fig, ax = new_figure(2)
    colors = _colors(len(report.layers))
    for c, x in zip(colors, report.layers, strict=True):
        s = x.singular_values
        if s and s[0] > 0:
            ax[0, 0].semilogy([i / x.max_rank for i in range(len(s))], [v / s[0] for v in s], color=c, lw=0.8)
    ax[0, 0].set(xlabel="index / min(m, n)", ylabel="σᵢ / σ₁", title="singular values per layer (dark = first)")
    idx = range(len(report.layers))
    ax[0, 1].bar(idx, [x.effective_rank / x.max_rank for x in report.layers], color=colors, label="effective rank")
    ax[0, 1].plot(idx, [x.rank99 / x.max_rank for x in report.layers], "k.", label="99% energy rank")
    ax[0, 1].set(xlabel="layer (model order)", ylabel="fraction of min(m, n)", title="rank per layer", ylim=(0, 1.05))
    ax[0, 1].legend(fontsize=7)
    return [save(fig, out_dir / "spectra.png")]


def plot_compare(report, out_dir: Path) -> list[Path]:
    fig, ax = new_figure(2)
    colors = _colors(len(report.layers))
    for c, x in zip(colors, report.layers, strict=True):
        s = x.delta_singular_values
        if s and s[0] > 0:
            ax[0, 0].semilogy(range(1, len(s) + 1), [v / s[0] for v in s], color=c, lw=0.8)
    ax[0, 0].set(xlabel="index i", ylabel="σᵢ(ΔW) / σ₁(ΔW)", title="update spectra ΔW = W − W0", xscale="log")
    idx = list(range(len(report.layers)))
    ax[0, 1].bar(idx, [x.intruder_count for x in report.layers], color=colors)
    ax[0, 1].set(xlabel="layer (model order)", ylabel="count",
                 title=f"intruder dimensions (top-{report.k}, ε={report.eps})", ylim=(0, report.k))
    return [save(fig, out_dir / "update_spectra.png")]


def plot_tracking(report, out_dir: Path) -> list[Path]:
    layers = report.layers[:MAX_PANELS]
    cols = report.columns()
    out = []
    panels = [("sigma_", "σᵢ(t)", "sigma_t.png"), ("angle_u_", "angle(uᵢ(t), uᵢ(0)) (°)", "angles_t.png")]
    for prefix, ylabel, fname in panels:
        series = [c for c in cols if c.startswith(prefix)]
        if not series:
            continue
        fig, ax = new_figure(len(layers), width=3.6)
        for j, layer in enumerate(layers):
            for c in series:
                steps, vals = report.series(layer, c)
                ax[0, j].plot(steps, vals, lw=0.9, label=c.removeprefix(prefix))
                if prefix == "angle_u_":
                    steps, vals = report.series(layer, c.replace("_u_", "_v_"))
                    ax[0, j].plot(steps, vals, lw=0.9, ls="--")
            ax[0, j].set(title=layer, xlabel="step", ylabel=ylabel)
        out.append(save(fig, out_dir / fname))
    if "update_rank99" in cols:
        fig, ax = new_figure(1)
        for layer in report.layers:
            steps, vals = report.series(layer, "update_rank99")
            ax[0, 0].plot(steps, vals, lw=0.9, label=layer)
        ax[0, 0].set(xlabel="step", ylabel="99% energy rank of W(t) − W(0)", title="rank of the accumulated update")
        if len(report.layers) <= 8:
            ax[0, 0].legend(fontsize=6)
        out.append(save(fig, out_dir / "update_rank_t.png"))
    return out


def plot(report, out_dir) -> list[Path]:
    """Write the figures of a ``SpectraReport``, ``CompareReport``, ``TrackingReport`` or ``Tracker`` to ``out_dir``.

    Returns:
        The written PNG paths: ``spectra.png``; ``update_spectra.png``; ``sigma_t.png``,
        ``angles_t.png`` (when angles were tracked), ``update_rank_t.png``.
    """
    from .compare import CompareReport
    from .spectra import SpectraReport
    from .tracking import Tracker, TrackingReport

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(report, Tracker):
        report = report.report()
    if isinstance(report, SpectraReport):
        return plot_spectra(report, out_dir)
    if isinstance(report, CompareReport):
        return plot_compare(report, out_dir)
    if isinstance(report, TrackingReport):
        return plot_tracking(report, out_dir)
    raise ConfigError(f"cannot plot a {type(report).__name__}; pass a report from analysis.spectra, "
                      "analysis.compare or a Tracker")
