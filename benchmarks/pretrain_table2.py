"""GaLore's Table 2 at small scale: pretraining a small Llama with AdamW, GaLore, LoRA and a pure low-rank model.

The GaLore paper (Zhao et al., "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank
Projection", arXiv 2403.03507, Table 2) pretrains Llama 60M–1B on C4 and finds, by validation
perplexity, full-rank AdamW ≈ GaLore < LoRA < ReLoRA < pure low-rank (W = B·A from scratch). This
script checks that ordering on the project's shared small pretraining setup (HELPERS.md):
tinyshakespeare, byte-level BPE 2048 trained on the first 90% of the characters, the last 10% of
tokens for validation, ``llama-tiny``, sequence length 128, batch 16, seed 0, 600 steps (1.2M
tokens), linear warmup 10% then cosine decay to 10% of the peak, validation loss over 20 batches.
Every method gets its own best learning rate from a small log-spaced grid (``--sweep-lr``, on by
default), as "Learning Rate Matters" asks. Runs go through ``rankwise bench``.

    python benchmarks/pretrain_table2.py                   # needs rankwise.optim and rankwise.reparameterize
    python benchmarks/pretrain_table2.py --steps 100 --no-sweep-lr    # a quick look

Writes ``benchmarks/results/pretrain_table2.md``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rankwise.cli import bench  # noqa: E402
from rankwise.cli.bench import BenchConfig  # noqa: E402

DATA = ROOT / ".." / "shared" / "data" / "tinyshakespeare" / "input.txt"
RESULTS = ROOT / "benchmarks" / "results" / "pretrain_table2.md"
METHODS = ["adamw", "galore", "lora", "low-rank"]
# base learning rates (the sweep tries base × {1/4, 1/2, 1, 2}); GaLore's paper uses 1e-3 for AdamW, 1e-2 for GaLore
BASE_LR = {"adamw": 2e-3, "galore": 8e-3, "lora": 4e-3, "low-rank": 4e-3}
PAPER = {"adamw": 34.06, "galore": 34.88, "lora": 34.99, "low-rank": 78.18}  # Table 2, Llama 60M, val perplexity
NEAR = 0.05  # "≈": validation losses within 0.05 nats (5% perplexity)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--rank", type=int, default=32, help="rank for GaLore, LoRA, low-rank (llama-tiny is 128 wide)")
    ap.add_argument("--sweep-lr", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default="/tmp/rankwise-pretrain-table2")
    args = ap.parse_args()
    if not DATA.exists():
        sys.exit(f"tinyshakespeare not found at {DATA} (../shared/data next to the repository); nothing to do")
    present = [m for m in METHODS if bench.available(m) is None]
    absent = [{"method": m, "unavailable": bench.available(m)} for m in METHODS if m not in present]
    cfg = BenchConfig(methods=present, model="llama-tiny", data=str(DATA), vocab_size=2048, val_fraction=0.1,
                      max_length=128, batch_size=16, steps=args.steps, warmup=0.1, lr_schedule="cosine",
                      min_lr_ratio=0.1, eval_every=max(1, args.steps // 6), eval_batches=20, seed=0, rank=args.rank,
                      lrs={m: BASE_LR[m] for m in present}, sweep_lr=args.sweep_lr,
                      lr_grid=[0.25, 0.5, 1.0, 2.0], isolate=False,
                      threads=args.threads, progress=False, out=args.out)
    cfg.validate()
    t = time.perf_counter()
    rows = bench.run(cfg) + absent
    write(rows, cfg, time.perf_counter() - t, " ".join(sys.argv[1:]))


def write(rows: list[dict], cfg: BenchConfig, wall: float, argv: str) -> None:
    ran = {r["method"]: r for r in rows if "final_eval" in r}
    missing = [r["method"] + f" ({r['unavailable']})" for r in rows if "unavailable" in r]
    loss = {m: r["final_eval"]["val_loss"] for m, r in ran.items()}
    lines = [
        "# GaLore Table 2 ordering at small scale", "",
        "Setting (HELPERS.md shared pretraining setup): tinyshakespeare, byte-level BPE 2048 trained on the first 90% "
        f"of the characters, validation = last 10% of tokens; `llama-tiny`; sequence 128, batch 16, {cfg.steps} steps "
        f"({cfg.steps * 16 * 128:,} tokens); warmup 10% then cosine to 10%; seed 0; rank {cfg.rank} for GaLore, LoRA "
        "(+ trainable embeddings, head and norms) and pure low-rank; validation loss over 20 batches of 16×128. "
        + ("Each method at its best learning rate of base × {1/4, 1/2, 1, 2} (chosen on validation loss)."
           if cfg.sweep_lr else "One learning rate per method (no sweep)."), "",
        "Machine: 2 shared CPU cores (loaded by other jobs; timings are not comparable between rows).", "",
        bench.format_table(rows, "causal-lm"), "",
        "GaLore paper, Table 2 (Llama 60M on C4, validation perplexity): " + ", ".join(
            f"{m} {p}" for m, p in PAPER.items()) + ".", "",
    ]
    if all(m in loss for m in METHODS):
        checks = [("AdamW ≈ GaLore", abs(loss["galore"] - loss["adamw"]) <= NEAR),
                  ("GaLore < LoRA", loss["galore"] < loss["lora"]),
                  ("LoRA < pure low-rank", loss["lora"] < loss["low-rank"])]
        lines += ["| ordering check | result |", "|---|---|"]
        lines += [f"| {name} | {'met' if ok else 'MISSED'} |" for name, ok in checks]
        lines.append("")
    else:
        lines += [f"Ordering not checked: not run here: {', '.join(missing) or 'some methods'} (they arrive with the "
                  "optim and reparam packages; rerun this script after the merge).", ""]
    order = " < ".join(f"{m} ({loss[m]:.3f}, ppl {math.exp(loss[m]):.1f})" for m in sorted(loss, key=loss.get))
    lines += [f"Observed order by validation loss: {order}.",
              "", f"Wall time {wall / 60:.1f} min. Reproduce: `python benchmarks/pretrain_table2.py {argv}`", ""]
    RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
