"""Reparameterised pretraining on the shared small setup: AdamW vs low-rank / ReLoRA / SwitchLoRA / SLTrain /
LOST / CoLA / SST, each at its own best learning rate.

Shared setup (HELPERS.md, same as benchmarks/pretrain_small.py): tinyshakespeare, byte-level BPE vocab 2048
trained on the first 90% of characters, last 10% of tokens for validation, llama-tiny, seq 128, batch 16,
linear warmup 10% then cosine to 10% of the peak LR, AdamW (weight decay 0), eval = lm_loss over
eval_windows(val, 16, 128, max_batches=20). Method schedules (restarts, LR re-warmups) multiply the LR.

Protocol: each method runs ``--sweep-steps`` at 3 log-spaced LRs (seed 0); the best LR then runs ``--steps``
for each seed. Reports validation loss, parameters (total / trainable), optimizer-state bytes, step time
and its ratio to AdamW measured in the same process.

    nice -n 5 python benchmarks/pretrain_reparam.py --steps 600 --sweep-steps 150 --seeds 0 --out /tmp/reparam.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

import rankwise
from rankwise.data import (
    eval_windows,
    load_tokenizer,
    read_text,
    shared_data_dir,
    split_tokens,
    tokenize,
    train_bpe,
    train_windows,
)
from rankwise.models import build_causal_lm, lm_loss

VOCAB, SEQ, BATCH, PRESET, RANK = 2048, 128, 16, "llama-tiny", 32
GRIDS = {"adamw": (1e-3, 3e-3, 1e-2)}
DEFAULT_GRID = (3e-3, 1e-2, 3e-2)


def method_kwargs(method: str, steps: int) -> dict:
    """Per-method settings scaled to the run length (restarts ~4 per run, as ReLoRA's 5k of 20k steps)."""
    every = max(10, steps // 4)
    return {
        "low-rank": {},
        "relora": {"restart_every": every, "restart_warmup": max(5, steps // 60), "prune": "magnitude"},
        "switchlora": {"switch_every": 40, "switch_decay_steps": max(1, steps // 3)},
        "sltrain": {"density": 0.03},
        "lost": {"gamma": 0.5, "channel_fraction": 0.05},
        "cola": {"activation": "silu"},
        "sst": {"sample_every": max(5, steps // 12), "restart_every": every},
    }[method]


def data(path: str | None = None):
    root = shared_data_dir()
    if path is not None:
        path = Path(path)
    elif root is not None:
        path = root / "tinyshakespeare" / "input.txt"
    if path is None or not path.exists():
        raise SystemExit("tinyshakespeare not found under ../shared/data; this benchmark needs it")
    text = read_text(path)
    cache = Path(tempfile.gettempdir()) / "rankwise_bench" / f"bpe{VOCAB}.json"
    if cache.exists():
        tok = load_tokenizer(cache)
    else:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tok = train_bpe(text[: int(0.9 * len(text))], VOCAB, save_to=cache)
    return split_tokens(tokenize(text, tok), 0.1)


def lr_at(step: int, steps: int, peak: float) -> float:
    warm = max(1, steps // 10)
    if step < warm:
        return peak * (step + 1) / warm
    progress = (step - warm) / max(1, steps - warm)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def run(method: str, lr: float, steps: int, seed: int, split, device: str = "cpu", eval_batches: int = 20
        ) -> dict:
    torch.manual_seed(seed)
    model = build_causal_lm(PRESET, VOCAB, seed=seed).train()
    schedule = rankwise.TrainingSchedule()
    if method != "adamw":
        cfg = rankwise.method_config(method, rank=RANK, seed=seed, **method_kwargs(method, steps))
        schedule = rankwise.reparameterize(model, cfg)
    model.to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    times, state_bytes = [], 0
    for step, x in enumerate(train_windows(split.train, BATCH, SEQ, steps, seed=seed)):
        x = x.to(device)
        sync()
        t0 = time.perf_counter()
        loss = model(input_ids=x, labels=x).loss + schedule.loss_term()
        if not torch.isfinite(loss):
            return {"method": method, "lr": lr, "steps": steps, "seed": seed, "val_loss": float("nan"),
                    "diverged_at": step}
        loss.backward()
        schedule.before_step(step)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr) * schedule.lr_factor(step)
        opt.step()
        schedule.after_step(step, opt)
        opt.zero_grad(set_to_none=True)
        sync()
        times.append(time.perf_counter() - t0)
        if step == 0:
            state_bytes = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values()
                              if torch.is_tensor(t) and t.dim() > 0)
    if eval_batches == 0:  # timing-only run
        return {"method": method, "step_s": statistics.median(times[2:] or times)}
    val = lm_loss(model, (w.to(device) for w in eval_windows(split.val, 16, SEQ, max_batches=eval_batches)))
    return {"method": method, "lr": lr, "steps": steps, "seed": seed, "val_loss": val,
            "params": sum(p.numel() for p in model.parameters()), "trainable": sum(p.numel() for p in params),
            "optimizer_state_bytes": state_bytes, "step_s": statistics.median(times[5:] or times)}


def interleaved_step_times(methods: list[str], steps: int, split, device: str) -> dict[str, float]:
    """Median step time of each method, stepping all models round-robin so load drift hits them alike."""
    runs = {}
    for method in methods:
        model = build_causal_lm(PRESET, VOCAB, seed=0).train()
        schedule = rankwise.TrainingSchedule()
        if method != "adamw":
            schedule = rankwise.reparameterize(model, rankwise.method_config(method, rank=RANK,
                                                                             **method_kwargs(method, 600)))
        model.to(device)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)
        runs[method] = (model, schedule, opt, [])
    for step, x in enumerate(train_windows(split.train, BATCH, SEQ, steps, seed=0)):
        for model, schedule, opt, times in runs.values():
            t0 = time.perf_counter()
            model(input_ids=x.to(device), labels=x.to(device)).loss.backward()
            schedule.before_step(step)
            opt.step()
            schedule.after_step(step, opt)
            opt.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - t0)
    return {m: statistics.median(r[3][1:]) for m, r in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="adamw,low-rank,relora,switchlora,sltrain,lost,cola,sst")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--sweep-steps", type=int, default=150)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="JSON file for every run")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sweep-eval-batches", type=int, default=20, help="validation batches for sweep runs")
    ap.add_argument("--data", default=None, help="tinyshakespeare input.txt (default: ../shared/data)")
    ap.add_argument("--time-steps", type=int, default=0,
                    help="only measure step times: this many round-robin steps of every method")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    split = data(args.data)
    if args.time_steps:
        methods = list(dict.fromkeys(["adamw", *args.methods.split(",")]))
        times = interleaved_step_times(methods, args.time_steps, split, args.device)
        print("| method | step (median, interleaved) | vs AdamW |\n|---|---|---|")
        for m, t in times.items():
            print(f"| {m} | {t * 1e3:.0f} ms | {t / times['adamw']:.2f}× |")
        return
    print(f"train tokens {len(split.train)}, val tokens {len(split.val)}; torch {torch.__version__}", flush=True)
    runs = []
    for method in args.methods.split(","):
        sweep = [run(method, lr, args.sweep_steps, 0, split, args.device, args.sweep_eval_batches)
                 for lr in GRIDS.get(method, DEFAULT_GRID)]
        for r in sweep:
            print(f"sweep {method:10s} lr {r['lr']:.0e}: val {r['val_loss']:.4f}", flush=True)
        runs += [{**r, "phase": "sweep"} for r in sweep]
        best = min(sweep, key=lambda r: r["val_loss"] if math.isfinite(r["val_loss"]) else float("inf"))["lr"]
        for seed in (int(s) for s in args.seeds.split(",")):
            r = run(method, best, args.steps, seed, split, args.device)
            print(f"full  {method:10s} lr {best:.0e} seed {seed}: val {r['val_loss']:.4f} "
                  f"step {r.get('step_s', float('nan')) * 1e3:.0f} ms", flush=True)
            runs.append({**r, "phase": "full"})
            if args.out:
                Path(args.out).write_text(json.dumps(runs, indent=1))
    full = [r for r in runs if r["phase"] == "full"]
    if not any(r["method"] == "adamw" for r in full):  # time AdamW in this process anyway: ratios need it
        runs.append({**run("adamw", 1e-3, 8, 0, split, args.device, eval_batches=0), "phase": "anchor"})
        print(f"AdamW step time (timing-only, 8 steps): {runs[-1]['step_s'] * 1e3:.0f} ms", flush=True)
    anchor = [r["step_s"] for r in runs if r["method"] == "adamw" and r["phase"] in ("full", "anchor")]
    base = statistics.mean(anchor)
    print(f"\nsteps {args.steps} (sweep {args.sweep_steps}, {args.sweep_eval_batches} val batches), "
          f"seeds {args.seeds}, "
          f"device {args.device}, threads {args.threads}\n")
    print("| method | best LR | val loss (mean ± sd) | params | trainable | optimizer state | step | vs AdamW |")
    print("|---|---|---|---|---|---|---|---|")
    for method in dict.fromkeys(r["method"] for r in full):
        rs = [r for r in full if r["method"] == method]
        losses = [r["val_loss"] for r in rs]
        sd = statistics.stdev(losses) if len(losses) > 1 else 0.0
        step = statistics.mean(r["step_s"] for r in rs)
        ratio = f"{step / base:.2f}×" if base else "-"
        print(f"| {method} | {rs[0]['lr']:.0e} | {statistics.mean(losses):.4f} ± {sd:.4f} (n={len(rs)}) | "
              f"{rs[0]['params'] / 1e6:.3f}M | {rs[0]['trainable'] / 1e6:.3f}M | "
              f"{rs[0]['optimizer_state_bytes'] / 2**20:.2f} MiB | {step * 1e3:.0f} ms | {ratio} |")
    if args.out:
        Path(args.out).write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
