"""The embedded default corpus: real text already on every machine that runs Python.

``rankwise bench`` needs no download and no data argument: it reads a fixed, sorted subset of this
Python's standard-library sources (``sysconfig.get_paths()["stdlib"]``, top-level ``*.py`` files
in name order, up to ``max_chars`` characters). The text differs a little between Python versions,
so results name the Python version they were made with.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

from ..errors import ConfigError

STDLIB = "stdlib"


def stdlib_files() -> list[Path]:
    """The standard library's top-level ``.py`` files, sorted by name."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.glob("*.py") if p.is_file())


def stdlib_corpus(max_chars: int = 1_500_000) -> str:
    """Standard-library source text, whole files in name order until ``max_chars`` is reached."""
    parts, total = [], 0
    for p in stdlib_files():
        text = p.read_text(encoding="utf-8", errors="replace")
        parts.append(text)
        total += len(text)
        if total >= max_chars:
            break
    if total < 10_000:
        raise ConfigError(f"found only {total} characters of standard-library source under "
                          f"{sysconfig.get_paths()['stdlib']!r}; pass --data FILE instead")
    return "\n\n".join(parts)[:max_chars]


def describe() -> str:
    """One line naming the corpus, for reports."""
    v = sys.version_info
    return f"Python {v.major}.{v.minor}.{v.micro} standard-library sources (top-level *.py, sorted)"
