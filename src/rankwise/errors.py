"""Exceptions raised by rankwise.

Every error names the culprit (a module, a file, a config field) and says how to fix it.
They subclass the built-in exception a user would catch anyway (``ValueError``, ``OSError``).
"""

from __future__ import annotations


class RankwiseError(Exception):
    """Base class of every rankwise error."""


class ConfigError(RankwiseError, ValueError):
    """A config field has a bad value (unknown name, rank ≤ 0, dropout outside [0, 1), …)."""


class TargetError(RankwiseError, ValueError):
    """A target does not match any module, or matches a module rankwise cannot adapt."""


class AdapterStateError(RankwiseError, RuntimeError):
    """An operation does not fit the adapter's state (merging twice, unknown adapter name, …)."""


class AdapterFileError(RankwiseError, OSError):
    """An adapter folder or file is missing, corrupt, or does not match the model."""
