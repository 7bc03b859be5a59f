"""Gradient rules and optimizer helpers."""

from . import catalogue as _catalogue  # noqa: F401  (registers the optimizer family)
from .adam_core import adam_foreach, adam_reference
from .apollo import APOLLO, APOLLOMini
from .build import build_optimizer, state_bytes
from .config import LowRankConfig
from .fira import Fira
from .galore import GaLoreAdamW
from .groups import low_rank_groups
from .lowrank import LowRankAdam
from .param_groups import param_groups
from .projectors import PROJECTORS, Projector, get_projector

__all__ = ["param_groups"]
__all__ += ["GaLoreAdamW", "Fira", "APOLLO", "APOLLOMini", "LowRankAdam", "LowRankConfig", "low_rank_groups",
            "build_optimizer", "state_bytes", "Projector", "PROJECTORS", "get_projector", "adam_foreach",
            "adam_reference"]
