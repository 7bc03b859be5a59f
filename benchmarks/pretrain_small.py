"""Small-scale pretraining from scratch on real text: final validation loss per optimizer / method.

The shared pretraining setup of the project (so numbers compare across benchmarks): text
../shared/data/tinyshakespeare/input.txt; byte-level BPE vocab 2048 trained on the first 90% of the
characters only (cached outside the repo); validation = the last 10% of the tokens; preset llama-tiny
(hidden 128, 4 layers); seq_len 128; batch 16; seed 0; linear warmup over 10% of the steps, then cosine
decay to 10% of the peak LR; evaluation = ``lm_loss`` over ``eval_windows(val, 16, 128, max_batches=20)``.
Default budget 600 steps (1.2M tokens).

Methods are a list of ``(name, factory)``; a factory gets the model and the step budget and returns a
:class:`Setup` (optimizer, peak LR, and an optional ``rankwise.TrainingSchedule`` the loop drives), so
other method families (reparameterised pretraining, ...) are added by appending to ``METHODS``. Each
result is stored in ``benchmarks/results/pretrain_small.json`` (keyed by method and budget) and the table
in ``pretrain_small.md`` is rebuilt from all stored results, so methods can be run in separate invocations:

    nice -n 5 python benchmarks/pretrain_small.py                       # every method
    nice -n 5 python benchmarks/pretrain_small.py --methods adamw,galore --steps 300
    python benchmarks/pretrain_small.py --steps 300 --merge /tmp/a.json /tmp/b.json   # runs made in parallel
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

import rankwise
from rankwise.data import eval_windows, load_tokenizer, read_text, split_tokens, tokenize, train_bpe, train_windows
from rankwise.data.text import shared_data_dir
from rankwise.models import build_causal_lm, lm_loss

HERE = Path(__file__).resolve().parent
PRESET, VOCAB, SEQ, BATCH, SEED, EVAL_BATCHES = "llama-tiny", 2048, 128, 16, 0, 20
RANK, GAP = 32, 200  # rank = hidden/4 as GaLore's 60M setting (128 of 512); the papers' gap


@dataclass
class Setup:
    """What a method factory hands the loop."""

    optimizer: torch.optim.Optimizer
    lr: float
    schedule: rankwise.TrainingSchedule | None = None
    note: str = ""


def optimizer_method(name: str, lr: float, **kw) -> Callable[[torch.nn.Module, int], Setup]:
    def factory(model: torch.nn.Module, steps: int) -> Setup:
        args = dict(kw, update_gap=GAP) if name != "adamw" else dict(kw)  # GAP read at call time (--gap)
        cfg = rankwise.method_config(name, **args)
        opt = rankwise.optim.build_optimizer(model, cfg, lr=lr, weight_decay=0.0)
        desc = ", ".join(f"{k}={v}" for k, v in args.items())
        return Setup(opt, lr, None, f"lr {lr}" + (f", {desc}" if desc else ""))

    return factory


METHODS: list[tuple[str, Callable[[torch.nn.Module, int], Setup]]] = [
    ("adamw", optimizer_method("adamw", 1e-3)),
    ("adamw-lr1e-2", optimizer_method("adamw", 1e-2)),  # the low-rank methods' LR, for a short-budget comparison
    ("galore", optimizer_method("galore", 1e-2, rank=RANK, scale=0.25)),
    ("galore-rsvd", optimizer_method("galore", 1e-2, rank=RANK, scale=0.25, projector="rsvd")),
    ("galore-dct", optimizer_method("galore", 1e-2, rank=RANK, scale=0.25, projector="dct")),
    ("galore-random", optimizer_method("galore", 1e-2, rank=RANK, scale=0.25, projector="random",
                                       random_dist="orthonormal")),
    ("fira", optimizer_method("fira", 1e-2, rank=RANK, scale=0.25)),
    ("apollo", optimizer_method("apollo", 1e-2, rank=RANK)),
    ("apollo-mini", optimizer_method("apollo-mini", 1e-2, rank=1)),
]


def lr_multiplier(step: int, total: int) -> float:
    """Linear warmup over 10% of the steps, then cosine decay to 10% of the peak."""
    warm = max(1, int(0.1 * total))
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def load_data(cache: Path, text_path: Path | None = None):
    data = shared_data_dir()
    path = text_path or (data / "tinyshakespeare" / "input.txt" if data else None)
    if path is None or not path.exists():
        raise SystemExit("../shared/data/tinyshakespeare/input.txt not found: this benchmark needs the shared data")
    text = read_text(path)
    tok_file = cache / f"bpe{VOCAB}_tinyshakespeare_train90.json"
    tok = load_tokenizer(tok_file) if tok_file.exists() else train_bpe(text[: int(0.9 * len(text))], VOCAB,
                                                                        save_to=tok_file)
    return split_tokens(tokenize(text, tok), 0.1)


def train_one(name: str, factory, split, steps: int, device: str = "cpu") -> dict:
    model = build_causal_lm(PRESET, VOCAB, seed=SEED).to(device).train()
    setup = factory(model, steps)
    opt, sched_obj = setup.optimizer, setup.schedule

    def lam(s: int) -> float:
        return lr_multiplier(s, steps) * (sched_obj.lr_factor(s) if sched_obj else 1.0)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lam)
    t0, losses = time.perf_counter(), []
    for step, x in enumerate(train_windows(split.train, BATCH, SEQ, steps, seed=SEED)):
        x = x.to(device)
        loss = model(input_ids=x, labels=x).loss
        total = loss + (sched_obj.loss_term() if sched_obj else 0.0)
        total.backward()
        if sched_obj:
            sched_obj.before_step(step)
        opt.step()
        if sched_obj:
            sched_obj.after_step(step, opt)
        opt.zero_grad(set_to_none=True)
        sched.step()
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            break
        if (step + 1) % 25 == 0:
            print(f"  {name} step {step + 1}/{steps} train loss {sum(losses[-25:]) / 25:.3f} "
                  f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    wall = time.perf_counter() - t0
    val = lm_loss(model, (x.to(device) for x in eval_windows(split.val, BATCH, SEQ, max_batches=EVAL_BATCHES)))
    sb = rankwise.optim.state_bytes(opt)
    return {"method": name, "steps": steps, "val_loss": val, "final_train_loss": sum(losses[-20:]) / 20,
            "state_bytes": sb, "wall_s": wall, "note": setup.note, "finite": math.isfinite(losses[-1]),
            "device": torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or "cpu",
            "torch": torch.__version__, "load": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                         time.gmtime())}


def render(results: dict, steps: int) -> str:
    rows = [r for r in results.values() if r["steps"] == steps]
    base = next((r for r in rows if r["method"] == "adamw"), None)
    galore = next((r for r in rows if r["method"] == "galore"), None)
    L = ["# Small pretraining from scratch: validation loss per method", "",
         f"Setup (the project's shared one): tinyshakespeare, byte-level BPE {VOCAB} trained on the first 90% of "
         f"the characters, validation = last 10% of tokens; {PRESET} (hidden 128, 4 layers); seq {SEQ}, batch "
         f"{BATCH}, seed {SEED}; **{steps} steps ({steps * BATCH * SEQ / 1e6:.2f}M tokens)**; warmup 10% then "
         f"cosine to 10%; val = lm_loss over {EVAL_BATCHES} batches of 16×128. Low-rank methods: rank {RANK} on "
         f"the 28 block matrices (update gap in the settings column), weight decay 0. The device of each run is "
         "in the table; wall times are only indicative.", "",
         "Command: `nice -n 5 python benchmarks/pretrain_small.py` (see `--help`).", "",
         "| method | val loss | vs AdamW | optimizer state (KiB) | wall (s) | device | settings |",
         "|---|---:|---:|---:|---:|---|---|"]
    for r in sorted(rows, key=lambda r: [m for m, _ in METHODS].index(r["method"])
                    if r["method"] in [m for m, _ in METHODS] else 99):
        rel = f"{(r['val_loss'] / base['val_loss'] - 1) * 100:+.1f}%" if base else "–"
        L.append(f"| {r['method']} | {r['val_loss']:.4f} | {rel} | {r['state_bytes'] / 1024:,.0f} | "
                 f"{r['wall_s']:.0f} | {r.get('device', 'cpu')} | {r['note']} |")
    L += ["", "## Expectations (from the papers) and verdicts", ""]
    if base and galore:
        gap = galore["val_loss"] / base["val_loss"] - 1
        L.append(f"- GaLore within 3% of AdamW: {gap * 100:+.1f}% → **{'MET' if gap <= 0.03 else 'MISSED'}**.")
        for m in ("fira", "apollo", "apollo-mini"):
            r = next((x for x in rows if x["method"] == m), None)
            if r:
                ok = r["val_loss"] <= galore["val_loss"]
                L.append(f"- {m} at least as good as GaLore: {r['val_loss']:.4f} vs {galore['val_loss']:.4f} → "
                         f"**{'MET' if ok else 'MISSED'}**.")
    L += ["", "## Caveats", "",
          "- Budgets: the project default is 600 steps; the shared 2-core machine was oversubscribed (load average "
          "20-27 from other jobs) during these runs, at 2-9 s per step, so the table uses the step count above, "
          "with the update gap shortened in proportion (50 instead of 200: 3 refreshes per run). Short runs favour "
          "larger learning rates: AdamW at the papers' 1e-3 is far from converged after so few steps, which is "
          "why the low-rank methods at lr 1e-2 are *ahead* of it here; `adamw-lr1e-2` (when present) is the "
          "same-LR baseline. Both AdamW runs were still near the unigram plateau (≈5.4) after 150 steps, while "
          "GaLore's block matrices move at an effective α·lr = 2.5e-3: an AdamW tuned for this budget "
          "(≈3e-3) is the missing baseline, so the 'within 3%' verdict is not evidence of parity. None of this "
          "says how the methods rank at convergence.",
          "- Methods missing from the table were not run in the time available (the projector variants "
          "galore-rsvd / galore-dct / galore-random among them); run them with `--methods`.", ""]
    return "\n".join(L) + "\n"


def main(argv=None) -> None:
    global GAP
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default=",".join(m for m, _ in METHODS),
                   help=f"comma-separated subset of {[m for m, _ in METHODS]}")
    p.add_argument("--steps", type=int, default=600, help="training steps per method (default 600)")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "rankwise_pretrain_cache",
                   help="where the trained tokenizer is cached (never the repo)")
    p.add_argument("--results", type=Path, default=HERE / "results" / "pretrain_small.json")
    p.add_argument("--merge", type=Path, nargs="*", default=None,
                   help="only merge these results files (e.g. from parallel runs with --results) into --results "
                        "and rebuild the table")
    p.add_argument("--gap", type=int, default=GAP, help=f"update gap of the low-rank methods (default {GAP})")
    p.add_argument("--device", default="cpu", help="torch device to train on (default cpu)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--text", type=Path, default=None, help="the corpus (default ../shared/data/tinyshakespeare)")
    a = p.parse_args(argv)
    GAP = a.gap
    torch.set_num_threads(a.threads)
    from rankwise.io.files import atomic_write_bytes

    if a.merge is not None:
        results = json.loads(a.results.read_text()) if a.results.exists() else {}
        for f in a.merge:
            results.update(json.loads(f.read_text()))
        atomic_write_bytes(a.results, (json.dumps(results, indent=2, sort_keys=True) + "\n").encode())
        atomic_write_bytes(a.results.with_suffix(".md"), render(results, a.steps).encode())
        print(render(results, a.steps))
        return
    known = dict(METHODS)
    names = [m for m in a.methods.split(",") if m]
    unknown = [m for m in names if m not in known]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {list(known)}")
    a.cache.mkdir(parents=True, exist_ok=True)
    split = load_data(a.cache, a.text)

    results = json.loads(a.results.read_text()) if a.results.exists() else {}
    for name in names:
        print(f"[{name}] {a.steps} steps", file=sys.stderr)
        r = train_one(name, known[name], split, a.steps, a.device)
        print(f"  {name}: val loss {r['val_loss']:.4f} ({r['wall_s']:.0f} s)", file=sys.stderr)
        results[f"{name}@{a.steps}"] = r
        atomic_write_bytes(a.results, (json.dumps(results, indent=2, sort_keys=True) + "\n").encode())
        atomic_write_bytes(a.results.with_suffix(".md"), render(results, a.steps).encode())
    print(render(results, a.steps))


if __name__ == "__main__":
    main()
