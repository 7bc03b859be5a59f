"""``rankwise bench``'s outputs: the markdown table, loss curves (PNG) and the report folder."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch

from ..io.files import atomic_write_bytes, write_json
from .corpus import STDLIB, describe


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def format_table(rows: list[dict[str, Any]], kind: str) -> str:
    """The comparison as a markdown table."""
    metric = ["val accuracy"] if kind == "classification" else ["val loss", "val ppl"]
    head = ["method", "lr", *metric, "trainable", "optimizer state", "peak memory", "tokens/s", "wall s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "unavailable" in r:
            lines.append(f"| {r['method']} | " + " | ".join(["—"] * (len(head) - 2)) + f" | ({r['unavailable']}) |")
            continue
        ev = r["final_eval"]
        vals = ([f"{100 * ev['val_accuracy']:.2f}%"] if kind == "classification"
                else [f"{ev['val_loss']:.4f}", f"{ev['val_ppl']:.2f}"])
        lines.append("| " + " | ".join([r["method"], f"{r['lr']:.3g}", *vals, f"{r['trainable']:,}",
                                         _fmt_bytes(r["optimizer_state_bytes"]), f"{r['peak_mb']:.0f} MiB",
                                         f"{r['tokens_per_s']:,.0f}", f"{r['wall_s']:.1f}"]) + " |")
    return "\n".join(lines)


def _curves(out: Path, rows: list[dict[str, Any]]) -> dict[str, dict[str, list]]:
    curves = {}
    for r in rows:
        if "run" not in r:
            continue
        recs = [json.loads(line) for line in (out / r["run"] / "metrics.jsonl").read_text().splitlines()]
        curves[r["method"]] = {
            "train_step": [x["step"] for x in recs if x["kind"] == "train"],
            "train_loss": [x["loss"] for x in recs if x["kind"] == "train"],
            "val_step": [x["step"] for x in recs if x["kind"] == "eval"],
            "val_loss": [x["val_loss"] for x in recs if x["kind"] == "eval"],
        }
    return curves


def plot_curves(curves: dict[str, dict[str, list]], path: Path) -> bool:
    """Training and validation loss per method as a PNG (False when matplotlib is not installed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, c in curves.items():
        axes[0].plot(c["train_step"], c["train_loss"], label=name)
        axes[1].plot(c["val_step"], c["val_loss"], marker="o", label=name)
    for ax, title in zip(axes, ("training loss", "validation loss"), strict=True):
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return True


def write_report(cfg: Any, rows: list[dict[str, Any]], table: str, setup, out: Path, wall: float) -> None:
    """summary.md, results.json and loss_curves.png in ``out`` (cfg: the run's BenchConfig)."""
    curves = _curves(out, rows)
    has_png = plot_curves(curves, out / "loss_curves.png")
    data = describe() if cfg.data == STDLIB else cfg.data
    tokens = cfg.steps * cfg.batch_size * cfg.grad_accum * (cfg.max_length if setup.kind == "causal-lm" else 1)
    import rankwise

    lr_text = (f"the best of base × {cfg.lr_grid} per method (chosen on validation)" if cfg.sweep_lr
               else "each method's base rate")
    lines = [
        "# rankwise bench", "",
        f"Model `{cfg.model}`, data: {data} ({', '.join(f'{k} {v}' for k, v in setup.info.items())}).",
        f"Budget: {cfg.steps} steps × batch {cfg.batch_size}×{cfg.grad_accum}"
        + (f" × {cfg.max_length} tokens = {tokens:,} training tokens per method." if setup.kind == "causal-lm"
           else " rows per step."),
        f"Learning rate: {lr_text}; "
        f"{cfg.lr_schedule} decay after {cfg.warmup:.0%} warmup; rank {cfg.rank}; seed {cfg.seed}.", "",
        table, "",
        "Optimizer state: bytes of optimizer state tensors after training. Peak memory: the most memory the run "
        "added above the process's level at its start (resident memory sampled every 5 ms on CPU; allocated memory "
        "on CUDA): model, activations, gradients, optimizer state."
        + ("" if cfg.isolate else " Runs shared one process (isolate=false), so later runs reuse memory freed by "
           "earlier ones and their peak memory is understated."), "",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, Python {platform.python_version()}, "
        f"torch {torch.__version__}, rankwise {rankwise.__version__}. Total wall time {wall:.0f} s.", "",
    ]
    sweeps = [r for r in rows if r.get("sweep")]
    if sweeps:
        lines += ["## Learning-rate sweep", "", "| method | lr | result |", "|---|---|---|"]
        for r in sweeps:
            for s in r["sweep"]:
                res = ", ".join(f"{k} {v:.4f}" for k, v in s.items() if k != "lr")
                lines.append(f"| {r['method']} | {s['lr']:.3g} | {res} |")
        lines.append("")
    if has_png:
        lines += ["![loss curves](loss_curves.png)", ""]
    atomic_write_bytes(out / "summary.md", "\n".join(lines).encode())
    write_json(out / "results.json", {"rows": rows, "curves": curves, "wall_s": wall})
