"""The ``rankwise`` command.

    rankwise bench                                   # compare methods on the embedded default, print a table
    rankwise finetune --model minilm --data train.tsv --method dora --rank 16
    rankwise pretrain --preset llama-tiny --optim galore --rank 64 steps=300
    rankwise analyze BASE [TUNED] --out DIR          # rankwise.analysis.cli
    rankwise compress ...                            # rankwise.compress.cli

Settings come from the config dataclass of each command: ``--config FILE.yaml``, then ``--field
VALUE`` flags, then ``field=value`` pairs. ``rankwise <command> --help`` lists every field with its
default.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..errors import RankwiseError
from .config import describe, load_config, parse_overrides

TRAINING = ("finetune", "pretrain", "bench")
DELEGATED = {"analyze": ("rankwise.analysis.cli", "analysis", "spectral analysis of a model or of base vs tuned"),
             "compress": ("rankwise.compress.cli", "compress", "low-rank compression of a model")}


def _command(name: str):
    return importlib.import_module(f"rankwise.cli.{name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rankwise", description="Low-rank adaptation, training, compression and "
                                     "analysis. `rankwise <command> --help` lists every setting with its default.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in TRAINING:
        mod = _command(name)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP + ". Settings: defaults < --config YAML < "
                           "--flags < key=value.")
        p.add_argument("--config", metavar="YAML", help="YAML file of settings (field: value)")
        if name != "bench":
            p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
        for field, tname, default, text in describe(mod.CONFIG):
            flags = [f"--{field.replace('_', '-')}"]
            flags += [f"--{a}" for a, target in mod.ALIASES.items() if target == field]
            if field != field.replace("_", "-"):
                flags.append(f"--{field}")
            shown = ",".join(map(str, default)) if isinstance(default, list) else default
            if tname == "bool":  # --flag / --no-flag
                p.add_argument(*flags, dest=f"set_{field}", action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=f"{text} (default: {shown!r})")
            else:
                p.add_argument(*flags, dest=f"set_{field}", metavar=tname.upper().replace(" ", ""),
                               default=argparse.SUPPRESS, help=f"{text} (default: {shown!r})")
        p.add_argument("overrides", nargs="*", metavar="key=value", help="more settings, e.g. lr=3e-4 rank=16")
    for name, (_, _, text) in DELEGATED.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def _delegate(name: str, argv: list[str]) -> int:
    module, extra, _ = DELEGATED[name]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        print(f"rankwise {name}: the module {module} is not available in this install ({e}); install the "
              f"'{extra}' part of rankwise (pip install 'rankwise[{extra}]') or a version that includes it",
              file=sys.stderr)
        return 2
    return int(mod.main(argv) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rankwise`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        return _delegate(argv[0], argv[1:])
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)  # key=value pairs may follow flags anywhere
    unknown = [a for a in extra if a.startswith("-") or "=" not in a]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)} (settings are --field VALUE or field=value; "
                     f"see rankwise {args.command or ''} --help)")
    if args.command is None:
        parser.print_help()
        return 2
    mod = _command(args.command)
    try:
        flags = [(k[4:], v) for k, v in vars(args).items() if k.startswith("set_")]
        cfg = load_config(mod.CONFIG, args.config, flags + parse_overrides(args.overrides + extra))
        if args.command == "bench":
            mod.run(cfg)
        else:
            run = mod.run(cfg, resume=args.resume)
            print(summary_line(args.command, cfg, run))
    except KeyboardInterrupt as e:
        print(f"rankwise: {e or 'interrupted'}", file=sys.stderr)
        return 130
    except RankwiseError as e:
        print(f"rankwise {args.command}: error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:  # transformers / tokenizers are an extra
        print(f"rankwise {args.command}: error: {e}. The command needs the 'cli' extra: pip install 'rankwise[cli]'",
              file=sys.stderr)
        return 2
    return 0


def summary_line(command: str, cfg, run) -> str:
    ev = ", ".join(f"{k} {v:.4f}" for k, v in run.result.final_eval.items())
    return (f"rankwise {command}: {cfg.method} done in {run.result.wall_s:.1f}s, {run.result.steps} steps; {ev}; "
            f"trainable {run.result.trainable:,}; outputs in {cfg.out}")


if __name__ == "__main__":
    sys.exit(main())
