"""Shared pieces of the analysis reports: markdown tables and JSON-safe numbers."""

from __future__ import annotations

import math
from collections.abc import Sequence


def fmt(x) -> str:
    """A table cell: ints as is, floats with 4 significant digits, lists shortened."""
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return "–"
        return f"{x:.4g}"
    if isinstance(x, list | tuple):
        return ", ".join(fmt(v) for v in x[:5]) + (", …" if len(x) > 5 else "")
    return str(x).replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def json_float(x: float) -> float | None:
    """JSON has no NaN/inf: map them to None."""
    return float(x) if math.isfinite(x) else None
