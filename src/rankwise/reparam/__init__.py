"""Low-rank pretraining by reparameterisation: what the weights *are* changes, not the optimizer.

Methods (``rankwise.method_config(name, ...)``, family ``"reparam"``): ``low-rank``, ``relora``,
``switchlora``, ``sltrain``, ``lost``, ``cola``, ``sst``; plus weight refactorisation + momentum
reset (``refactor_every=``) for any linear factored method. See docs/reparam.md.
"""

from . import catalogue  # noqa: F401  (registers the methods)
from .api import densify, reparameterize
from .cola import CoLALinear
from .config import ReparamConfig
from .layers import FactoredLinear
from .lost import LostLinear
from .low_rank import LowRankLinear
from .refactor import RefactorSchedule, rebalance
from .relora import ReLoRASchedule
from .sltrain import SparseLowRankLinear, SparseMatmul
from .sst import SpectralLinear, SSTSchedule
from .switchlora import SwitchLoRASchedule

__all__ = ["reparameterize", "densify", "ReparamConfig", "FactoredLinear", "LowRankLinear", "SparseLowRankLinear",
           "SparseMatmul", "LostLinear", "CoLALinear", "SpectralLinear", "SSTSchedule", "ReLoRASchedule",
           "SwitchLoRASchedule", "RefactorSchedule", "rebalance"]
