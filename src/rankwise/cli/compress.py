"""``rankwise compress``: delegates to ``rankwise.compress.cli.main(argv)``."""

from __future__ import annotations

from .main import _delegate


def main(argv: list[str]) -> int:
    return _delegate("compress", argv)
