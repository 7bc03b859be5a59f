"""``rankwise compress MODEL --ratio 0.4 --method svd-llm --calibration FILE --out DIR``.

MODEL is a Hugging Face model folder (loaded with its tokenizer) or a preset name (``llama-tiny``, ...,
freshly initialised, with a byte-level BPE tokenizer trained on the calibration text). The text is
split contiguously: the first 90% calibrates (and trains the preset tokenizer), the last 10% evaluates
(or ``--eval FILE``). Causal LMs report validation perplexity before and after; other models (e.g. a
sentence encoder) report the mean cosine similarity of mean-pooled embeddings to the original's on the
evaluation lines. The compressed model, its tokenizer, the plan and a report go to ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
from pathlib import Path

import torch

from ..errors import RankwiseError
from ..io.files import write_json
from .allocate import ALLOCATIONS

METHOD_NAMES = ("svd", "fwsvd", "asvd", "svd-llm", "welore")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rankwise compress", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a Hugging Face model folder, or a preset (llama-tiny, llama-small, ...)")
    p.add_argument("--ratio", type=float, required=True,
                   help="fraction of the chosen layers' weight parameters removed (0.4 keeps 60%%)")
    p.add_argument("--method", default="svd-llm", choices=METHOD_NAMES)
    p.add_argument("--allocation", default=None, choices=ALLOCATIONS, help="default: the method's (uniform)")
    p.add_argument("--calibration", required=True, help="a text file (or folder of text files)")
    p.add_argument("--eval", default=None, help="evaluation text (default: the last 10%% of --calibration)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--samples", type=int, default=16, help="calibration sequences (default 16)")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--eval-batches", type=int, default=20)
    p.add_argument("--targets", nargs="+", default=["all-linear"])
    p.add_argument("--exclude", nargs="*", default=[])
    p.add_argument("--damping", type=float, default=1e-4, help="SVD-LLM ridge, relative to the mean input variance")
    p.add_argument("--seed", type=int, default=0)
    return p


def _load(model_arg: str, text: str, out: Path):
    """(model, tokenizer, causal) for a model folder or a preset."""
    from ..models import LLAMA_PRESETS, build_causal_lm

    path = Path(model_arg)
    if model_arg in LLAMA_PRESETS and not path.exists():
        from ..data import train_bpe

        tok = train_bpe(text, 2048, save_to=out / "tokenizer.json")
        return build_causal_lm(model_arg, tok.get_vocab_size()).eval(), tok, True
    if not (path / "config.json").is_file():
        raise RankwiseError(f"MODEL {model_arg!r} is neither a model folder with config.json nor a preset "
                            f"({sorted(LLAMA_PRESETS)})")
    import transformers

    config = transformers.AutoConfig.from_pretrained(path)
    causal = any(a.endswith("ForCausalLM") for a in (config.architectures or []))
    cls = transformers.AutoModelForCausalLM if causal else transformers.AutoModel
    model = cls.from_pretrained(path).eval()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    return model, tok, causal


def _ids(text: str, tok) -> torch.Tensor:
    from ..data import tokenize

    return tokenize(text, tok)


def _sentences(text: str, limit: int) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()][:limit]


@torch.no_grad()
def _embed(model, tok, lines: list[str], batch_size: int, seq_len: int) -> torch.Tensor:
    out = []
    for i in range(0, len(lines), batch_size):
        enc = tok(lines[i:i + batch_size], padding=True, truncation=True, max_length=seq_len, return_tensors="pt")
        h = model(**enc).last_hidden_state  # (b, t, d)
        mask = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
        out.append((h * mask).sum(1) / mask.sum(1))
    return torch.cat(out)


def run(args: argparse.Namespace) -> dict:
    from ..data import eval_windows, read_text, train_windows
    from ..models import lm_loss
    from . import apply, plan, save

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = read_text(args.calibration)
    cut = int(len(text) * 0.9)
    calib_text, eval_text = (text, read_text(args.eval)) if args.eval else (text[:cut], text[cut:])
    model, tok, causal = _load(args.model, calib_text, out)
    report: dict = {"model": args.model, "method": args.method, "requested_ratio": args.ratio,
                    "ratio_definition": "fraction of the chosen layers' weight parameters removed"}
    if causal:
        calib_ids, eval_ids = _ids(calib_text, tok), _ids(eval_text, tok)
        steps = math.ceil(args.samples / args.batch_size)
        batches = list(train_windows(calib_ids, args.batch_size, args.seq_len, steps, seed=args.seed))

        def metric(m) -> float:
            return math.exp(lm_loss(m, eval_windows(eval_ids, args.batch_size, args.seq_len, args.eval_batches)))
        report["metric"] = "validation perplexity"
        report["before"] = metric(model)
        original = None
    else:
        lines = _sentences(calib_text, args.samples)
        eval_lines = _sentences(eval_text, args.eval_batches * args.batch_size)
        batches = [dict(tok(lines[i:i + args.batch_size], padding=True, truncation=True, max_length=args.seq_len,
                            return_tensors="pt")) for i in range(0, len(lines), args.batch_size)]
        original = _embed(model, tok, eval_lines, args.batch_size, args.seq_len)

        def metric(m) -> float:
            e = _embed(m, tok, eval_lines, args.batch_size, args.seq_len)
            return float(torch.nn.functional.cosine_similarity(e, original, dim=-1).mean())
        report["metric"] = "mean cosine similarity of mean-pooled embeddings to the original's"
        report["before"] = 1.0
    p = plan(model, args.ratio, args.method, batches, allocation=args.allocation, targets=list(args.targets),
             exclude=list(args.exclude), damping=args.damping)
    print(p)
    small = apply(copy.deepcopy(model) if original is not None else model, p)
    report["after"] = metric(small)
    report.update(ratio=p.ratio, params=p.params, kept=p.kept, allocation=p.allocation)
    save(small, out)
    if hasattr(tok, "save_pretrained"):
        tok.save_pretrained(out)
    write_json(out / "plan.json", p.to_dict())
    write_json(out / "report.json", report)
    print(f"{report['metric']}: before {report['before']:.4f}, after {report['after']:.4f} "
          f"(ratio {p.ratio:.3f} of {p.params:,} weights removed); saved to {out}")
    return report


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (without the program and subcommand names), compress, report; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except RankwiseError as e:
        print(f"rankwise compress: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))

