"""Every adapter method in ``rankwise.methods("adapter")`` vs LoRA: step time, peak memory, trainable parameters.

The reference model, batch and memory method are those of ``benchmarks/adapters.py`` (imported, not
copied): a 6-layer, 512-wide Llama built from its config (fp32), batch 4×256 random token ids with
labels = input ids, every method at rank 16, α 32 on the 7 linear projections of every block
(42 layers), AdamW(lr=1e-4, no weight decay) over ``rankwise.param_groups`` or the method's own optimizer
where the catalogue names one (LoRA-Pro's AdamW, AltLoRA's momentum), as the
training loop builds them (``rankwise.train.prepare_method``). Methods that set their own size
(FourierFT's n_frequency, MoRA's r̂, …) use their defaults at that rank.

1. Training-step time (forward + backward + AdamW step, plus the method's TrainingSchedule hooks if
   it has one): every method's model lives in memory at once; after warm-up rounds the methods are
   timed round-robin (the start rotates each round), one step per method per round. Reported: the
   median step time and the median over rounds of (method / LoRA) in the same round.
2. Peak memory of training steps: in one fresh subprocess (``--memory-child``), per method in turn,
   as adapters.py does per variant: RSS after build + adapt + optimizer, then the VmHWM peak over
   the steps after resetting the high-water mark; reported as the peak minus that RSS (activations,
   gradients, optimizer state of a step). See ``memory_child`` for why one process is sound here
   (LoRA is measured first and last to show drift).
3. Adapt time: ``rankwise.adapt`` on a fresh copy (SVDs/decompositions and, for methods that need
   it, the calibration pass over one batch; methods registered with ``needs_calibration`` get
   ``calibration=[{"input_ids": ids, "labels": ids}]`` unless ``--no-calibration``, then they are skipped).

Usage (repository root, project venv):

    python benchmarks/adapter_family.py             # writes benchmarks/results/adapter_family.md
    python benchmarks/adapter_family.py --quick     # smoke run on a tiny model, writes adapter_family.quick.md
    python benchmarks/adapter_family.py --methods lora,vera,hra
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import adapters as ref  # noqa: E402  (benchmarks/adapters.py: the reference model, batch and memory probes)


@dataclass
class Run:
    name: str
    model: torch.nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None
    schedule: object | None = None
    trainable: int = 0
    adapt_s: float = 0.0
    times: list[float] = field(default_factory=list)
    note: str = ""


def calibration_batches() -> list[dict]:
    ids = ref.make_batch()
    return [{"input_ids": ids, "labels": ids}]


def method_kwargs(name: str) -> dict:
    """The method's preset at the reference rank/α/targets (fields a preset does not take are left out)."""
    import rankwise

    for kw in ({"rank": ref.RANK, "alpha": ref.ALPHA, "targets": list(ref.PROJECTIONS)},
               {"rank": ref.RANK, "targets": list(ref.PROJECTIONS)}, {"targets": list(ref.PROJECTIONS)}):
        try:
            rankwise.method_config(name, **kw)
            return kw
        except (rankwise.ConfigError, TypeError):
            continue
    return {}


def build(name: str, base: torch.nn.Module | None, calibrate: bool, total_steps: int) -> Run:
    """A copy of ``base`` (or a fresh model) made ready by method ``name`` as the training loop does it.

    ``rankwise.train.prepare_method`` is the CLI's path: ``rankwise.adapt`` or the method's own apply
    hook (LIFT), its schedule, and AdamW over ``rankwise.param_groups`` (LoRA+'s ratio) or the method's
    own optimizer (LoRA-Pro's AdamW, AltLoRA's momentum).
    """
    import rankwise
    from rankwise.train import prepare_method

    method = rankwise.get_method(name)
    model = copy.deepcopy(base) if base is not None else ref.make_base_model()
    if method.needs_calibration and not calibrate:
        return Run(name, note="skipped: needs calibration batches (run without --no-calibration)")
    torch.manual_seed(ref.SEED)
    t0 = time.perf_counter()
    prepared = prepare_method(model, name, method_kwargs(name), lr=ref.LR, total_steps=total_steps,
                              weight_decay=0.0, calibration=calibration_batches)
    adapt_s = time.perf_counter() - t0
    return Run(name, model, prepared.optimizer, prepared.schedule, prepared.trainable(model), adapt_s)


def train_step(run: Run, ids: torch.Tensor, step: int) -> None:
    loss = run.model(input_ids=ids, labels=ids).loss
    if run.schedule is not None:
        loss = loss + run.schedule.loss_term()
    loss.backward()
    if run.schedule is not None:
        run.schedule.before_step(step)
    run.optimizer.step()
    if run.schedule is not None:
        run.schedule.after_step(step, run.optimizer)
    run.optimizer.zero_grad(set_to_none=True)


def time_steps(names: list[str], warmup: int, steps: int, calibrate: bool) -> dict[str, Run]:
    base, ids = ref.make_base_model(), ref.make_batch()
    runs = {}
    for n in names:
        runs[n] = build(n, base, calibrate, warmup + steps)
        print(f"  built {n}: {runs[n].trainable} trainable, adapt {runs[n].adapt_s:.2f} s {runs[n].note}",
              file=sys.stderr)
    del base
    gc.collect()
    live = [r for r in runs.values() if r.model is not None]
    for rnd in range(warmup + steps):
        k = rnd % len(live)
        for r in live[k:] + live[:k]:
            t0 = time.perf_counter()
            train_step(r, ids, rnd)
            if rnd >= warmup:
                r.times.append(time.perf_counter() - t0)
        print(f"  round {rnd + 1}/{warmup + steps}" + (" (warm-up)" if rnd < warmup else ""), file=sys.stderr)
    return runs


def _trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def memory_child(names: list[str], steps: int, calibrate: bool) -> None:
    """In one fresh process, per method in turn: build + adapt, then the RSS peak of ``steps`` training steps.

    As adapters.py: RSS after build (after gc + malloc_trim), reset the kernel's high-water mark
    (clear_refs 5), run the steps, read VmHWM. Methods run one after another in this process, each
    model freed and the heap trimmed (``malloc_trim``) before the next, so that memory an earlier
    method freed is returned rather than hiding a later method's growth. (Pinning glibc's mmap
    threshold low was tried and exhausts the process's memory-map limit on this model.) One
    unmeasured LoRA step runs first (the process's one-time costs); LoRA is then measured first and
    last: the difference shows the drift of this method.
    """
    base, ids = ref.make_base_model(), ref.make_batch()
    warm = build("lora", base, calibrate, steps)  # one-time process costs (thread pools, lazy inits): not measured
    train_step(warm, ids, 0)
    del warm
    _trim()
    for name in names + ["lora"]:
        try:
            run = build(name, base, calibrate, steps)
        except Exception as e:  # report, keep measuring the others
            print(json.dumps({"method": name, "failed": [f"{type(e).__name__}: {e}"]}), flush=True)
            continue
        if run.model is None:
            print(json.dumps({"method": name, "skipped": run.note}), flush=True)
            continue
        rss0, reset = ref.start_rss_probe()
        for s in range(steps):
            train_step(run, ids, s)
        peak = ref._status_kib("VmHWM")
        print(json.dumps({"method": name, "rss_after_build_kib": rss0, "peak_kib": peak, "hwm_reset": reset,
                          "src": ref.source_state()}), flush=True)
        del run
        _trim()


def measure_memory(names: list[str], steps: int, args) -> dict[str, dict]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", ",".join(names),
           "--memory-steps", str(steps)]
    cmd += ["--quick"] if args.quick else []
    cmd += [] if args.calibrate else ["--no-calibration"]
    cmd += [f"--batch={args.batch}"] if args.batch else []
    cmd += [f"--threads={args.threads}"] if args.threads else []
    cmd += [f"--seq={args.seq}"] if args.seq else []
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    out: dict[str, dict] = {}
    for ln in proc.stdout.splitlines():
        if ln.startswith("{"):
            rec = json.loads(ln)
            key = rec["method"] if rec["method"] not in out else rec["method"] + " (again, last)"
            out[key] = rec
            print(f"  memory {key}: {rec}", file=sys.stderr)
    if proc.returncode != 0:
        print(f"  memory child exited {proc.returncode}: {proc.stderr.strip()[-2000:]}", file=sys.stderr)
    return out


def render(args, info, runs, memory, loads, wall, srcs) -> str:
    import rankwise

    lora = runs["lora"]
    L = ["# Adapter family vs LoRA: step time, peak memory, trainable parameters", ""]
    cmd = getattr(args, "command_text", None) or f"`{args.command}`"
    L.append(f"Command: {cmd}" + (" — QUICK smoke run, numbers not meaningful" if args.quick else ""))
    L.append("")
    shared = " **shared with other jobs**" if max(loads) > 3.5 else " (idle apart from this run)"
    L.append(f"Machine: {info['CPU']}, {info['cores']} cores{shared} (load average "
             f"{loads[0]:.1f} at start, {loads[1]:.1f} at end), {info['RAM']}, {info['OS']}; Python {info['Python']}, "
             f"torch {info['torch']}, transformers {info['transformers']}, peft {info['peft']}, rankwise "
             f"{info['rankwise']}, {info['torch threads']} torch threads. Wall time {wall / 60:.1f} min.")
    L.append(f"Source: {srcs[0]}" + ("" if len(set(srcs)) == 1 else f" (memory children: {sorted(set(srcs[1:]))})"))
    L.append("")
    L.append(f"Model: Llama from config, hidden {ref.HIDDEN}, intermediate {ref.INTERMEDIATE}, {ref.LAYERS} layers, "
             f"vocab {ref.VOCAB}, fp32; batch {ref.BATCH}×{ref.SEQ}; rank {ref.RANK}, α {ref.ALPHA} on "
             f"{', '.join(ref.PROJECTIONS)}; AdamW lr {ref.LR}; {args.warmup} warm-up + {args.steps} timed rounds "
             f"(round-robin, one process); memory: {args.memory_steps} step(s) per method in one fresh subprocess.")
    L.append("")
    L.append("| method | trainable | × LoRA | adapt (s) | step (ms, median) | step × LoRA | peak step memory (MiB) "
             "| memory × LoRA | note |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---|")

    def mib(name):
        m = memory.get(name, {})
        return (m["peak_kib"] - m["rss_after_build_kib"]) / 1024 if "peak_kib" in m else None

    lora_mib = mib("lora")
    for m in rankwise.methods("adapter"):
        r = runs.get(m.name)
        if r is None:
            continue
        if not r.times:
            L.append(f"| {m.name} | | | | | | | | {r.note} |")
            continue
        step = ref.med(r.times)
        ratio = ref.med([a / b for a, b in zip(r.times, lora.times, strict=True)])
        mm = mib(m.name)
        mem_note = "" if mm is not None else f"memory child: {memory.get(m.name, {}).get('failed', 'n/a')}"
        L.append(f"| {m.name} | {r.trainable:,} | {r.trainable / lora.trainable:.3f} | {r.adapt_s:.2f} | "
                 f"{1000 * step:.0f} | {ratio:.2f} | {'' if mm is None else f'{mm:.0f}'} | "
                 f"{'' if mm is None or not lora_mib else f'{mm / lora_mib:.2f}'} | {r.note}{mem_note} |")
    again = mib("lora (again, last)")
    if again is not None and lora_mib:
        L.append("")
        L.append(f"LoRA's step memory measured first: {lora_mib:.0f} MiB, and again after all other methods in the "
                 f"same process: {again:.0f} MiB (the drift of the one-process memory measurement).")
    L.append("")
    L.append("Notes")
    L.append("")
    L.append("- Ratios are paired per round against LoRA in the same process, so they are more trustworthy than "
             "the absolute times; differences under ~5% are noise on this machine.")
    L.append("- Expected costs of the methods themselves, not overheads of rankwise: FourierFT forms each layer's "
             "m×n ΔW by an inverse FFT every step (its docstring explains why the factored form is not cheaper at "
             "n_frequency=1000); SVFT multiplies by W0's full singular bases (two extra weight-sized matmuls per "
             "layer, and U, V stored: 2 weight-sized buffers); RandLoRA multiplies by full-rank random bases; "
             "LoRA-Pro's AdamW keeps m×n moments of the equivalent gradient per layer (the paper's algorithm; "
             "`options={'lorapro_optimizer': 'rule'}` is the light form).")
    L.append("- HRA's reflection chain runs in compact WY form (H = I − Û·T·Ûᵀ: two thin matmuls and an r×r "
             "triangular solve) and the layer as one W0·(H·x) matmul; SVFT's sparse core runs as a CSR product.")
    L.append("- The memory column undercounts state allocated at the first step when freed heap from earlier methods "
             "is reused (see LoRA's drift above): LoRA-Pro's AdamW keeps two m×n moments per layer, 2·4·Σm·n bytes "
             "(152 MB on this model), which `rankwise.optim.state_bytes` reports exactly.")
    L.append("- LIFT's trainable count is the K = r·(m+n) sparse delta values per layer (W frozen: no dense "
             "gradient; S·x and its gradients as CSR products).")
    L.append("- 'adapt' includes each method's decompositions (SVD for SVFit/SVFT/ABBA, LU for LoLDU, QR for "
             "QR-LoRA) and, for calibration-based inits, the calibration pass.")
    L.append("")
    return "\n".join(L) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=None, help="timed rounds (default 4; quick 2)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up rounds (default 1; quick 1)")
    p.add_argument("--memory-steps", type=int, default=None, help="steps per memory child (default 1)")
    p.add_argument("--methods", help="comma-separated subset (LoRA is always included)")
    p.add_argument("--no-calibration", dest="calibrate", action="store_false",
                   help="skip methods that need calibration batches instead of passing one")
    p.add_argument("--quick", action="store_true",
                   help="smoke run on a 2-layer, 64-wide model (numbers not meaningful)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--threads", type=int, default=None, help=f"torch threads (default {ref.THREADS})")
    p.add_argument("--batch", type=int, default=None, help=f"batch size (default {ref.BATCH}, the reference)")
    p.add_argument("--seq", type=int, default=None, help=f"sequence length (default {ref.SEQ}, the reference)")
    p.add_argument("--skip-memory", action="store_true", help="time steps only (memory from --memory-json)")
    p.add_argument("--memory-json", type=Path, help="memory records (a raw JSON of an earlier run) to report")
    p.add_argument("--from-raw", type=Path, help="re-render the report from a raw JSON file of an earlier run")
    p.add_argument("--memory-jsonl", type=Path, help="with --from-raw: memory records of a separate memory child")
    p.add_argument("--memory-command", help="with --memory-jsonl: the command that produced it, for the report")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.steps = a.steps if a.steps is not None else (2 if a.quick else 4)
    a.warmup = a.warmup if a.warmup is not None else 1
    a.memory_steps = a.memory_steps if a.memory_steps is not None else 1
    a.out = a.out or HERE / "results" / ("adapter_family.quick.md" if a.quick else "adapter_family.md")
    a.command = "python benchmarks/adapter_family.py" + ("" if not argv else " " + " ".join(argv))
    return a


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.threads:
        ref.THREADS = args.threads
    ref.setup_torch()
    if args.quick:  # a tiny model (make_base_model/make_batch read these module constants at call time)
        ref.VOCAB, ref.HIDDEN, ref.INTERMEDIATE, ref.LAYERS, ref.HEADS, ref.SEQ = 512, 64, 128, 2, 4, 32
    if args.batch:
        ref.BATCH = args.batch
    if args.seq:
        ref.SEQ = args.seq
    if args.memory_child:
        memory_child(args.memory_child.split(","), args.memory_steps, args.calibrate)
        return
    import rankwise

    raw_path = args.out.with_suffix(".raw.json")
    if args.from_raw:
        raw = json.loads(args.from_raw.read_text())
        args.command = raw.get("command", args.command)
        if args.memory_jsonl:  # records printed by a separately run memory child
            raw["memory"] = {}
            for ln in args.memory_jsonl.read_text().splitlines():
                if ln.startswith("{"):
                    rec = json.loads(ln)
                    key = rec["method"] if rec["method"] not in raw["memory"] else rec["method"] + " (again, last)"
                    raw["memory"][key] = rec
            raw["srcs"] += [m["src"] for m in raw["memory"].values() if "src" in m]
            if args.memory_command:
                args.command_text = f"`{args.command}` (step times), `{args.memory_command}` (memory)"
        runs = {n: Run(n, trainable=r["trainable"], adapt_s=r["adapt_s"], times=r["times"], note=r["note"])
                for n, r in raw["runs"].items()}
        text = render(args, raw["info"], runs, raw["memory"], tuple(raw["loads"]), raw["wall"], raw["srcs"])
        ref.write_atomic(args.out, text)
        print(text)
        return
    names = [m.name for m in rankwise.methods("adapter")]
    if args.methods:
        wanted = set(args.methods.split(",")) | {"lora"}
        unknown = wanted - set(names)
        if unknown:
            raise SystemExit(f"unknown adapter methods {sorted(unknown)}; known: {names}")
        names = [n for n in names if n in wanted]
    t0, load0, src0 = time.perf_counter(), os.getloadavg()[0], ref.source_state()
    info = ref.machine_info()
    if args.memory_json:
        memory = json.loads(args.memory_json.read_text())["memory"]
    elif args.skip_memory:
        memory = {}
    else:
        print(f"[1/2] peak memory, one subprocess per method ({len(names)})", file=sys.stderr)
        memory = measure_memory(names, args.memory_steps, args)
    print("[2/2] training-step time, round-robin", file=sys.stderr)
    runs = time_steps(names, args.warmup, args.steps, args.calibrate)
    loads, wall = (load0, os.getloadavg()[0]), time.perf_counter() - t0
    srcs = [src0] + [m["src"] for m in memory.values() if "src" in m]
    raw = {"command": args.command, "info": info, "memory": memory, "loads": loads, "wall": wall, "srcs": srcs,
           "runs": {n: {"trainable": r.trainable, "adapt_s": r.adapt_s, "times": r.times, "note": r.note}
                    for n, r in runs.items()}}
    ref.write_atomic(raw_path, json.dumps(raw, indent=1))  # kept so the table can be re-rendered (--from-raw)
    text = render(args, info, runs, memory, loads, wall, srcs)
    ref.write_atomic(args.out, text)
    print(text)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
