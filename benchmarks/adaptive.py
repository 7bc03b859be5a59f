"""Step-time overhead of gradient rules and rank-adaptive / sparse methods vs plain LoRA, and rankwise
AdaLoRA vs PEFT AdaLoRA, on the reference model of ``benchmarks/adapters.py`` (its builders are imported).

Each variant: the 6-layer, 512-wide Llama (fp32, batch 4×256 random ids, labels = ids), adapters of rank 16
on the 7 projections of every block, AdamW(lr=1e-4, weight_decay=0) — or the method's own optimizer where the
catalogue names one (LoRA-Pro's AdamW on the equivalent gradient, AltLoRA's momentum) — and one full training step =
forward + ``schedule.loss_term()`` + backward + ``before_step`` + ``optimizer.step()`` + ``after_step``
(PEFT AdaLoRA: ``base_model(...)`` with its orthogonality penalty + ``update_and_allocate``). AdaLoRA runs
init_r = 16, target_r = 8, tinit = 0, deltaT = 1, so importance scores and masking run every step.
All variants live in memory at once and are timed round-robin (the start rotates each round); the
reported number is the median per-step time, and the ratio vs LoRA is the median of per-round ratios.

Usage (repository root):

    nice -n 5 python benchmarks/adaptive.py                 # writes benchmarks/results/adaptive.md
    nice -n 5 python benchmarks/adaptive.py --steps 2 --warmup 1 --out /tmp/x.md   # smoke run
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import adapters as ref  # noqa: E402  (benchmarks/adapters.py: the reference model and batch)

warnings.filterwarnings("ignore")

VARIANTS = ("lora", "lora-pro", "lora-pro:rule", "altlora", "altlora:rule", "allora", "sora", "dylora", "adalora",
            "peft-adalora", "lift")
TOTAL = 1000  # AdaLoRA's T: the timed steps are all in the budgeting phase
# variant -> (catalogue method, its settings beyond rank/α/targets)
VARIANT_ARGS = {
    "lora-pro:rule": ("lora-pro", {"options": {"lorapro_optimizer": "rule"}}),   # the SGD-form gradient adjustment
    "altlora:rule": ("altlora", {"options": {"altlora_optimizer": "rule"}}),     # projected gradients + AdamW
    "adalora": ("adalora", {"options": {"target_r": ref.RANK // 2}}),
    "lift": ("lift", {"approx_rank": 128, "refresh_every": TOTAL, "niter": 2}),
}


@dataclass
class Variant:
    name: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: object | None
    trainable: int
    peft: bool = False
    step: int = 0
    times: list[float] = field(default_factory=list)


def build(name: str, base: torch.nn.Module) -> Variant:
    model = copy.deepcopy(base)
    torch.manual_seed(ref.SEED)
    targets = list(ref.PROJECTIONS)
    if name == "peft-adalora":
        import peft

        cfg = peft.AdaLoraConfig(init_r=ref.RANK, target_r=ref.RANK // 2, lora_alpha=ref.ALPHA, target_modules=targets,
                                 total_step=TOTAL, tinit=0, tfinal=0, deltaT=1)
        model = peft.get_peft_model(model, cfg)
        params = [p for p in model.parameters() if p.requires_grad]
        return Variant(name, model, torch.optim.AdamW(params, lr=ref.LR, weight_decay=0.0), None,
                       sum(p.numel() for p in params), peft=True)
    from rankwise.train import prepare_method

    method, kwargs = VARIANT_ARGS.get(name, (name, {}))
    kwargs = {"rank": ref.RANK, "targets": targets, **({} if method == "lift" else {"alpha": ref.ALPHA}), **kwargs}
    # the training loop's path: rankwise.adapt (or LIFT's own), the schedule, the method's optimizer or AdamW
    prepared = prepare_method(model, method, kwargs, lr=ref.LR, total_steps=TOTAL, weight_decay=0.0)
    return Variant(name, model, prepared.optimizer, prepared.schedule, prepared.trainable(model))


def train_step(v: Variant, ids: torch.Tensor) -> None:
    if v.peft:
        loss = v.model.base_model(input_ids=ids, labels=ids).loss  # AdaLoraModel.forward adds the penalty
        loss.backward()
        v.optimizer.step()
        v.model.base_model.update_and_allocate(v.step)
    else:
        s = v.schedule
        loss = v.model(input_ids=ids, labels=ids).loss
        if s is not None:
            loss = loss + s.loss_term()
        loss.backward()
        if s is not None:
            s.before_step(v.step)
        v.optimizer.step()
        if s is not None:
            s.after_step(v.step, v.optimizer)
    v.optimizer.zero_grad(set_to_none=True)
    v.step += 1


def run(names: list[str], warmup: int, steps: int, on_round=None) -> dict[str, Variant]:
    base, ids = ref.make_base_model(), ref.make_batch()
    variants = {n: build(n, base) for n in names}
    del base
    gc.collect()
    order = list(variants.values())
    for rnd in range(warmup + steps):
        k = rnd % len(order)
        for v in order[k:] + order[:k]:
            t0 = time.perf_counter()
            train_step(v, ids)
            if rnd >= warmup:
                v.times.append(time.perf_counter() - t0)
        print(f"  round {rnd + 1}/{warmup + steps}", file=sys.stderr)
        if on_round is not None and rnd >= warmup:
            on_round(variants, rnd - warmup + 1)  # partial results survive an interrupted run
    return variants


def render(args, variants: dict[str, Variant], loads, wall) -> str:
    import peft
    import transformers

    lora = variants["lora"]
    ms = lambda s: f"{1000 * s:.0f} ms"  # noqa: E731
    L = ["# Gradient rules and rank-adaptive methods: step-time overhead vs LoRA (CPU)\n",
         f"Generated by `benchmarks/adaptive.py` in {wall / 60:.1f} min.\n",
         "## Setup\n",
         f"- Machine: 2 CPU cores{' **shared with other jobs**' if max(loads) > 3.5 else ', idle apart from this run'}"
         f" (load average at start / end: {loads[0]:.1f} / "
         f"{loads[1]:.1f}), torch {torch.__version__} ({ref.THREADS} threads), "
         f"transformers {transformers.__version__}, "
         f"peft {peft.__version__}, Python {sys.version.split()[0]}.",
         f"- Model: the reference Llama of `benchmarks/adapters.py` (hidden {ref.HIDDEN}, {ref.LAYERS} layers, vocab "
         f"{ref.VOCAB}, fp32), batch {ref.BATCH}×{ref.SEQ}, rank {ref.RANK}, α {ref.ALPHA}, the 7 projections of "
         f"every block; AdamW(lr={ref.LR}, weight_decay=0).",
         f"- Batch {ref.BATCH}×{ref.SEQ}" + (" (smaller than the reference 4×256 to fit the shared machine; the rules' "
                                             "cost does not grow with the batch, so their relative overhead is "
                                             "larger here than at 4×256)" if ref.BATCH != 4 else "") + ".",
         f"- {args.warmup} warm-up + {args.done}/{args.steps} timed rounds, round-robin. Command: "
         f"`nice -n 5 python benchmarks/adaptive.py {' '.join(args.argv)}`".rstrip() + "\n",
         "## Step time\n",
         "| variant | trainable | median step | vs LoRA (median per-round ratio) |",
         "|---|---:|---:|---:|"]
    for v in variants.values():
        ratio = statistics.median(a / b for a, b in zip(v.times, lora.times, strict=True))
        L.append(f"| {v.name} | {v.trainable:,} | {ms(statistics.median(v.times))} | {ratio:.3f} |")
    if "adalora" in variants and "peft-adalora" in variants:
        a, p = variants["adalora"], variants["peft-adalora"]
        r = statistics.median(x / y for x, y in zip(a.times, p.times, strict=True))
        L += ["", "## AdaLoRA: rankwise vs PEFT\n",
              f"rankwise AdaLoRA / PEFT AdaLoRA step time (median per-round ratio): **{r:.3f}** "
              f"({ms(statistics.median(a.times))} vs {ms(statistics.median(p.times))}). Both run the same "
              "schedule (importance EMAs, cubic budget, masking every step, orthogonality penalty)."]
    L += ["", "## Notes\n",
          "- The gradient rules' extra work per layer in their SGD forms (`:rule`) is O(r²(m+n) + r³) "
          "(LoRA-Pro: two r×r inverses and an r×r Sylvester solve; AltLoRA: r×r solves; ALLoRA: row norms), "
          "independent of batch size. LoRA-Pro's AdamW (the paper's algorithm, the default) keeps m×n moments "
          "of the equivalent gradient and forms it each step: an m×n cost per layer, like full AdamW on W. "
          "AltLoRA's momentum optimizer (the default) transports each factor's momentum with r×r products.",
          "- SoRA and DyLoRA run the plain (unfused) adapter path, which is why they sit above LoRA even "
          "without schedule work; AdaLoRA forms Λ·Q (r×n) each forward, as PEFT does.",
          "- LIFT trains a sparse delta S on W's K = r·(m+n) principal entries per layer (W frozen, no dense "
          "gradient; CSR products for S·x and its gradients; AdamW keeps (K,) moments; the 'trainable' column "
          "counts the K values).",
          "- The ratios are paired per round to cancel load drift."]
    return "\n".join(L) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--batch", type=int, default=ref.BATCH, help="sequences per batch (reference: 4)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "adaptive.md")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    args.argv = sys.argv[1:] if argv is None else argv
    names = args.variants.split(",")
    if "lora" not in names or not set(names) <= set(VARIANTS):
        raise SystemExit(f"--variants must include lora and come from {VARIANTS}")
    ref.setup_torch()
    ref.BATCH = args.batch
    t0, load0 = time.perf_counter(), os.getloadavg()[0]

    def write(variants: dict[str, Variant], done: int) -> str:
        args.done = done
        text = render(args, variants, (load0, os.getloadavg()[0]), time.perf_counter() - t0)
        ref.write_atomic(args.out, text)
        return text

    variants = run(names, args.warmup, args.steps, on_round=write)
    print(write(variants, args.steps))


if __name__ == "__main__":
    main()
