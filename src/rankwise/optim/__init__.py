"""Gradient rules and optimizer helpers."""

from .param_groups import param_groups

__all__ = ["param_groups"]
