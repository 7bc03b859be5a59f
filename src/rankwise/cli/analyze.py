"""``rankwise analyze``: delegates to ``rankwise.analysis.cli.main(argv)``."""

from __future__ import annotations

from .main import _delegate


def main(argv: list[str]) -> int:
    return _delegate("analyze", argv)
