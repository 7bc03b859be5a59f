"""rankwise low-rank optimizers vs torch AdamW and galore-torch on CPU: state bytes, step time, refresh time, memory.

All in one run, on the adapters benchmark's reference model (``benchmarks/adapters.py``: Llama from config,
hidden 512, intermediate 1376, 6 layers, vocab 8000, fp32, batch 4×256 random ids), with the 42 projection
matrices of the blocks low-rank (rank 128, update gap 200, scale 0.25) and everything else plain Adam:

1. Optimizer-state bytes after one step (``rankwise.optim.state_bytes``) of torch AdamW, rankwise GaLore /
   Fira / APOLLO (rank 128) / APOLLO-Mini (rank 1) and galore-torch, against the formula: per low-rank
   m×n matrix two moments of r·max(m, n) plus the basis r·min(m, n); per other tensor two moments of its size.
2. ``optimizer.step()`` time alone (gradients fixed, no refresh inside the timed steps) of torch AdamW,
   galore-torch GaLoreAdamW and rankwise GaLoreAdamW, interleaved round-robin, median; plus the SVD refresh
   of all 42 matrices amortised over the gap (+ refresh/200 per step).
3. Refresh time of all 42 matrices per projector (svd, rsvd niter=2, dct, random) vs galore-torch's SVD
   (``GaLoreProjector.get_orthogonal_matrix``), same gradients, medians of repeats.
4. Whole training step (forward + backward + step) of torch AdamW vs rankwise GaLore (refresh amortised),
   interleaved rounds, median.
5. Peak memory of a training step, standard vs layer-wise GaLore, each in a fresh subprocess (VmHWM after
   resetting the RSS high-water mark, minus the RSS after model + optimizer setup and one warm-up step),
   at batch 1×64 so that activations do not hide the gradients (at 4×256 the activations of the first
   backward layers, ~350 MB, set the peak in both modes).

Usage (repository root, project virtualenv):

    nice -n 5 python benchmarks/optimizers.py            # writes benchmarks/results/optimizers.md
    python benchmarks/optimizers.py --quick              # smoke run, writes optimizers.quick.md
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from adapters import _status_kib, machine_info, make_base_model, make_batch, setup_torch, source_state, start_rss_probe  # noqa: E402

warnings.filterwarnings("ignore")
RANK, GAP, SCALE, LR = 128, 200, 0.25, 1e-3
STEP_RATIO, RSVD_RATIO, DCT_RATIO, TRAIN_RATIO = 0.7, 0.25, 0.1, 1.03


def low_rank_params(model):
    import rankwise

    groups = rankwise.optim.low_rank_groups(model, rank=RANK)
    return groups[0]["params"], groups[-1]["params"]


def build(kind: str, model):
    import rankwise

    if kind == "torch-adamw":
        return torch.optim.AdamW(model.parameters(), lr=LR)
    if kind == "galore-torch":
        import galore_torch

        plain, low = low_rank_params(model)
        return galore_torch.GaLoreAdamW([{"params": plain}, {"params": low, "rank": RANK, "update_proj_gap": GAP,
                                                             "scale": SCALE, "proj_type": "std"}], lr=LR)
    name, _, mode = kind.partition(":")
    cfg = rankwise.method_config(name, rank=1 if name == "apollo-mini" else RANK, update_gap=GAP,
                                 layerwise=mode == "layerwise")
    return rankwise.optim.build_optimizer(model, cfg, lr=LR)


def set_grads(model, grads) -> None:
    for p, g in zip(model.parameters(), grads, strict=True):
        p.grad = g.clone()


def galore_torch_state_bytes(opt) -> int:
    total = 0
    for st in opt.state.values():
        for v in st.values():
            if isinstance(v, torch.Tensor):
                total += v.numel() * v.element_size()
            elif hasattr(v, "ortho_matrix") and v.ortho_matrix is not None:
                total += v.ortho_matrix.numel() * v.ortho_matrix.element_size()
    return total


def formula_bytes(model, kind: str) -> int:
    _, low = low_rank_params(model)
    low_ids = {id(p) for p in low}
    rank = 1 if kind.startswith("apollo-mini") else RANK
    total = 0
    for p in model.parameters():
        if kind != "torch-adamw" and id(p) in low_ids:
            m, n = p.shape
            total += 4 * (2 * rank * max(m, n) + rank * min(m, n))
        else:
            total += 4 * 2 * p.numel() + (4 if kind == "torch-adamw" else 0)  # torch keeps a step tensor
    return total


def measure_state(base, grads, stepped: dict) -> list[dict]:
    """State bytes of the optimizers timed in stage 2 (already stepped) plus Fira / APOLLO / APOLLO-Mini.

    Fira is built with the rsvd projector here only to save an exact-SVD pass on the loaded machine: its state
    (moments + stored basis) has the same size with every basis-storing projector.
    """
    import rankwise

    rows = []
    for kind in ("torch-adamw", "galore", "fira", "apollo", "apollo-mini", "galore-torch"):
        if kind in stepped:
            model, opt = stepped[kind]
        else:
            model = copy.deepcopy(base)
            opt = build(kind, model) if kind != "fira" else rankwise.optim.build_optimizer(
                model, rankwise.method_config("fira", rank=RANK, update_gap=GAP, projector="rsvd"), lr=LR)
            set_grads(model, grads)
            opt.step()
        got = galore_torch_state_bytes(opt) if kind == "galore-torch" else rankwise.optim.state_bytes(opt)
        rows.append({"optimizer": kind, "bytes": got, "formula": formula_bytes(model, kind)})
        gc.collect()
    return rows


def time_steps(base, grads, rounds: int, keep: dict | None = None) -> dict[str, list[float]]:
    kinds = ("torch-adamw", "galore-torch", "galore")
    models = {k: copy.deepcopy(base) for k in kinds}
    opts = {k: build(k, models[k]) for k in kinds}
    for k in kinds:  # first step: state creation and the step-0 refresh, not timed
        set_grads(models[k], grads)
        opts[k].step()
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for rnd in range(rounds):
        order = kinds[rnd % 3:] + kinds[:rnd % 3]
        for k in order:
            t0 = time.perf_counter()
            opts[k].step()  # the same grads stay on the params
            times[k].append(time.perf_counter() - t0)
    if keep is not None:
        keep.update({k: (models[k], opts[k]) for k in kinds})
    return times


def time_refresh(base, grads, repeats: int, per_shape: int | None = None) -> dict[str, list[float]]:
    """Refresh times of all 42 matrices; with ``per_shape``, only that many matrices of each shape are timed and
    the time is scaled to 42 (every matrix of a shape costs the same)."""
    from galore_torch.galore_projector import GaLoreProjector

    from rankwise.optim.projectors import effective_rank, get_projector, side_for

    _, low = low_rank_params(base)
    by_param = {id(p): g for p, g in zip(base.parameters(), grads, strict=True)}
    mats = [by_param[id(p)] for p in low]
    factor = 1.0
    if per_shape:
        shapes: dict[tuple, list] = {}
        for g in mats:
            shapes.setdefault(tuple(g.shape), []).append(g)
        factor = len(mats) / sum(min(per_shape, len(v)) for v in shapes.values())
        mats = [g for v in shapes.values() for g in v[:per_shape]]
    out: dict[str, list[float]] = {k: [] for k in ("galore-torch svd", "svd", "rsvd", "dct", "random")}
    ref = GaLoreProjector(RANK, update_proj_gap=GAP, scale=SCALE)
    group = {"niter": 2, "random_dist": "gaussian"}
    ref.get_orthogonal_matrix(mats[0], RANK, "right")  # warm-up: first calls pay one-off library set-up
    for name in ("svd", "rsvd", "dct", "random"):
        get_projector(name).refresh(mats[0], RANK, side_for(mats[0].shape), 0, group)
    for _ in range(repeats):
        t0 = time.perf_counter()
        for g in mats:
            ref.get_orthogonal_matrix(g, RANK, "right" if g.shape[0] >= g.shape[1] else "left")
        out["galore-torch svd"].append((time.perf_counter() - t0) * factor)
        for name in ("svd", "rsvd", "dct", "random"):
            proj = get_projector(name)
            t0 = time.perf_counter()
            for i, g in enumerate(mats):
                side, r = side_for(g.shape), effective_rank(RANK, g.shape)
                entries = proj.refresh(g, r, side, i, group)
                if not proj.stores_basis:  # the basis is rebuilt once per refresh and cached: count it
                    proj.basis(entries, tuple(g.shape), r, side, g.device, g.dtype, group)
            out[name].append((time.perf_counter() - t0) * factor)
    return out


def time_training(base, ids, rounds: int) -> dict[str, list[float]]:
    kinds = ("torch-adamw", "galore")
    models = {k: copy.deepcopy(base) for k in kinds}
    opts = {k: build(k, models[k]) for k in kinds}
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for rnd in range(rounds + 1):
        for k in (kinds if rnd % 2 == 0 else kinds[::-1]):
            t0 = time.perf_counter()
            models[k](input_ids=ids, labels=ids).loss.backward()
            opts[k].step()
            opts[k].zero_grad(set_to_none=True)
            if rnd > 0:  # round 0: warm-up and the step-0 refresh
                times[k].append(time.perf_counter() - t0)
        print(f"  training round {rnd}/{rounds}", file=sys.stderr)
    return times


MEM_BATCH, MEM_SEQ = 1, 64  # small activations, so the step's memory is dominated by gradients and state


def memory_child(mode: str, steps: int, threads: int) -> None:
    import rankwise

    setup_torch()
    torch.set_num_threads(threads)
    model, ids = make_base_model(), make_batch()[:MEM_BATCH, :MEM_SEQ]
    # rsvd refreshes: the projector does not change what is measured (gradients vs none), only the set-up time
    cfg = rankwise.method_config("galore", rank=RANK, update_gap=GAP, projector="rsvd", layerwise=mode == "layerwise")
    opt = rankwise.optim.build_optimizer(model, cfg, lr=LR)

    def step():
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # optimizer state now exists
    rss0, reset = start_rss_probe()
    for _ in range(steps):
        step()
    grad_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    print(json.dumps({"mode": mode, "rss0_kib": rss0, "peak_kib": _status_kib("VmHWM"), "reset": reset,
                      "grad_bytes": grad_bytes}))


def measure_memory(steps: int, threads: int) -> dict[str, dict]:
    out = {}
    for mode in ("standard", "layerwise"):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", mode, "--memory-steps", str(steps),
               "--threads", str(threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"memory child {mode} failed:\n{proc.stderr[-3000:]}")
        out[mode] = json.loads(lines[-1])
        print(f"  memory {mode}: +{(out[mode]['peak_kib'] - out[mode]['rss0_kib']) / 1024:.0f} MiB", file=sys.stderr)
    return out


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def render(args, info, state, steps, refresh, train, memory, loads, wall, src) -> str:
    L = ["# Low-rank optimizers: state, step time, refresh time, layer-wise memory (CPU)", ""]
    L.append(f"Command: `{args.command}`. Wall time {wall / 60:.1f} min. Source: {src}.")
    L.append(f"Machine: {info['CPU']}, {info['cores']} cores, {info['RAM']}; {info['OS']}; Python {info['Python']}, "
             f"torch {info['torch']}, transformers {info['transformers']}, galore-torch 1.0, torch threads "
             f"{info['torch threads']}. **The 2 cores were shared with other jobs** (load average {loads[0]:.1f} at "
             f"start, {loads[1]:.1f} at end): absolute times are noisy; every comparison is a ratio of medians "
             "measured interleaved in the same run.")
    L.append(f"Model: the adapters benchmark's reference Llama (hidden 512, intermediate 1376, 6 layers, vocab 8000, "
             f"fp32), batch 4×256. Low-rank: the 42 block matrices, rank {RANK}, gap {GAP}, scale {SCALE}; "
             "embeddings, head and norms plain Adam.")
    skipped = ("Not run in this invocation (the shared 2-core machine was oversubscribed, load average > 20; "
               "the run was cut to what fit in the time budget).")
    L += ["", "## 1. Optimizer-state bytes (after one step)", ""]
    if state is None:
        L.append(skipped)
    else:
        L += _render_state(state)
    if steps is None or refresh is None:
        L += ["", "## 2-3. Step and refresh time", "", skipped]
        if train is not None:  # amortise the refresh with the SVD refresh time given on the command line
            L += _render_train(train, {"svd": args.svd_refresh_s or 0.0}, skipped) + [
                f"(SVD refresh time amortised: {args.svd_refresh_s} s per refresh, from `--svd-refresh-s`.)"]
    else:
        L += _render_times(steps, refresh, train, skipped)
    L += _render_memory(memory, skipped)
    L += _notes()
    return "\n".join(L) + "\n"


def _render_state(state) -> list[str]:
    L = ["| optimizer | state bytes | formula | match | vs torch AdamW |", "|---|---:|---:|---|---:|"]
    adamw = next(r["bytes"] for r in state if r["optimizer"] == "torch-adamw")
    for r in state:
        L.append(f"| {r['optimizer']} | {r['bytes']:,} | {r['formula']:,} | "
                 f"{'yes' if r['bytes'] == r['formula'] else 'NO'} | {r['bytes'] / adamw:.3f}× |")
    ok_state = all(r["bytes"] == r["formula"] for r in state)
    L += ["", f"Target (state equals the formula: 2·r·max(m,n) moments + r·min(m,n) basis per low-rank matrix, "
          f"2·size per other tensor): **{verdict(ok_state)}**. APOLLO's random basis is rebuilt from a seed and "
          "cached, so it is counted; APOLLO-Mini uses rank 1. The embedding and head (2×4.1M parameters) keep "
          "full Adam state in every optimizer, which bounds the saving on this small model."]
    return L


def _render_times(steps, refresh, train, skipped) -> list[str]:
    L = []
    rt = {k: med(v) for k, v in refresh.items()}
    st = {k: med(v) for k, v in steps.items()}
    ours_amort = st["galore"] + rt["svd"] / GAP
    ref_amort = st["galore-torch"] + rt["galore-torch svd"] / GAP
    L += ["", f"## 2. `optimizer.step()` alone ({len(steps['galore'])} interleaved rounds, median)", "",
          "| optimizer | step (ms) | + SVD refresh / 200 (ms) | amortised (ms) |", "|---|---:|---:|---:|",
          f"| torch AdamW | {st['torch-adamw'] * 1e3:.1f} | – | {st['torch-adamw'] * 1e3:.1f} |",
          f"| galore-torch GaLoreAdamW | {st['galore-torch'] * 1e3:.1f} | {rt['galore-torch svd'] / GAP * 1e3:.1f} | "
          f"{ref_amort * 1e3:.1f} |",
          f"| rankwise GaLoreAdamW (svd) | {st['galore'] * 1e3:.1f} | {rt['svd'] / GAP * 1e3:.1f} | "
          f"{ours_amort * 1e3:.1f} |", "",
          f"Target rankwise/galore-torch amortised ≤ {STEP_RATIO}: measured **{ours_amort / ref_amort:.2f}** → "
          f"**{verdict(ours_amort / ref_amort <= STEP_RATIO)}**."]
    L += ["", f"## 3. Refresh time, all 42 matrices ({len(refresh['svd'])} repeats, median)", "",
          "| projector | refresh (s) | vs galore-torch SVD | target | verdict |", "|---|---:|---:|---:|---|"]
    targets = {"svd": None, "rsvd": RSVD_RATIO, "dct": DCT_RATIO, "random": None}
    L.append(f"| galore-torch SVD | {rt['galore-torch svd']:.3f} | 1.00× | | |")
    for name, tgt in targets.items():
        ratio = rt[name] / rt["galore-torch svd"]
        L.append(f"| rankwise {name} | {rt[name]:.3f} | {ratio:.3f}× | {f'≤ {tgt:.2f}×' if tgt else '–'} | "
                 f"{verdict(ratio <= tgt) if tgt else '–'} |")
    return L + _render_train(train, rt, skipped)


def _render_train(train, rt, skipped) -> list[str]:
    if train is None:
        return ["", "## 4. Whole training step", "", skipped]
    L = []
    tr = {k: med(v) for k, v in train.items()}
    train_ratio = (tr["galore"] + rt["svd"] / GAP) / tr["torch-adamw"]
    L += ["", f"## 4. Whole training step, forward + backward + step ({len(train['galore'])} interleaved rounds, "
          "median)", "", "| optimizer | step (s) |", "|---|---:|",
          f"| torch AdamW | {tr['torch-adamw']:.3f} |",
          f"| rankwise GaLore (+ refresh/200) | {tr['galore'] + rt['svd'] / GAP:.3f} |", "",
          f"Target ≤ {TRAIN_RATIO}× torch AdamW: measured **{train_ratio:.3f}×** → "
          f"**{verdict(train_ratio <= TRAIN_RATIO)}**."]
    return L


def _render_memory(memory, skipped) -> list[str]:
    L = ["", f"## 5. Peak memory of a training step: standard vs layer-wise GaLore (batch {MEM_BATCH}×{MEM_SEQ})", ""]
    if memory is None:
        return L + [skipped]
    std, lw = memory["standard"], memory["layerwise"]
    d_std, d_lw = (std["peak_kib"] - std["rss0_kib"]) * 1024, (lw["peak_kib"] - lw["rss0_kib"]) * 1024
    grads = std["grad_bytes"]
    L += ["Each mode in a fresh subprocess; GaLore rank 128 with the rsvd projector (the projector does not "
          "change the memory compared, only the set-up time).", "", "| mode | peak above setup (MiB) |", "|---|---:|",
          f"| standard | {d_std / 2**20:.0f} |",
          f"| layer-wise | {d_lw / 2**20:.0f} |", "",
          f"Full gradients of the model: {grads / 2**20:.0f} MiB. Target: layer-wise lower by at least that: "
          f"saving {(d_std - d_lw) / 2**20:.0f} MiB → **{verdict(d_std - d_lw >= grads)}**"
          + ("" if std["reset"] and lw["reset"] else " (RSS high-water mark could not be reset: includes setup)")
          + "."]
    return L


def _notes() -> list[str]:
    return ["", "## Notes", "",
          "- rankwise's step fuses back-projection and update into one `addmm_` per matrix (no m×n temporary) "
          "and runs the plain-parameter Adam with multi-tensor (foreach) kernels; galore-torch allocates the "
          "back-projected m×n update and steps each tensor separately.",
          "- Refresh: the randomized SVD is a seeded range finder (q=r+8, niter=2 power iterations); DCT is one "
          "G·D product plus top-k; random draws a seeded Gaussian. The per-step projection matmuls are the same "
          "for all projectors.",
          ""]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run (numbers not meaningful)")
    p.add_argument("--step-rounds", type=int, default=None, help="timed optimizer.step() rounds (default 15)")
    p.add_argument("--refresh-repeats", type=int, default=None, help="refresh repeats (default 3)")
    p.add_argument("--train-rounds", type=int, default=None, help="timed training rounds (default 6)")
    p.add_argument("--memory-steps", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2, as the adapters benchmark; "
                   "use 1 on an oversubscribed machine: 2-thread kernels then stall on each other)")
    p.add_argument("--memory-child", choices=("standard", "layerwise"), help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--stages", default="steps,state,memory,train",
                   help="comma-separated stages to run (always in the order steps+refresh, state, memory, train; "
                        "the results file is rewritten after each)")
    p.add_argument("--svd-refresh-s", type=float, default=None,
                   help="SVD refresh time to amortise in the training-step row when the refresh stage is not run")
    p.add_argument("--refresh-per-shape", type=int, default=None,
                   help="time the refresh on this many matrices of each shape and scale to all 42 (default: all)")
    a = p.parse_args(argv)
    setup_torch()
    torch.set_num_threads(a.threads)
    if a.memory_child:
        memory_child(a.memory_child, a.memory_steps, a.threads)
        return
    q = a.quick
    a.step_rounds = a.step_rounds or (2 if q else 15)
    a.refresh_repeats = a.refresh_repeats or (1 if q else 3)
    a.train_rounds = a.train_rounds or (1 if q else 6)
    a.out = a.out or HERE / "results" / ("optimizers.quick.md" if q else "optimizers.md")
    a.command = "python benchmarks/optimizers.py " + " ".join(argv if argv is not None else sys.argv[1:])
    t0, load0, src = time.perf_counter(), os.getloadavg()[0], source_state()
    info = machine_info()
    stages = set(a.stages.split(","))
    res = {"state": None, "steps": None, "refresh": None, "train": None, "memory": None}
    from rankwise.io.files import atomic_write_bytes

    def write() -> None:
        text = render(a, info, res["state"], res["steps"], res["refresh"], res["train"], res["memory"],
                      (load0, os.getloadavg()[0]), time.perf_counter() - t0, src)
        atomic_write_bytes(a.out, text.encode())

    base, ids = make_base_model(), make_batch()
    base(input_ids=ids, labels=ids).loss.backward()
    grads = [p.grad.detach().clone() for p in base.parameters()]
    base.zero_grad(set_to_none=True)
    stepped: dict = {}
    if "steps" in stages:
        print("optimizer.step() time", file=sys.stderr)
        res["steps"] = time_steps(base, grads, a.step_rounds, stepped)
        print("refresh time", file=sys.stderr)
        res["refresh"] = time_refresh(base, grads, a.refresh_repeats, a.refresh_per_shape)
        write()
    if "state" in stages:
        print("state bytes", file=sys.stderr)
        res["state"] = measure_state(base, grads, stepped)
        write()
    stepped.clear()
    gc.collect()
    if "memory" in stages:
        print("peak memory, standard vs layer-wise", file=sys.stderr)
        res["memory"] = measure_memory(a.memory_steps, a.threads)
        write()
    if "train" in stages:
        print("training-step time", file=sys.stderr)
        res["train"] = time_training(base, ids, a.train_rounds)
        write()
    print(a.out.read_text())


if __name__ == "__main__":
    main()
