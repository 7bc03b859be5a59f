"""Generate docs/methods.md — the methods table — from the catalogue, so it lists every registered method.

    python benchmarks/methods_table.py          # rewrites docs/methods.md
    python benchmarks/methods_table.py --check  # exit 1 if docs/methods.md is out of date

Columns: name, paper, formula, trainable parameters (per m×n layer), mergeable, PEFT-compatible,
and, for adapter presets built on ``LoRAConfig``, the method-specific ``options`` with defaults.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "methods.md"

TITLES = {"adapter": "Adapters", "optimizer": "Low-rank optimizers", "reparam": "Reparameterised training",
          "compress": "Compression"}


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _yes_no(v: bool | None) -> str:
    return "n/a" if v is None else ("yes" if v else "no")


def _options(method) -> str:
    """The declared options of the preset's parameterisation and init, with defaults (LoRAConfig presets)."""
    from rankwise import LoRAConfig
    from rankwise.core.registry import PARAMETERISATION_OPTIONS
    from rankwise.init.registry import get_initialiser

    try:
        cfg = method.make_config()
    except Exception:  # a preset that needs arguments: no options column entry
        return ""
    if not isinstance(cfg, LoRAConfig):
        return ""
    opts = {**get_initialiser(cfg.init).options, **PARAMETERISATION_OPTIONS.get(cfg.parameterisation, {}),
            **cfg.options}
    return ", ".join(f"`{k}={v!r}`" for k, v in opts.items())


def render() -> str:
    import rankwise
    from rankwise.methods import FAMILIES

    lines = ["# Methods", "",
             "Every method rankwise implements, generated from `rankwise.methods()` by "
             "`python benchmarks/methods_table.py` (do not edit by hand). Select one by name:",
             "", "```python", 'cfg = rankwise.method_config("vera", rank=8, targets="all-linear")  '
             '# a LoRAConfig preset', "rankwise.adapt(model, cfg)", "```", "",
             "*Trainable* counts numbers per adapted m×n layer (r = rank, N = ⌈min(m,n)/r⌉, n_f = frequencies, "
             "k/l = NOLA's basis counts, r̂ = MoRA's square size). *Mergeable*: the learned update folds into W "
             "(`rankwise.merge`). *PEFT*: Hugging Face PEFT has the method and adapters convert both ways "
             "(`rankwise.save_adapter(..., format=\"peft\")`, `rankwise.load_adapter`).", ""]
    for family in FAMILIES:
        ms = rankwise.methods(family)
        if not ms:
            continue
        lines += [f"## {TITLES.get(family, family)}", "",
                  "| name | paper | formula | trainable | mergeable | PEFT | options |",
                  "|---|---|---|---|---|---|---|"]
        for m in ms:
            lines.append(f"| `{m.name}` | {_cell(m.paper)} | {_cell(m.formula)} | {_cell(m.trainable)} | "
                         f"{_yes_no(m.mergeable)} | {'yes' if m.peft else 'no'} | {_cell(_options(m))} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 if the file differs from the catalogue")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        ok = DOC.exists() and DOC.read_text() == text
        print("docs/methods.md is up to date" if ok else "docs/methods.md is stale: run benchmarks/methods_table.py")
        return 0 if ok else 1
    from rankwise.io.files import atomic_write_bytes

    atomic_write_bytes(DOC, text.encode())
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
