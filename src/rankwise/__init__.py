"""rankwise: low-rank adaptation, training, compression and analysis for PyTorch models.

    import rankwise
    rankwise.adapt(model, rankwise.LoRAConfig(rank=16, alpha=32, targets="all-linear"))
    opt = torch.optim.AdamW(rankwise.trainable_parameters(model), lr=2e-4)
    rankwise.save_adapter(model, "out/")                   # or format="peft"
    merged = rankwise.merge_and_unload(model)
"""

from . import (
    compress,  # noqa: F401  (subpackage: rankwise.compress.plan/apply/save/load)
    sparse,  # noqa: F401  (LIFT: rankwise.sparse.lift)
)
from ._version import __version__
from .adapters import prune_gates, set_rank
from .config import LoRAConfig
from .core.api import (
    active_adapters,
    adapt,
    adapter_config,
    adapter_names,
    delete_adapter,
    disabled,
    merge,
    merge_and_unload,
    set_active,
    trainable_parameters,
    unload,
    unmerge,
)
from .core.contract import Adapter, Parameterisation, Wrapper
from .core.summary import summary
from .errors import AdapterFileError, AdapterStateError, ConfigError, RankwiseError, TargetError
from .io import load_adapter, save_adapter
from .methods import Method, get_method, method_config, methods, register_method
from .optim import param_groups
from .reparam import ReparamConfig, reparameterize
from .schedule import ComposedSchedule, TrainingSchedule

__all__ = [
    "__version__", "LoRAConfig", "adapt", "active_adapters", "adapter_config", "adapter_names", "delete_adapter",
    "disabled", "merge", "merge_and_unload", "set_active", "trainable_parameters", "unload", "unmerge",
    "Adapter", "Parameterisation", "Wrapper", "summary", "save_adapter", "load_adapter", "param_groups",
    "TrainingSchedule", "ComposedSchedule", "Method", "methods", "method_config", "get_method", "register_method",
    "RankwiseError", "ConfigError", "TargetError", "AdapterStateError", "AdapterFileError",
    "reparameterize", "ReparamConfig",
    "set_rank", "prune_gates",
]
