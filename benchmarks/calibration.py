"""Calibration time of rankwise's data-driven inits vs PEFT's, on the reference model of ``adapters.py``.

What it measures, in one process so that ratios share the machine's conditions:

* for each calibration-based init (LoRA-GA, LoRA-One, LoRA-SB, EVA, CorDA-IPM, CorDA-KPM), the wall
  time of ``rankwise.adapt(model, cfg, calibration=batches)`` — calibration pass + per-layer init —
  and, separately, of the calibration pass alone (``collect_gradients`` / ``collect_inputs``);
* where PEFT 0.21.2 has the init, PEFT's whole path on the same batches:
  LoRA-GA ``preprocess_loraga`` + ``get_peft_model``; EVA ``get_peft_model`` +
  ``initialize_lora_eva_weights`` (PEFT's incremental PCA runs until every layer's components
  converge, τ = 0.99, cycling over the batches: the number of forward passes it made is reported);
  CorDA ``preprocess_corda`` + ``get_peft_model``;
* an agreement number per PEFT-backed init: LoRA-GA — the cosine of the two libraries' mean
  gradients and the subspace overlap ‖A_rw·A_peftᵀ‖²_F / r of the A rows (1 = same subspace);
  EVA — the fraction of layers given the same rank, and the mean subspace overlap of A;
  CorDA — max over layers of ‖ΔW_rw − ΔW_peft‖_F / ‖ΔW_peft‖_F.

Reference model and settings: the 6-layer, 512-wide Llama of ``benchmarks/adapters.py`` (its builders
are imported), rank 16, α 32, the 7 projections of every block (42 layers); calibration batches:
4 sequences of 128 random token ids (batch size 1, the only size PEFT's CorDA hook accepts), with
labels = input ids. Every case runs on a fresh deep copy (copy not timed), cases interleaved per
repeat after one untimed warm-up round (none with ``--quick``); the median is reported.

Usage (from the repository root):

    python benchmarks/calibration.py            # writes benchmarks/results/calibration.md
    python benchmarks/calibration.py --quick    # 1 repeat, no warm-up round
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
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import adapters as ref  # noqa: E402  (the reference model's builders)

warnings.filterwarnings("ignore")

N_BATCHES, SEQ = 4, 128
CASES = ("lora-ga", "lora-one", "lora-sb", "eva", "corda-ipm", "corda-kpm")
PEFT_HAS = {"lora-ga", "eva", "corda-ipm", "corda-kpm"}


def make_batches() -> list[dict]:
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(N_BATCHES):
        x = torch.randint(0, ref.VOCAB, (1, SEQ), generator=g)
        out.append({"input_ids": x, "labels": x})
    return out


def rankwise_cfg(method: str):
    import rankwise

    return rankwise.method_config(method, rank=ref.RANK, alpha=ref.ALPHA, targets=list(ref.PROJECTIONS))


def run_rankwise(model, method, batches):
    import rankwise

    return rankwise.adapt(model, rankwise_cfg(method), calibration=batches)


def run_collect(model, method, batches):
    import rankwise
    from rankwise.calibration import collect_gradients, collect_inputs
    from rankwise.core.targeting import resolve_targets

    layers = {m.name: (m.module, m.geometry) for m in resolve_targets(model, list(ref.PROJECTIONS), ())}
    collects = rankwise.init.get_initialiser(rankwise_cfg(method).init).collects
    if collects == "gradient":
        return collect_gradients(model, layers, batches)
    return collect_inputs(model, layers, batches, normalise=collects == "inputs-normalised")


def peft_config(method: str):
    import peft

    kw = dict(r=ref.RANK, lora_alpha=ref.ALPHA, target_modules=list(ref.PROJECTIONS), lora_dropout=0.0)
    if method == "lora-ga":
        return peft.LoraConfig(init_lora_weights="lora_ga", lora_ga_config=peft.LoraGAConfig(), **kw)
    if method == "eva":
        return peft.LoraConfig(init_lora_weights="eva", eva_config=peft.EvaConfig(), **kw)
    from peft.tuners.lora.config import CordaConfig

    return peft.LoraConfig(init_lora_weights="corda", corda_config=CordaConfig(corda_method=method[-3:]), **kw)


FORWARDS = [0]
EVA_MAX_PASSES = [None]  # --eva-max-passes: stop PEFT's EVA loop after this many forward passes


class PeftEvaCapped(Exception):
    """PEFT's EVA had not converged after ``--eva-max-passes`` forward passes."""


def run_peft(model, method, batches):
    import peft

    cfg = peft_config(method)
    if method == "lora-ga":
        from peft.tuners.lora.loraga import preprocess_loraga

        def step():
            for b in batches:
                model(**b).loss.backward()

        preprocess_loraga(model, cfg, step)
        return peft.get_peft_model(model, cfg)
    if method == "eva":
        from peft.tuners.lora.eva import initialize_lora_eva_weights

        pm = peft.get_peft_model(model, cfg)

        def count(*_):
            FORWARDS[0] += 1
            if EVA_MAX_PASSES[0] is not None and FORWARDS[0] > EVA_MAX_PASSES[0]:
                raise PeftEvaCapped

        handle = model.register_forward_pre_hook(count)
        try:
            initialize_lora_eva_weights(pm, batches, show_progress_bar=False)
        except PeftEvaCapped:
            return None
        finally:
            handle.remove()
        return pm
    from peft.tuners.lora.corda import preprocess_corda

    def run():
        with torch.no_grad():
            for b in batches:
                model(input_ids=b["input_ids"])

    preprocess_corda(model, cfg, run_model=run)
    return peft.get_peft_model(model, cfg)


def timed(fn, base, method, batches):
    model = copy.deepcopy(base)
    gc.collect()
    torch.manual_seed(ref.SEED)
    t0 = time.perf_counter()
    out = fn(model, method, batches)
    return time.perf_counter() - t0, out


# ---- agreement --------------------------------------------------------------------------------
def rw_factors(model):
    out = {}
    for n, m in model.named_modules():
        host = getattr(m, "rankwise", None)
        if host is not None and not isinstance(host, torch.Tensor) and "default" in host:
            d = host["default"].delta
            out[n] = (d.lora_B.detach(), d.lora_A.detach(), d.scale)
    return out


def peft_factors(pm):
    out = {}
    for n, m in pm.base_model.model.named_modules():
        if hasattr(m, "lora_A") and "default" in getattr(m, "lora_A", {}):
            out[n] = (m.lora_B["default"].weight.detach(), m.lora_A["default"].weight.detach(),
                      m.scaling["default"])
    return out


def overlap(a1, a2):
    """‖Q1ᵀQ2‖²_F / k for orthonormal bases of the rows of a1, a2 (1: same subspace)."""
    q1, _ = torch.linalg.qr(a1.t().double())
    q2, _ = torch.linalg.qr(a2.t().double())
    k = min(q1.shape[1], q2.shape[1])
    return float((q1.t() @ q2).square().sum() / k) if k else float("nan")


def agreement(method, ours, theirs, base, batches) -> str:
    if theirs is None:
        return f"PEFT's EVA had not converged after {EVA_MAX_PASSES[0]} forward passes (stopped)"
    fo, ft = rw_factors(ours), peft_factors(theirs)
    if method == "lora-ga":
        return f"A-row subspace overlap mean {statistics.mean(overlap(fo[n][1], ft[n][1]) for n in fo):.4f}"
    if method == "eva":
        same = sum(fo.get(n, (None, torch.empty(0, 1)))[1].shape[0] == ft[n][1].shape[0] for n in ft) / max(len(ft), 1)
        ov = [overlap(fo[n][1], ft[n][1]) for n in fo if n in ft]
        ranks = sorted(a.shape[0] for _, a, _ in fo.values())
        return (f"same rank in {same:.0%} of layers; A-row subspace overlap mean {statistics.mean(ov):.3f}; "
                f"rankwise ranks min/median/max {ranks[0]}/{ranks[len(ranks) // 2]}/{ranks[-1]}, "
                f"{len(fo)} layers adapted, PEFT {len(ft)}")
    errs = []
    for n, (b, a, s) in fo.items():
        pb, pa, ps = ft[n]
        d_p = ps * pb @ pa
        errs.append(float(torch.linalg.norm(s * b @ a - d_p) / torch.linalg.norm(d_p)))
    return f"max relative ‖ΔW_rw − ΔW_peft‖_F {max(errs):.2e}"


def gradient_cosine(base, batches) -> str:
    """Cosine between rankwise's mean gradient and PEFT's (whole-model, flattened)."""
    from peft.tuners.lora.loraga import preprocess_loraga

    ours = run_collect(copy.deepcopy(base), "lora-ga", batches)
    model = copy.deepcopy(base)

    def step():
        for b in batches:
            model(**b).loss.backward()

    preprocess_loraga(model, peft_config("lora-ga"), step)
    theirs = {n: m._peft_loraga_grad for n, m in model.named_modules() if hasattr(m, "_peft_loraga_grad")}
    x = torch.cat([ours[n].flatten() for n in theirs])
    y = torch.cat([theirs[n].flatten() for n in theirs])
    return f"{float(torch.nn.functional.cosine_similarity(x, y, dim=0)):.6f}"


# ---- report -----------------------------------------------------------------------------------
def render(args, info, times, agree, cos, load0, load1, wall, forwards) -> str:
    med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
    L = ["# Calibration time of data-driven inits: rankwise vs PEFT", ""]
    warm = "no warm-up round" if args.quick else "after one untimed warm-up round"
    cap = f" --eva-max-passes {args.eva_max_passes}" if args.eva_max_passes else ""
    L.append(f"Command: `python benchmarks/calibration.py{' --quick' if args.quick else ''}{cap}` "
             f"(repeats: {args.repeats}, {warm}). Wall time {wall:.0f} s.")
    L.append("")
    L.append("Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()) + ".")
    busy = max(load0, load1) > 3.5  # this run alone keeps the load near its thread count (2)
    L.append(f"The machine's 2 cores were {'shared with other jobs' if busy else 'idle apart from this run'}: "
             f"load average {load0:.1f} at the start and {load1:.1f} at the end"
             + ("; absolute times are noisy, compare the columns of one row (same run)." if busy else "."))
    L.append("")
    L.append(f"Model: reference Llama from `benchmarks/adapters.py` (hidden {ref.HIDDEN}, {ref.LAYERS} layers, "
             f"vocab {ref.VOCAB}), rank {ref.RANK}, α {ref.ALPHA}, targets {', '.join(ref.PROJECTIONS)} "
             f"(42 layers). Calibration: {N_BATCHES} batches of 1×{SEQ} random token ids, labels = ids.")
    L.append("")
    L.append("| init | rankwise calibration pass (s) | rankwise adapt total (s) | PEFT total (s) | PEFT / rankwise | "
             "agreement with PEFT |")
    L.append("|---|---|---|---|---|---|")
    for m in CASES:
        c, a = med(times[m]["collect"]), med(times[m]["rankwise"])
        p = med(times[m]["peft"]) if m in PEFT_HAS else None
        ratio = f"{p / a:.2f}×" if p else "—"
        capped = m == "eva" and agree.get(m, "").startswith("PEFT's EVA had not")
        shown = "not in PEFT" if p is None else (f"> {p:.2f} (stopped)" if capped else f"{p:.2f}")
        ratio = f"> {ratio}" if capped else ratio
        L.append(f"| {m} | {c:.2f} | {a:.2f} | {shown} | {ratio} | {agree.get(m, '—')} |")
    L.append("")
    L.append(f"- LoRA-GA mean gradient, cosine(rankwise, PEFT) over all 42 layers: {cos} (same batches, same loss; "
             "rankwise computes it in eval mode, PEFT in train mode — the reference model has no dropout).")
    L.append("- LoRA-GA factors differ by design: PEFT 0.21 multiplies B by S[r:2r] and scales only B; rankwise "
             "follows the paper/official code (both factors × m^¼/√γ, no S). The A rows come from the same "
             "randomized SVD, so their subspaces agree (overlap ≈ 1) when both draws resolve the same top-r space.")
    L.append(f"- EVA: PEFT's incremental PCA made {forwards} forward passes (it cycles over the {N_BATCHES} batches "
             "until every layer's top components stop moving, τ = 0.99); rankwise reads each batch once and takes "
             "the exact PCA of the streamed covariance. Rank allocations and subspaces therefore differ where "
             "PEFT's early-stopped, randomized IPCA has not resolved the components (random-token inputs on a "
             "random-init model have a flat spectrum, the hardest case for the redistribution).")
    L.append("- CorDA: same algorithm and damping as PEFT; the relative difference is float rounding.")
    L.append("- LoRA-One and LoRA-SB are not in PEFT 0.21.2; only rankwise's time is reported.")
    L.append("")
    return "\n".join(L) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--eva-max-passes", type=int, default=None,
                   help="stop PEFT's EVA after this many forward passes if it has not converged (default: no cap)")
    args = p.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    out = args.out or HERE / "results" / "calibration.md"
    first = 0 if args.quick else 1  # rounds before `first` are untimed warm-up
    EVA_MAX_PASSES[0] = args.eva_max_passes
    ref.setup_torch()
    t_start, load0 = time.perf_counter(), os.getloadavg()[0]
    info = ref.machine_info()
    base = ref.make_base_model().eval()
    batches = make_batches()
    times = {m: {"collect": [], "rankwise": [], "peft": []} for m in CASES}
    agree: dict[str, str] = {}
    eva_forwards = 0
    for rnd in range(1 - first, 1 + args.repeats):
        for m in CASES:
            print(f"round {rnd}: {m}", file=sys.stderr)
            t, _ = timed(run_collect, base, m, batches)
            t_rw, ours = timed(run_rankwise, base, m, batches)
            if rnd:
                times[m]["collect"].append(t)
                times[m]["rankwise"].append(t_rw)
            if m in PEFT_HAS:
                FORWARDS[0] = 0
                t_p, theirs = timed(run_peft, base, m, batches)
                if rnd:
                    times[m]["peft"].append(t_p)
                if rnd == args.repeats:
                    agree[m] = agreement(m, ours, theirs, base, batches)
                    if m == "eva":
                        eva_forwards = FORWARDS[0]
                del theirs
            del ours
    cos = gradient_cosine(base, batches)
    text = render(args, info, times, agree, cos, load0, os.getloadavg()[0], time.perf_counter() - t_start,
                  eva_forwards)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    print(text)


if __name__ == "__main__":
    main()
